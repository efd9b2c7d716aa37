"""The EventBus contract, run against the in-process bus and NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest
from nats.aio.msg import Msg

from citypilot.bus.base import EventBus
from citypilot.bus.memory import MemoryBus
from citypilot.bus.nats import NatsBus
from tests.conftest import require_service

NATS_URL = "nats://127.0.0.1:4222"


async def _nats_bus(prefix: str) -> NatsBus:
    bus = NatsBus(NATS_URL, prefix)
    await bus.start()
    return bus


async def _drop_streams(bus: NatsBus) -> None:
    for name in await bus.js.streams_info():
        if name.config.name.startswith(bus.prefix.upper() + "_"):
            await bus.js.delete_stream(name.config.name)


@pytest.fixture(params=["memory", "nats"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    """Each bus, started; NATS on its own subject prefix (streams dropped after)."""
    if request.param == "memory":
        memory = MemoryBus()
        await memory.start()
        yield memory
        await memory.stop()
        return
    require_service("NATS", "127.0.0.1", 4222)
    nats_bus = await _nats_bus(f"t{uuid.uuid4().hex[:10]}")
    yield nats_bus
    await _drop_streams(nats_bus)
    await nats_bus.stop()


async def _until(predicate, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_every_listener_gets_every_event_in_order(bus: EventBus) -> None:
    got_a: list[tuple[str, dict]] = []
    got_b: list[dict] = []
    bus.listen("entities.changed", lambda s, p: got_a.append((s, p)))
    bus.listen("entities.changed", lambda s, p: got_b.append(p))
    await asyncio.sleep(0.2)  # let NATS consumers subscribe (they start at listen time anyway)
    changes = [
        {"id": f"urn:ngsi-ld:Streetlight:{i}", "type": "Streetlight", "attrs": {"n": i}}
        for i in range(20)
    ]
    for change in changes:
        await bus.publish("entities.changed", {"changes": [change]})
    await _until(lambda: len(got_a) == 20 and len(got_b) == 20, "all events")
    assert [p["changes"][0]["attrs"]["n"] for _, p in got_a] == list(range(20))
    assert {s for s, _ in got_a} == {"entities.changed"}
    assert got_b == [p for _, p in got_a]


async def test_unsubscribed_listener_gets_nothing_more(bus: EventBus) -> None:
    got: list[dict] = []
    stop = bus.listen("entities.deleted", lambda s, p: got.append(p))
    await bus.publish("entities.deleted", {"ids": ["urn:ngsi-ld:X:1"]})
    await _until(lambda: len(got) == 1, "first event")
    stop()
    await asyncio.sleep(0.1)
    await bus.publish("entities.deleted", {"ids": ["urn:ngsi-ld:X:2"]})
    marker: list[dict] = []
    bus.listen("entities.deleted", lambda s, p: marker.append(p))
    await asyncio.sleep(0.2)
    await bus.publish("entities.deleted", {"ids": ["urn:ngsi-ld:X:3"]})
    await _until(lambda: len(marker) >= 1, "marker event")
    assert got == [{"ids": ["urn:ngsi-ld:X:1"]}]


async def test_a_failing_listener_does_not_stop_the_others(bus: EventBus) -> None:
    got: list[dict] = []

    def broken(subject: str, payload: dict) -> None:
        raise RuntimeError("listener bug")

    bus.listen("commands.changed", broken)
    bus.listen("commands.changed", lambda s, p: got.append(p))
    await asyncio.sleep(0.2)
    await bus.publish("commands.changed", {"commands": [1]})
    await bus.publish("commands.changed", {"commands": [2]})
    await _until(lambda: len(got) == 2, "both events")


async def test_a_group_shares_events_among_its_listeners(bus: EventBus) -> None:
    got: list[int] = []
    for _ in range(2):
        bus.listen("command_acks.received", lambda s, p: got.append(p["n"]), group="acks")
    await asyncio.sleep(0.2)
    for n in range(30):
        await bus.publish("command_acks.received", {"n": n})
    await _until(lambda: len(got) >= 30, "every event")
    await asyncio.sleep(0.3)  # a duplicate would arrive by now
    assert sorted(got) == list(range(30)), "each event handled once across the group"


def test_nats_subjects_by_family_type_and_municipality() -> None:
    bus = NatsBus(NATS_URL, "city")
    assert bus.nats_subject("observations.Streetlight.m1") == "city.observations.Streetlight.m1"
    assert bus.nats_subject("commands.changed") == "city.commands.changed"
    assert bus.nats_subject("alarms.raised") == "city.events.alarms.raised"
    assert bus.bus_subject("city.events.alarms.raised") == "alarms.raised"
    assert bus.bus_subject("city.entities.changed.Streetlight") == "entities.changed"


async def test_a_nats_consumer_takes_a_backlog_in_one_batch_and_a_lone_event_alone() -> None:
    require_service("NATS", "127.0.0.1", 4222)
    bus = await _nats_bus(f"t{uuid.uuid4().hex[:10]}")
    batches: list[list[int]] = []

    async def on_batch(msgs: Sequence[Msg]) -> None:
        batches.append([orjson.loads(m.data)["n"] for m in msgs])
        for msg in msgs:
            await msg.ack()

    try:
        for n in range(20):  # stored before anyone consumes: a backlog
            await bus.publish("commands.changed", {"n": n})
        consumer = asyncio.ensure_future(bus.consume("commands.changed", "batches", on_batch))
        await _until(lambda: sum(map(len, batches)) == 20, "the backlog")
        assert batches == [list(range(20))], "one batch: the first message and those behind it"
        await bus.publish("commands.changed", {"n": 20})
        await _until(lambda: len(batches) == 2, "the lone event")
        assert batches[1] == [20]
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    finally:
        await _drop_streams(bus)
        await bus.stop()
