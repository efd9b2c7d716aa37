"""The event bus interface: publish on a subject, listen with a handler, unsubscribe.

Subjects CityPilot publishes (payloads are plain dicts, JSON-ready):

- ``entities.changed``: ``{"changes": [Change, ...]}`` where a Change is
  ``{"id", "type", "attrs": {name: value}, "observedAt", "lon", "lat"}`` (and
  ``"removed": [name, ...]`` when attributes were deleted)
- ``entities.deleted``: ``{"ids": [...]}``
- ``commands.*`` and ``command_acks.*``: device commands and their acknowledgements
  (``bus.nats`` keeps each family in its own durable stream; see there)

A listener with a ``group`` shares the events with the other listeners of the
same group, in every process: each event reaches one of them (the in-process bus,
with a single process, simply calls it).
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

    def listen(
        self, subject: str, handler: Handler, *, group: str | None = None
    ) -> Callable[[], None]:
        """Call ``handler(subject, payload)`` for each event; returns the unsubscribe function."""
