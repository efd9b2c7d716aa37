"""A type registered or deleted at run time in one process is followed by the others
of the city (the other API processes, the engine worker): two brokers, each with its
own registry and its own bus connection, on one store — as two processes are."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from citypilot.broker import Broker
from citypilot.bus.base import EventBus
from citypilot.bus.memory import MemoryBus
from citypilot.bus.nats import NatsBus
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.errors import BadRequestData
from citypilot.model.types import TypeRegistry
from citypilot.store.sqlite import SQLiteStore
from tests.conftest import require_service

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[tuple[Broker, Broker]]:
    """Two brokers on one SQLite city and one NATS subject prefix (streams dropped after)."""
    require_service("NATS", "127.0.0.1", 4222)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    stores = [SQLiteStore(tmp_path / "city.db") for _ in range(2)]
    buses = [NatsBus(NATS_URL, prefix, name=f"process-{n}") for n in range(2)]
    brokers = []
    for store, bus in zip(stores, buses, strict=True):
        await store.open()
        await bus.start()
        broker = Broker(TypeRegistry(BUILTIN_TYPES), store, bus)
        await broker.load_registered_types()
        brokers.append(broker)
    await asyncio.sleep(0.2)  # the listeners' consumers subscribe
    yield brokers[0], brokers[1]
    for info in await buses[0].js.streams_info():
        if info.config.name.startswith(prefix.upper() + "_"):
            await buses[0].js.delete_stream(info.config.name)
    for store, bus in zip(stores, buses, strict=True):
        await bus.stop()
        await store.close()


async def _until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.02)


KIOSK = {
    "name": "Kiosk",
    "department": "economy",
    "attributes": {"visitors": {"value": "integer", "minimum": 0, "maximum": 1000}},
}


async def test_a_type_registered_in_one_process_is_enforced_by_the_other(
    two_processes: tuple[Broker, Broker],
) -> None:
    here, there = two_processes
    await here.types.register(KIOSK, by="admin")
    await _until(lambda: "Kiosk" in there.registry, "the other process knows Kiosk")
    with pytest.raises(BadRequestData) as refused:
        await there.create_entity({"id": "urn:ngsi-ld:Kiosk:1", "type": "Kiosk", "visitors": -4})
    assert refused.value.field is not None and "visitors" in refused.value.field

    narrowed = {**KIOSK, "attributes": {"visitors": {"value": "integer", "maximum": 5}}}
    await here.types.register(narrowed, by="admin")
    await _until(lambda: there.registry.get("Kiosk").version == 2, "version 2 followed")
    with pytest.raises(BadRequestData):
        await there.create_entity({"id": "urn:ngsi-ld:Kiosk:2", "type": "Kiosk", "visitors": 9})

    await here.types.delete("Kiosk")
    await _until(lambda: "Kiosk" not in there.registry, "the deletion followed")
    # open-world again in the other process: any value is plain NGSI-LD
    await there.create_entity({"id": "urn:ngsi-ld:Kiosk:3", "type": "Kiosk", "visitors": -4})


async def test_each_change_is_announced_and_its_echo_changes_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "city.db")
    await store.open()
    bus: EventBus = MemoryBus()
    broker = Broker(TypeRegistry(BUILTIN_TYPES), store, bus)
    await broker.load_registered_types()
    heard: list[dict] = []
    bus.listen("types.changed", lambda _s, payload: heard.append(payload))
    await broker.types.register(KIOSK, by="admin")
    await broker.types.delete("Kiosk")
    assert [(h["name"], h["type"] and h["type"]["version"]) for h in heard] == [
        ("Kiosk", 1),
        ("Kiosk", None),
    ]
    assert "Kiosk" not in broker.registry
    await store.close()
