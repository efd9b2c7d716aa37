"""Device gateways: what a device key may write (its binding).

A binding restricts a key to a list of entities, a type, a municipality, or a
combination (each given restriction must hold). A key with no binding writes any
entity, as keys made before bindings existed do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citypilot.model.errors import BadRequestData
from citypilot.security.scopes import optional_names

MAX_BOUND_ENTITIES = 10_000


@dataclass(frozen=True)
class DeviceBinding:
    """What a device key may write; empty: anything."""

    entities: tuple[str, ...] = ()
    type: str | None = None
    municipality: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the key may write any entity."""
        return not self.entities and self.type is None and self.municipality is None

    def to_json(self) -> dict[str, Any]:
        """The binding as stored and as the API shows it (only what is restricted)."""
        doc: dict[str, Any] = {}
        if self.entities:
            doc["entities"] = list(self.entities)
        if self.type is not None:
            doc["type"] = self.type
        if self.municipality is not None:
            doc["municipality"] = self.municipality
        return doc

    def refusal(
        self, entity_id: str, entity_type: str | None, municipality: str | None
    ) -> str | None:
        """Why this key may not write the entity (None: it may). ``entity_type`` and
        ``municipality`` are the stored entity's."""
        if self.entities and entity_id not in self.entities:
            return "is not among the entities the device key is bound to"
        if self.type is not None and entity_type != self.type:
            return f"is not of the type {self.type} the device key is bound to"
        if self.municipality is not None and municipality != self.municipality:
            return f"is not in the municipality {self.municipality} the device key is bound to"
        return None


#: The binding of a key that may write any entity.
UNBOUND = DeviceBinding()


def binding_from_json(doc: Any, where: str = "binding") -> DeviceBinding:
    """A binding from its JSON form (``{"entities", "type", "municipality"}``, each
    optional); BadRequestData naming the member at fault."""
    if doc is None:
        return DeviceBinding()
    if not isinstance(doc, dict):
        raise BadRequestData(f"{where} must be an object", where)
    extra = set(doc) - {"entities", "type", "municipality"}
    if extra:
        raise BadRequestData(f"{where} has unknown members {sorted(extra)}", where)
    entities = doc.get("entities") or []
    if not isinstance(entities, list) or not all(isinstance(e, str) and e for e in entities):
        raise BadRequestData(f"{where}.entities must be a list of entity ids", f"{where}.entities")
    if len(entities) > MAX_BOUND_ENTITIES:
        raise BadRequestData(
            f"{where}.entities holds at most {MAX_BOUND_ENTITIES} ids", f"{where}.entities"
        )
    values = optional_names(doc, ("type", "municipality"), where)
    return DeviceBinding(tuple(dict.fromkeys(entities)), values["type"], values["municipality"])


@dataclass
class Device:
    """A device gateway: its name and what its key may write (the key is kept hashed)."""

    name: str
    binding: DeviceBinding = field(default_factory=DeviceBinding)


def binding_to_text(binding: DeviceBinding) -> str:
    """The stored form of a binding (JSON)."""
    import orjson

    return orjson.dumps(binding.to_json()).decode()


def binding_from_text(text: str | None) -> DeviceBinding:
    """A binding from its stored form (empty or missing: no binding)."""
    import orjson

    return binding_from_json(orjson.loads(text)) if text else DeviceBinding()
