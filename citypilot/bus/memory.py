"""The in-process event bus: listeners are called in the publisher's event loop.

A listener must be quick (queue work, don't do it): a slow one delays the
publisher. A listener that raises is logged and does not stop the others.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable
from typing import Any

from citypilot.bus.base import Handler

log = logging.getLogger(__name__)


class MemoryBus:
    """Subjects matched exactly, or ``*`` for every subject."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Handler]] = {}
        # (subject, group) -> members, and the turn counter that picks one per event
        self._groups: dict[tuple[str, str], list[Handler]] = {}
        self._turns: dict[tuple[str, str], itertools.count[int]] = {}

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Drop every listener."""
        self._listeners.clear()
        self._groups.clear()

    async def publish(self, subject: str, payload: dict[str, Any]) -> None:
        """Call every listener of ``subject`` (and of ``*``), and one member of each group."""
        handlers = [*self._listeners.get(subject, ()), *self._listeners.get("*", ())]
        for key, members in self._groups.items():
            if members and key[0] in (subject, "*"):
                handlers.append(members[next(self._turns[key]) % len(members)])
        for handler in handlers:
            try:
                result = handler(subject, payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("bus listener %r failed on %s", handler, subject)

    def listen(
        self, subject: str, handler: Handler, *, group: str | None = None
    ) -> Callable[[], None]:
        """Register a listener (alone, or as a member of ``group``); the returned function
        removes it."""
        if group is None:
            handlers = self._listeners.setdefault(subject, [])
        else:
            handlers = self._groups.setdefault((subject, group), [])
            self._turns.setdefault((subject, group), itertools.count())
        handlers.append(handler)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe
