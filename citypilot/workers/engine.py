"""The engine worker and its registry of engine components (rules, alarms, commands, ...).

An engine component is anything with ``async start()`` and ``async stop()``,
built from the running :class:`~citypilot.broker.Broker`. A module offers one by
defining ``engine_component(broker)``; the worker imports the built-in modules
of :data:`BUILTIN_ENGINES` that exist, then those of the ``citypilot.engines``
entry-point group (plugins), and starts them all. Components that several
engine workers run at once should listen with a ``group`` (see ``bus.base``), so
that each event is handled once across the workers.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol

from citypilot.broker import Broker
from citypilot.config import Settings
from citypilot.workers.runtime import worker_broker

log = logging.getLogger(__name__)

#: Modules that may define ``engine_component(broker)``; missing ones are skipped.
BUILTIN_ENGINES = (
    "citypilot.engine.commands",
    "citypilot.engine.rules",
    "citypilot.engine.alarms",
    "citypilot.engine.subscriptions",
)
ENTRY_POINT_GROUP = "citypilot.engines"


class EngineComponent(Protocol):
    """A long-running part of the engine."""

    async def start(self) -> None:
        """Begin work (listen on the bus, start timers)."""

    async def stop(self) -> None:
        """Finish the work under way and stop."""


EngineFactory = Callable[[Broker], EngineComponent]
_registered: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Add an engine component (replacing one of the same name)."""
    _registered[name] = factory


def engine_factories() -> dict[str, EngineFactory]:
    """Every engine component available: built-in modules present, plugins, registered ones."""
    found: dict[str, EngineFactory] = {}
    for module_name in BUILTIN_ENGINES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # not built (yet)
            raise
        factory = getattr(module, "engine_component", None)
        if factory is not None:
            found[module_name.rsplit(".", 1)[-1]] = factory
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    found.update(_registered)
    return found


async def run_engine(settings: Settings) -> None:
    """Start every engine component and run until cancelled; stop them in reverse order."""
    async with worker_broker(settings, "engine") as broker:
        started: list[tuple[str, EngineComponent]] = []
        try:
            for name, factory in engine_factories().items():
                component = factory(broker)
                await component.start()
                started.append((name, component))
                log.info("engine component %s started", name)
            if not started:
                log.warning("no engine component is installed; the engine worker idles")
            await asyncio.Event().wait()
        finally:
            for name, component in reversed(started):
                await component.stop()
                log.info("engine component %s stopped", name)
