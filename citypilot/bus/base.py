"""The event bus interface: publish on a subject, listen with a handler, unsubscribe.

Subjects CityPilot publishes (payloads are plain dicts, JSON-ready):

- ``entities.changed``: ``{"changes": [Change, ...]}`` where a Change is
  ``{"id", "type", "attrs": {name: value}, "observedAt", "lon", "lat"}`` (and
  ``"removed": [name, ...]`` when attributes were deleted)
- ``entities.deleted``: ``{"ids": [...]}``
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Handler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class EventBus(Protocol):
    """Fan-out of events from producers to any number of listeners."""

    async def start(self) -> None:
        """Connect (a no-op for the in-process bus)."""

    async def stop(self) -> None:
        """Disconnect and drop every listener."""

    async def publish(self, subject: str, payload: dict[str, Any]) -> None:
        """Deliver ``payload`` to every listener of ``subject``."""

    def listen(self, subject: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(subject, payload)`` for each event; returns the unsubscribe function."""
