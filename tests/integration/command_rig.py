"""A small city for command tests: real store and broker, the simulator as the devices,
the command service on an injected clock (timers run when a test calls ``tick``)."""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from citypilot.broker import Broker
from citypilot.bus.memory import MemoryBus
from citypilot.engine.commands import CommandService
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.types import TypeRegistry
from citypilot.store.commands import command_log_for
from citypilot.store.sqlite import SQLiteStore
from citypilot.twin import City, Simulator
from citypilot.twin.command_channel import SimulatorChannel

COMMAND_TYPES = ("Streetlight", "AccessPoint", "Building", "TrafficSignal", "Bus", "Camera")


async def loaded_store(city: City, data: Path, types: Collection[str] = COMMAND_TYPES) -> Path:
    """A store file holding the city's entities of ``types`` (copy it per test)."""
    store = SQLiteStore(data / "city.db")
    await store.open()
    broker = Broker(TypeRegistry(BUILTIN_TYPES), store, MemoryBus())
    docs = [d for d in city.entities if d["type"] in types]
    for k in range(0, len(docs), 2000):
        await broker.batch_upsert(docs[k : k + 2000])
    await store.close()
    return data / "city.db"


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time on."""
        self.now += seconds


DAY = 86400.0
WEDNESDAY_10H_UTC = 6 * DAY + 10 * 3600  # the first Wednesday after the epoch, 11:00 in the town


def weekday_morning(now: float) -> float:
    """Five days after the last Wednesday 10:00 UTC that is at least five days before ``now``.

    A rig's devices start at that Wednesday morning whatever the hour of the run: the
    simulated town behaves by the hour (signals flash amber at night and refuse priority,
    buses sleep at the depot), so a test must not depend on when it runs.
    """
    week = 7 * DAY
    start = WEDNESDAY_10H_UTC + (now - 5 * DAY - WEDNESDAY_10H_UTC) // week * week
    return start + 5 * DAY


class Rig:
    """Store, broker, command service and simulator of one test."""

    def __init__(self, city: City, data: Path, simulated: Collection[str]) -> None:
        self.city = city
        self.store = SQLiteStore(data / "city.db")
        self.bus = MemoryBus()
        self.broker = Broker(TypeRegistry(BUILTIN_TYPES), self.store, self.bus)
        self.clock = Clock(weekday_morning(time.time()))
        # the devices live a few days back, so that tests can let days pass in the past
        self.sim = Simulator(city, city.seed, self.clock.now - 5 * 86400, types=simulated)
        self.service = self.new_service()
        self.events: list[dict[str, Any]] = []
        self.bus.listen("commands.changed", lambda s, p: self.events.extend(p["commands"]))

    def new_service(self) -> CommandService:
        """A command service on this rig's store and clock, reaching the simulator."""
        service = CommandService(self.broker, command_log_for(self.store), clock=self.clock)
        service.channels.append(SimulatorChannel(self.sim))
        return service

    async def open(self) -> None:
        """Open the store (made by :func:`loaded_store`) and start."""
        await self.store.open()
        await self.service.start(run_timers=False)
        await self.report()

    async def close(self) -> None:
        """Stop the service and close the store."""
        await self.service.stop()
        await self.store.close()

    async def report(self, seconds: float = 1.0) -> list[dict[str, Any]]:
        """Let the simulated devices run ``seconds`` more and ingest what they report."""
        observations = self.sim.step(self.sim.now + seconds)
        for k in range(0, len(observations), 5000):
            result = await self.broker.ingest(observations[k : k + 5000], "simulator")
            assert not result.errors, result.errors[:3]
        await self.service.settle()
        return observations

    async def submit(self, entity_id: str, command: str, args: Any = None, **kw: Any) -> Any:
        """Submit as the operator and wait for the delivery to be done."""
        kw.setdefault("reason", "test")
        kw.setdefault("requested_by", "operator")
        cmd = await self.service.submit(entity_id, command, args, **kw)
        await self.service.settle()
        return cmd

    async def later(self, seconds: float) -> None:
        """Advance the service's clock and run its timers."""
        self.clock.advance(seconds)
        await self.service.tick()
        await self.service.settle()

    def first(self, type_name: str) -> str:
        """The id of the first entity of a type."""
        return next(d["id"] for d in self.city.entities if d["type"] == type_name)
