"""Authorization of entity reads and writes against the caller's scoped grants.

Queries filter in the store (``EntityQuery.scope``); the helpers here decide about
single entities and the items of a batch, and mask personal identifiers for readers
whose grants do not name the entity's department. An entity the caller may not see
is answered as missing (404), one it may see but not change as forbidden (403).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from citypilot.api.deps import City, access, personal_access
from citypilot.broker import Guard
from citypilot.model.entity import Attribute, Entity
from citypilot.model.errors import Forbidden, ResourceNotFound
from citypilot.model.ids import type_of_id
from citypilot.security.privacy import mask, personal_attributes
from citypilot.security.scopes import DEPARTMENT_ATTR, MUNICIPALITY_ATTR, entity_scope
from citypilot.security.tokens import Principal
from citypilot.store.base import EntityScope


def _outside(who: Principal, entity_id: str, where: str) -> Forbidden:
    return Forbidden(
        f"{where}: {entity_id} is outside the scopes where {who.name!r} may change things",
        where,
    )


async def require_entity(
    city: City, who: Principal, entity_id: str, needed: str = "viewer"
) -> EntityScope:
    """The scope of an entity the caller may see (404 otherwise) and, for ``operator``,
    change (403 otherwise)."""
    found = (await city.broker.store.entity_scopes([entity_id])).get(entity_id)
    if found is None or not access(city, who, "viewer").covers(*found):
        raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
    if needed != "viewer" and not access(city, who, needed).covers(*found):
        raise _outside(who, entity_id, "id")
    return found


async def require_command_entity(
    city: City, who: Principal, entity_id: str, type_name: str, needed: str = "viewer"
) -> None:
    """A command is the business of whoever may see its entity (``needed``: act on it);
    a device answers only for entities its key is bound to. ResourceNotFound otherwise,
    as if there were no such command. Of a deleted entity, as for its history."""
    found = (await city.broker.store.entity_scopes([entity_id])).get(entity_id)
    if who.binding is not None:
        scope = found or (type_name, None, None)
        allowed = who.binding.refusal(entity_id, scope[0], scope[1]) is None
    else:
        allowed = access(city, who, needed).covers(*(found or (type_name, None, None)))
    if not allowed:
        raise ResourceNotFound("there is no such command", "id")


def may_see_history(city: City, who: Principal, entity_id: str, found: EntityScope | None) -> bool:
    """Whether the caller may read an entity's history; of a deleted entity (no scope
    kept), only grants over every municipality may, by its type's department."""
    if found is None:
        found = (type_of_id(entity_id), None, None)
    return access(city, who, "viewer").covers(*found)


async def write_guard(
    city: City, who: Principal, ids: Collection[str], merge: bool = False
) -> Guard:
    """A guard for the entities of a write: an existing one must be in the caller's
    operator scopes, and so must the scope the write gives it. ``merge``: the write
    adds attributes, so a municipality or department it does not name is kept."""
    existing = await city.broker.store.entity_scopes(ids)
    change = access(city, who, "operator")

    def guard(entity: Entity, where: str) -> None:
        old = existing.get(entity.id)
        if old is not None and not change.covers(*old):
            raise _outside(who, entity.id, where)
        values = {n: a.value for n, a in entity.attrs.items()}
        municipality, department = entity_scope(entity.id, entity.type, values)
        if merge and old is not None:
            if MUNICIPALITY_ATTR not in values:
                municipality = old[1]
            if DEPARTMENT_ATTR not in values:
                department = old[2]
        if not change.covers(entity.type, municipality, department):
            raise _outside(who, entity.id, where)

    return guard


def holds_personal(city: City, entity: Entity) -> bool:
    """Whether an entity carries an attribute its type marks personal."""
    registry = city.broker.registry
    if entity.type not in registry:
        return False
    return any(n in entity.attrs for n in personal_attributes(registry.get(entity.type)))


def masker(city: City, who: Principal) -> Callable[[Entity], Entity]:
    """Masks the personal identifiers of entities whose department the caller's
    operator grants do not name (entities without personal attributes pass as they are)."""
    registry = city.broker.registry
    sees = personal_access(city, who)

    def masked(entity: Entity) -> Entity:
        if entity.type not in registry:
            return entity
        personal = personal_attributes(registry.get(entity.type))
        present = [n for n in personal if n in entity.attrs]
        if not present:
            return entity
        values = {n: a.value for n, a in entity.attrs.items()}
        if sees.covers(entity.type, *entity_scope(entity.id, entity.type, values)):
            return entity
        attrs: dict[str, Attribute] = dict(entity.attrs)
        for name in present:
            attrs[name] = replace(attrs[name], value=mask(personal[name], attrs[name].value))
        return replace(entity, attrs=attrs)

    return masked


def mask_values(
    city: City, who: Principal, type_name: str, found: EntityScope | None
) -> Callable[[str, Any], Any]:
    """For one entity's values by attribute (history, stream): masks personal ones
    unless the caller may see them."""
    registry = city.broker.registry
    personal = personal_attributes(registry.get(type_name)) if type_name in registry else {}
    if not personal or (found is not None and personal_access(city, who).covers(*found)):
        return lambda _name, value: value
    return lambda name, value: mask(personal[name], value) if name in personal else value


class StreamAccess:
    """What of the live stream one subscriber may receive, and with what masked."""

    def __init__(self, city: City, who: Principal) -> None:
        self._see = access(city, who, "viewer")
        self._personal = personal_access(city, who)
        self._registry = city.broker.registry
        self._personal_by_type: dict[str, dict[str, tuple[str, ...]]] = {}

    def sees(self, scope: EntityScope | None) -> bool:
        """Whether the subscriber may hear of an entity of this scope."""
        return scope is not None and self._see.covers(*scope)

    def admit(self, change: dict[str, Any], scope: EntityScope) -> dict[str, Any] | None:
        """The change as the subscriber may see it, or None if it may not."""
        if not self._see.covers(*scope):
            return None
        type_name = scope[0]
        personal = self._personal_by_type.get(type_name)
        if personal is None:
            registry = self._registry
            personal = personal_attributes(registry.get(type_name)) if type_name in registry else {}
            self._personal_by_type[type_name] = personal
        attrs = change["attrs"]
        if not any(n in attrs for n in personal) or self._personal.covers(*scope):
            return change
        shown = {n: (mask(personal[n], v) if n in personal else v) for n, v in attrs.items()}
        return {**change, "attrs": shown}
