"""Entities and attributes: reading NGSI-LD JSON into the internal form and writing it back.

Input accepts the NGSI-LD normalised form (``{"type": "Property", "value": ...}``) and
the concise form (a bare value; a URI for a Relationship; a GeoJSON geometry for a
GeoProperty). Every attribute is checked against the entity's registered type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import Bounds, validate_geometry
from citypilot.model.ids import check_entity_id, check_uri
from citypilot.model.timeutil import MAX_FUTURE_SKEW_S, format_instant, parse_instant
from citypilot.model.types import EntityType, TypeRegistry, check_value

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
_RESERVED = frozenset({"id", "type", "@context", "createdAt", "modifiedAt", "scope"})
_SUB_ATTRS = frozenset(
    {"type", "value", "object", "observedAt", "unitCode", "createdAt", "modifiedAt"}
)


@dataclass(slots=True)
class Attribute:
    """One attribute's current value: its kind, value (or object), time and unit."""

    kind: str
    value: Any
    observed_at: float | None = None
    unit_code: str | None = None
    num: float | None = None

    def to_ngsi(self) -> dict[str, Any]:
        """The normalised NGSI-LD form of the attribute."""
        out: dict[str, Any] = {"type": self.kind}
        out["object" if self.kind == "Relationship" else "value"] = self.value
        if self.observed_at is not None:
            out["observedAt"] = format_instant(self.observed_at)
        if self.unit_code is not None:
            out["unitCode"] = self.unit_code
        return out


@dataclass(slots=True)
class Entity:
    """A city entity: id, type, attributes and, when located, the bounds of its geometry."""

    id: str
    type: str
    attrs: dict[str, Attribute] = field(default_factory=dict)
    created_at: float | None = None
    modified_at: float | None = None

    @property
    def bounds(self) -> Bounds | None:
        """Bounds of the ``location`` geometry, or None for an entity without one."""
        loc = self.attrs.get("location")
        return None if loc is None else validate_geometry(loc.value)

    def to_ngsi(
        self, key_values: bool = False, sys_attrs: bool = False, attrs: set[str] | None = None
    ) -> dict[str, Any]:
        """The entity as NGSI-LD JSON (normalised, or concise key-values)."""
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if sys_attrs:
            if self.created_at is not None:
                out["createdAt"] = format_instant(self.created_at)
            if self.modified_at is not None:
                out["modifiedAt"] = format_instant(self.modified_at)
        for name, attr in self.attrs.items():
            if attrs is not None and name not in attrs:
                continue
            out[name] = attr.value if key_values else attr.to_ngsi()
        return out


def parse_attribute(
    entity_type: EntityType, registry: TypeRegistry, name: str, raw: Any, where: str
) -> Attribute:
    """Check one attribute of an entity of ``entity_type`` and return its internal form."""
    spec = entity_type.attributes.get(name)
    if spec is None:
        raise BadRequestData(
            f"{where}: {entity_type.name} has no attribute {name!r} "
            f"(known: {', '.join(sorted(entity_type.attributes))})",
            where,
        )
    normalised = isinstance(raw, dict) and raw.get("type") in (
        "Property",
        "Relationship",
        "GeoProperty",
    )
    if normalised:
        unknown = set(raw) - _SUB_ATTRS
        if unknown:
            raise BadRequestData(
                f"{where}: sub-attributes are not supported: {sorted(unknown)}", where
            )
        if raw["type"] != spec.kind:
            raise BadRequestData(f"{where}.type must be {spec.kind!r}", f"{where}.type")
        key = "object" if spec.kind == "Relationship" else "value"
        if key not in raw:
            raise BadRequestData(f"{where} needs {key!r}", f"{where}.{key}")
        value = raw[key]
        observed_at = (
            parse_instant(raw["observedAt"], f"{where}.observedAt", max_future=MAX_FUTURE_SKEW_S)
            if "observedAt" in raw
            else None
        )
        unit = raw.get("unitCode")
        if unit is not None and unit != spec.unit:
            raise BadRequestData(
                f"{where}.unitCode must be {spec.unit!r} (the type's unit), not {unit!r}",
                f"{where}.unitCode",
            )
        vwhere = f"{where}.{key}"
    else:
        value, observed_at, vwhere = raw, None, where
    if spec.kind == "Relationship":
        return Attribute("Relationship", check_uri(value, vwhere))
    if spec.kind == "GeoProperty":
        validate_geometry(value, vwhere)
        return Attribute("GeoProperty", value, observed_at)
    checked, num = check_value(registry.checkers(entity_type.name)[name], value, vwhere)
    return Attribute("Property", checked, observed_at, spec.unit, num)


def parse_attributes(
    entity_type: EntityType, registry: TypeRegistry, doc: dict[str, Any], where: str = ""
) -> dict[str, Attribute]:
    """Check every attribute in an NGSI-LD fragment (reserved keys are skipped)."""
    prefix = f"{where}." if where else ""
    return {
        name: parse_attribute(entity_type, registry, name, raw, f"{prefix}{name}")
        for name, raw in doc.items()
        if name not in _RESERVED
    }


def parse_entity(doc: Any, registry: TypeRegistry, where: str = "") -> Entity:
    """Check a whole NGSI-LD entity document and return the internal Entity."""
    prefix = f"{where}." if where else ""
    if not isinstance(doc, dict):
        raise BadRequestData(f"{where or 'body'} must be a JSON object", where or "body")
    entity_type = registry.get(doc.get("type"), f"{prefix}type")
    entity_id = check_entity_id(doc.get("id"), f"{prefix}id")
    attrs = parse_attributes(entity_type, registry, doc, where)
    return Entity(entity_id, entity_type.name, attrs)
