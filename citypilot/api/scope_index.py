"""The scope (type, municipality, department) of every entity, kept current from the bus.

The live stream decides per change whom it may reach; a change names only the
attributes that changed, so the stream keeps each entity's scope here: loaded from
the store at start, then updated by every change and deletion it sees.
"""

from __future__ import annotations

from typing import Any

from citypilot.security.scopes import DEPARTMENT_ATTR, MUNICIPALITY_ATTR, entity_scope
from citypilot.store.base import EntityScope, Store


class ScopeIndex:
    """Entity id → (type, municipality, department)."""

    def __init__(self) -> None:
        self._scopes: dict[str, EntityScope] = {}

    async def load(self, store: Store) -> None:
        """Read every entity's scope from the store."""
        self._scopes = await store.entity_scopes()

    def observe(self, change: dict[str, Any]) -> EntityScope:
        """Take in one change event; return the entity's scope after it."""
        entity_id, attrs = change["id"], change["attrs"]
        old = self._scopes.get(entity_id)
        removed = change.get("removed", ())
        moved = old is None or any(
            n in attrs or n in removed for n in (MUNICIPALITY_ATTR, DEPARTMENT_ATTR)
        )
        if not moved:
            return old
        type_name = change["type"]
        municipality, department = entity_scope(entity_id, type_name, attrs)
        if old is not None:
            if MUNICIPALITY_ATTR not in attrs and MUNICIPALITY_ATTR not in removed:
                municipality = old[1]
            if DEPARTMENT_ATTR not in attrs and DEPARTMENT_ATTR not in removed:
                department = old[2]
        scope = self._scopes[entity_id] = (type_name, municipality, department)
        return scope

    def forget(self, entity_id: str) -> EntityScope | None:
        """Drop a deleted entity; return the scope it had."""
        return self._scopes.pop(entity_id, None)
