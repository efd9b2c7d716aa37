"""The in-process event bus: listeners are called in the publisher's event loop.

A listener must be quick (queue work, don't do it): a slow one delays the
publisher. A listener that raises is logged and does not stop the others.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from citypilot.bus.base import Handler

log = logging.getLogger(__name__)


class MemoryBus:
    """Subjects matched exactly, or ``*`` for every subject."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Handler]] = {}

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Drop every listener."""
        self._listeners.clear()

    async def publish(self, subject: str, payload: dict[str, Any]) -> None:
        """Call every listener of ``subject`` (and of ``*``) with the payload."""
        for handler in (*self._listeners.get(subject, ()), *self._listeners.get("*", ())):
            try:
                result = handler(subject, payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("bus listener %r failed on %s", handler, subject)

    def listen(self, subject: str, handler: Handler) -> Callable[[], None]:
        """Register a listener; the returned function removes it."""
        self._listeners.setdefault(subject, []).append(handler)

        def unsubscribe() -> None:
            handlers = self._listeners.get(subject, [])
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe
