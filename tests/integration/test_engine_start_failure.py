"""An engine that fails to start part-way leaves nothing running: the services already
started are stopped again (their bus listeners gone), and the error reaches the caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from citypilot.broker import Broker
from citypilot.bus.memory import MemoryBus
from citypilot.config import Settings
from citypilot.engine.assembly import Engine
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.types import TypeRegistry
from citypilot.ops.closures import ClosureBook
from citypilot.store.sqlite import SQLiteStore


def listener_count(bus: MemoryBus) -> int:
    """How many listeners the bus holds, on every subject."""
    return sum(len(handlers) for handlers in bus._listeners.values())


async def test_a_service_failing_to_start_stops_those_started_before_it(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "city.db")
    await store.open()
    bus = MemoryBus()
    broker = Broker(TypeRegistry(BUILTIN_TYPES), store, bus)
    settings = Settings(data_dir=tmp_path, rule_pack=False)
    engine = await Engine.build(settings, broker, ClosureBook(broker, None))
    before = listener_count(bus)

    async def broken_start() -> None:
        raise RuntimeError("rules directory unreadable")

    engine.rules.start = broken_start  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="rules directory unreadable"):
        await engine.start()
    # the command and alarm services had started (they listen to changes): now stopped
    assert listener_count(bus) == before
    assert engine.commands._ticker is None or engine.commands._ticker.done()
    await store.close()


async def test_the_engine_starts_and_stops_whole(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "city.db")
    await store.open()
    bus = MemoryBus()
    broker = Broker(TypeRegistry(BUILTIN_TYPES), store, bus)
    engine = await Engine.build(
        Settings(data_dir=tmp_path, rule_pack=False), broker, ClosureBook(broker, None)
    )
    before = listener_count(bus)
    await engine.start()
    assert listener_count(bus) > before
    await engine.stop()
    assert listener_count(bus) == before
    await store.close()
