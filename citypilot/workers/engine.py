"""The engine worker: the engine (commands, alarms, rules, modes), the subscription
notifier and plugins' engine components, run by whichever engine worker holds the
engine lease (``workers/lease.py``).

Start any number of ``citypilot worker engine``: one leads, the others wait as
standbys and one of them takes over when the leader dies. API processes with
``engine = "worker"`` run none of it themselves.

An engine component is anything with ``async start()`` and ``async stop()``,
built from the running :class:`~citypilot.broker.Broker`. A plugin offers one
through the ``citypilot.engines`` entry-point group (or :func:`register_engine`);
the leader starts them after the engine and stops them before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol

from citypilot.api.deps import City
from citypilot.api.subscriptions import engine_notifier
from citypilot.broker import Broker
from citypilot.bus.nats import NatsBus
from citypilot.config import Settings
from citypilot.engine.assembly import Engine, stop_quietly
from citypilot.engine.engine_calls import engine_methods
from citypilot.engine.rpc import RpcServer
from citypilot.ops.closures import ClosureBook
from citypilot.ops.routing import open_routing
from citypilot.workers.lease import EngineLease, engine_lease
from citypilot.workers.runtime import worker_broker, worker_id

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "citypilot.engines"
#: Longest wait for the engine to stop (a lost lease, SIGTERM); past it the worker exits.
STOP_TIMEOUT_S = 15.0


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
    """Every plugin engine component: the entry points, then the registered ones."""
    found: dict[str, EngineFactory] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    found.update(_registered)
    return found


async def run_engine(settings: Settings) -> None:
    """Wait for the engine lease, run the engine while it is held, and wait again when it
    is lost; until cancelled (the lease is then given up)."""
    async with worker_broker(settings, "engine") as broker:
        holder = worker_id(settings)
        lease = engine_lease(settings, holder)
        try:
            while True:
                await lease.acquire()
                log.info("engine lease taken: engine worker %s leads", holder)
                await _lead(settings, broker, lease)
                log.info("the engine is stopped; waiting for the lease again")
        finally:
            await lease.release()


async def _lead(settings: Settings, broker: Broker, lease: EngineLease) -> None:
    """Run the engine and the plugins until the lease is lost or the worker is
    cancelled; stop them at once either way."""
    assert isinstance(broker.bus, NatsBus)
    closures = ClosureBook(broker, open_routing(settings.data_path / "graph"))
    started: list[tuple[str, EngineComponent]] = []
    try:
        engine = await Engine.build(settings, broker, closures)
        await engine.start()
        started.append(("engine", engine))
        notifier = await engine_notifier(City(settings, broker, settings.signing_key()))
        started.append(("subscription notifier", notifier))
        methods = {**engine_methods(engine), "subscriptions_refresh": notifier.refresh}
        calls = RpcServer(broker.bus, methods)
        await calls.start()
        started.append(("calls from the API", calls))
        for name, factory in engine_factories().items():
            component = factory(broker)
            await component.start()
            started.append((name, component))
        log.info("engine running: %s", ", ".join(name for name, _ in started))
        reason = await lease.lost()
        log.error("engine lease lost (%s): stopping the engine at once", reason)
    finally:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            for name, component in reversed(started):
                await stop_quietly(component)
                log.info("engine component %s stopped", name)
