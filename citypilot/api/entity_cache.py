"""Rendered entities, kept until the bus says they changed.

``GET /ngsi-ld/v1/entities/{id}`` in its default form is the API's most frequent
read. Its JSON is kept here and dropped as soon as an ``entities.changed`` or
``entities.deleted`` event names the entity, so a cached answer is never older than
the last change this process published. (Every write goes through the broker, which
publishes on the bus; with several API processes the bus must span them.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from citypilot.broker import CHANGED, DELETED
from citypilot.bus.base import EventBus
from citypilot.store.base import EntityScope


class EntityCache:
    """A bounded least-recently-used map of entity id to rendered JSON bytes and the
    entity's scope (so a reader's grants are checked without reading the store)."""

    def __init__(self, bus: EventBus, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[bytes, EntityScope]] = OrderedDict()
        self._unsubscribe: list[Callable[[], None]] = [
            bus.listen(CHANGED, self._on_changed),
            bus.listen(DELETED, self._on_deleted),
        ]

    def get(self, entity_id: str) -> tuple[bytes, EntityScope] | None:
        """The cached rendering and scope, or None."""
        body = self._items.get(entity_id)
        if body is not None:
            self._items.move_to_end(entity_id)
        return body

    def put(self, entity_id: str, body: bytes, scope: EntityScope) -> None:
        """Keep a rendering (the oldest is dropped past capacity)."""
        self._items[entity_id] = (body, scope)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def close(self) -> None:
        """Stop listening to the bus and forget everything."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._items.clear()

    def _on_changed(self, subject: str, payload: dict[str, Any]) -> None:
        pop = self._items.pop
        for change in payload["changes"]:
            pop(change["id"], None)

    def _on_deleted(self, subject: str, payload: dict[str, Any]) -> None:
        for entity_id in payload["ids"]:
            self._items.pop(entity_id, None)
