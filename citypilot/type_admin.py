"""Registering, versioning and deleting entity types at run time, without breaking data.

Each registered declaration of a type gets the next version number and a record in the
store's history of that type (who, when, forced or not, what it broke). A change that
stored entities break (see ``model.type_changes``) is refused with the list of what
breaks, unless forced; built-in types may only be extended compatibly and never
deleted; a run-time type can be deleted once no entity has it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from citypilot.bus.base import EventBus
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.entity import RESERVED, parse_entity
from citypilot.model.errors import BadRequestData, CityPilotError, Conflict, ResourceNotFound
from citypilot.model.timeutil import format_instant
from citypilot.model.type_changes import BUILTIN_NAMES, Narrowing, narrowings, same_declaration
from citypilot.model.types import (
    EntityType,
    TypeRegistry,
    entity_type_from_json,
    with_common_attributes,
)
from citypilot.store.base import EntityQuery, Store

#: The bus subject of type changes: ``{"name", "type": declaration or None (deleted)}``.
TYPES_CHANGED = "types.changed"

#: How many entity ids a refused change or deletion lists (the counts are exact).
LISTED = 20
#: Entities read at a time when a first declaration checks the stored ones.
_PAGE = 1000


def _describe(narrowing: Narrowing, count: int, entities: list[str]) -> dict[str, Any]:
    return {
        "attribute": narrowing.attribute,
        "change": narrowing.change,
        "detail": narrowing.detail,
        "count": count,
        "entities": entities,
    }


def _check_expected_version(doc: dict[str, Any], current: EntityType) -> None:
    """A declaration that names the version it changes must change the current one."""
    expected = doc.get("version")
    if expected is not None and expected != current.version:
        raise Conflict(
            f"{current.name} is at version {current.version}, not {expected}: "
            "read it again and redo the change",
            "body.version",
        )


class TypeAdmin:
    """The run-time changes of the type registry, kept in the store with their history."""

    def __init__(self, registry: TypeRegistry, store: Store, bus: EventBus | None = None) -> None:
        """``bus``: where each change is announced (``types.changed``), for the other
        processes of the city to follow (:func:`follow_type_changes`)."""
        self.registry = registry
        self.store = store
        self.bus = bus
        self._lock = asyncio.Lock()  # one type change at a time

    async def register(
        self, doc: Any, force: bool = False, by: str | None = None
    ) -> tuple[EntityType, bool]:
        """Check and register a new version of a type; the type and whether it is new.

        An unchanged declaration changes nothing. A change that stored entities break
        is refused (Conflict, naming them) unless ``force``.
        """
        declared = entity_type_from_json(doc)
        taken = sorted(RESERVED & set(declared.attributes))
        if taken:
            raise BadRequestData(
                f"{taken[0]!r} is a member of every NGSI-LD entity, not an attribute name",
                f"body.attributes.{taken[0]}",
            )
        async with self._lock:
            old = self.registry.get(declared.name) if declared.name in self.registry else None
            if old is not None:
                _check_expected_version(doc, old)
                if same_declaration(old, with_common_attributes(declared)):
                    return old, False
            breaks = await self._breaks(old, declared, force)
            history = await self.store.type_versions(declared.name)
            version = max([old.version if old else 0] + [r["version"] for r in history]) + 1
            entity_type = replace(declared, version=version)
            record = {
                "version": version,
                "registeredAt": format_instant(time.time()),
                "registeredBy": by,
                "forced": bool(breaks),
                "breaks": breaks,
                "type": entity_type.to_json(),
            }
            await self.store.put_type(entity_type.name, entity_type.to_json(), record)
            self.registry.register(entity_type)
            await self._announce(entity_type.name, entity_type.to_json())
        return self.registry.get(entity_type.name), old is None

    async def _breaks(
        self, old: EntityType | None, declared: EntityType, force: bool
    ) -> list[dict[str, Any]]:
        """What the change from ``old`` breaks (when forced); Conflict if it is refused."""
        if old is None:
            breaks = await self._unfit_entities(declared)
            if breaks and not force:
                total = sum(b["count"] for b in breaks)
                raise Conflict(
                    f"{total} stored {declared.name} entities (open-world until now) do not"
                    " fit this declaration (see breaks): fix them first, or register with"
                    " force=true",
                    "body.attributes",
                    breaks=breaks,
                )
            return breaks
        found = narrowings(old, with_common_attributes(declared))
        builtin = old.name in BUILTIN_NAMES
        if builtin and old.department != declared.department:
            raise Conflict(
                f"{old.name} is a built-in type: its department stays {old.department}",
                "body.department",
            )
        breaks = await self._broken_entities(old.name, found)
        if builtin and found:
            raise Conflict(
                f"{old.name} is a built-in type: it may only be extended compatibly; "
                f"this narrows {', '.join(n.attribute for n in found)}",
                "body.attributes",
                breaks=breaks or [_describe(n, 0, []) for n in found],
            )
        if breaks and not force:
            total = sum(b["count"] for b in breaks)
            raise Conflict(
                f"this change of {old.name} breaks {total} stored attribute values "
                "(see breaks): fix them first, or register with force=true",
                "body.attributes",
                breaks=breaks,
            )
        return breaks

    async def _broken_entities(
        self, type_name: str, found: Sequence[Narrowing]
    ) -> list[dict[str, Any]]:
        """Per narrowing that stored entities break: how many, and the first few ids."""
        if not found:
            return []
        columns = await self.store.scan_columns(type_name, [n.attribute for n in found])
        breaks = []
        for narrowing in found:
            values = columns.values[narrowing.attribute]
            broken = [
                entity_id
                for entity_id, text in zip(columns.ids, values, strict=True)
                if text is not None and narrowing.breaks(orjson.loads(text))
            ]
            if broken:
                breaks.append(_describe(narrowing, len(broken), broken[:LISTED]))
        return breaks

    async def _unfit_entities(self, declared: EntityType) -> list[dict[str, Any]]:
        """Per attribute: the stored entities of a type about to be registered for the
        first time (open-world entities) that its declaration refuses."""
        registry = TypeRegistry([declared])
        by_field: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            query = EntityQuery(types=(declared.name,), limit=_PAGE, offset=offset)
            page, _ = await self.store.query_entities(query)
            for entity in page:
                try:
                    parse_entity(entity.to_ngsi(), registry)
                except CityPilotError as exc:
                    where = (exc.field or "").split(".")[0].split("[")[0]
                    found = by_field.setdefault(
                        where,
                        {
                            "attribute": where,
                            "change": "open-world",
                            "detail": exc.detail,
                            "count": 0,
                            "entities": [],
                        },
                    )
                    found["count"] += 1
                    if len(found["entities"]) < LISTED:
                        found["entities"].append(entity.id)
            if len(page) < _PAGE:
                return list(by_field.values())
            offset += _PAGE

    async def history(self, name: str) -> list[dict[str, Any]]:
        """Every version of a type, oldest first (a built-in one starts with the code's)."""
        history = await self.store.type_versions(name)
        builtin = next((t for t in BUILTIN_TYPES if t.name == name), None)
        if builtin is not None:
            first = {"version": 1, "registeredAt": None, "registeredBy": "built-in"}
            first |= {"forced": False, "breaks": [], "type": builtin.to_json()}
            history = [first, *history]
        if not history:
            raise ResourceNotFound(f"type {name!r} was never registered", "name")
        return history

    async def delete(self, name: str) -> None:
        """Remove a run-time type that no entity has (Conflict otherwise)."""
        async with self._lock:
            if name not in self.registry:
                raise ResourceNotFound(f"type {name!r} is not registered", "name")
            if name in BUILTIN_NAMES:
                raise Conflict(f"{name} is a built-in type: it cannot be deleted", "name")
            query = EntityQuery(types=(name,), limit=LISTED, count=True)
            entities, total = await self.store.query_entities(query)
            if total:
                raise Conflict(
                    f"{total} entities of type {name} exist: delete them first",
                    "name",
                    count=total,
                    entities=[e.id for e in entities],
                )
            await self.store.delete_type(name)
            self.registry.remove(name)
            await self._announce(name, None)

    async def _announce(self, name: str, declaration: dict[str, Any] | None) -> None:
        """Tell the other processes that ``name`` is now ``declaration`` (None: deleted)."""
        if self.bus is not None:
            await self.bus.publish(TYPES_CHANGED, {"name": name, "type": declaration})


def follow_type_changes(registry: TypeRegistry, bus: EventBus) -> Callable[[], None]:
    """Apply to ``registry`` the type changes other processes announce on ``bus`` (a
    newer version registered, a run-time type deleted); returns the unsubscribe function.

    A process's own announcements come back to it too: they change nothing, the
    registry already holds that version.
    """

    def on_change(_subject: str, payload: dict[str, Any]) -> None:
        name, declaration = payload["name"], payload["type"]
        known = registry.get(name) if name in registry else None
        if declaration is None:
            if known is not None and name not in BUILTIN_NAMES:
                registry.remove(name)
            return
        declared = entity_type_from_json(declaration)
        if known is None or declared.version > known.version:
            registry.register(declared)

    return bus.listen(TYPES_CHANGED, on_change)
