"""Poison MQTT messages through the real Mosquitto (issue 7, defect 1).

A message that cannot be stored becomes a dead letter with the reason and is
acknowledged; the messages behind it are stored; the broker does not deliver it
again (checked across a restart of the adapter's persistent session).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from citypilot.api.app import build_registry
from citypilot.bench.server import server_process
from citypilot.broker import Broker
from citypilot.bus.memory import MemoryBus
from citypilot.config import Settings
from citypilot.ingest.mqtt import MqttIngest
from citypilot.model.ids import entity_id
from citypilot.model.observation import Reading
from citypilot.store.base import HistoryQuery
from citypilot.store.sqlite import SQLiteStore
from citypilot.workers.queue import QueueUnavailable
from tests.conftest import require_service, seed_accounts
from tests.integration.test_bad_input import YEAR_ZERO, nested
from tests.integration.test_mqtt_ingest import (
    MQTT_HOST,
    MQTT_PORT,
    MqttCity,
    create_streetlight,
    drop_session,
    history,
    poll,
    publish,
)

pytestmark = pytest.mark.mqtt


def reading(minute: int, value: float) -> bytes:
    return orjson.dumps(
        {"observedAt": f"2026-01-10T15:{minute:02d}:00Z", "attrs": {"powerConsumption": value}}
    )


async def letters(http: Any, source: str) -> list[dict[str, Any]]:
    r = await http.get("/api/v1/dead-letters", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [d for d in r.json()["items"] if d["source"] == source]


async def test_deeply_nested_messages_are_dead_letters_and_block_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Items nested 255..1,024 levels deep (orjson parses, but cannot write them back)."""
    require_service("MQTT broker", MQTT_HOST, MQTT_PORT)
    data = tmp_path_factory.mktemp("mqtt-poison")
    await seed_accounts(data)
    mc = MqttCity(data, f"citypilot-test-{uuid.uuid4().hex[:12]}")
    local = "poison-1"
    eid = entity_id("Streetlight", local)
    topic = f"{mc.root}/Streetlight/{local}/attrs"
    batch_topic = f"{mc.root}/batch"
    year_zero_topic = f"{mc.root}/Streetlight/{local}-0/attrs"
    deep_item = (
        b'[{"id":"%s","type":"Streetlight","observedAt":"2026-01-10T15:00:00Z",' % eid.encode()
        + b'"attrs":{"powerConsumption":'
        + nested(300)
        + b"}}]"
    )
    deep_device = b'{"observedAt":"2026-01-10T15:00:00Z","attrs":{"x":' + nested(1000) + b"}}"

    async def points(http: Any, count: int) -> list[Any] | None:
        found = await history(http, eid, "powerConsumption")
        return found if len(found) >= count else None

    try:
        with server_process(data, extra_env=mc.env) as url:
            mc.url = url
            async with mc.http() as http:
                await create_streetlight(http, local)
                await create_streetlight(http, f"{local}-0")
                await publish(
                    (batch_topic, deep_item),
                    (topic, deep_device),
                    (year_zero_topic, {"observedAt": YEAR_ZERO, "attrs": {"powerConsumption": 9}}),
                    (topic, reading(1, 1)),
                    (topic, reading(2, 2)),
                    (
                        batch_topic,
                        [orjson.loads(reading(3, 3)) | {"id": eid, "type": "Streetlight"}],
                    ),
                )
                found = await poll(lambda: points(http, 3), "the good messages behind the poison")
                assert sorted(v for _, v in found) == [1, 2, 3]
                [batch_letter] = await letters(http, f"mqtt:{batch_topic}")
                assert batch_letter["field"] == "[0].attrs.powerConsumption.a.a"
                assert "nests deeper than the limit" in batch_letter["reason"]
                [device_letter] = await letters(http, f"mqtt:{topic}")
                assert device_letter["field"] == "payload.attrs.x.a.a"
                [year_zero] = await letters(http, f"mqtt:{year_zero_topic}")
                assert year_zero["field"] == "payload.observedAt"
                assert "outside the accepted range" in year_zero["reason"]
        # the same session again: had the poison stayed unacknowledged, it comes back now
        with server_process(data, extra_env=mc.env) as url:
            mc.url = url
            async with mc.http() as http:
                await publish((topic, reading(4, 4)))
                found = await poll(lambda: points(http, 4), "the reading after the restart")
                assert sorted(v for _, v in found) == [1, 2, 3, 4]
                assert len(await letters(http, f"mqtt:{batch_topic}")) == 1
                assert len(await letters(http, f"mqtt:{topic}")) == 1
    finally:
        await drop_session(mc.root)


class PoisonStore(SQLiteStore):
    """A store that fails, the way a bug or a bad value would, on one entity's readings."""

    poison = ""

    async def apply_readings(self, readings: Sequence[Reading], now: float) -> list[Reading]:
        if any(r.entity_id == self.poison for r in readings):
            raise RuntimeError("cannot store this reading")
        return await super().apply_readings(readings, now)


async def test_a_message_failing_in_the_store_is_a_dead_letter(tmp_path: Path) -> None:
    """Whatever the cause of an item's failure, it is dead-lettered and acknowledged."""
    require_service("MQTT broker", MQTT_HOST, MQTT_PORT)
    root = f"citypilot-test-{uuid.uuid4().hex[:12]}"
    store = PoisonStore(tmp_path / "city.db")
    await store.open()
    bus = MemoryBus()
    await bus.start()
    broker = Broker(build_registry(Settings(data_dir=tmp_path)), store, bus)
    good, bad = entity_id("Streetlight", "good-1"), entity_id("Streetlight", "bad-1")
    PoisonStore.poison = bad
    for eid in (good, bad):
        await broker.create_entity({"id": eid, "type": "Streetlight"})
    url = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"

    async def values() -> list[Any] | None:
        series = await store.history(HistoryQuery(good, ("powerConsumption",)))
        found = [v for _, v in series.get("powerConsumption", [])]
        return found if len(found) >= 3 else None

    try:
        adapter = MqttIngest(url, root, broker, flush_delay=0.2)
        await adapter.start()
        await publish(
            (f"{root}/Streetlight/good-1/attrs", reading(0, 1)),
            (f"{root}/Streetlight/bad-1/attrs", reading(0, 66)),
            (f"{root}/Streetlight/good-1/attrs", reading(1, 2)),
            (f"{root}/Streetlight/good-1/attrs", reading(2, 3)),
        )
        assert await poll(values, "the good readings") == [1, 2, 3]
        letters_, _ = await store.list_dead_letters(100, 0)
        assert [d.source for d in letters_] == [f"mqtt:{root}/Streetlight/bad-1/attrs"]
        assert "cannot store this reading" in letters_[0].reason
        assert adapter.received == 4 and adapter.failed == 0
        await adapter.stop()
        # the same session: the poison was acknowledged, so it does not come back
        adapter = MqttIngest(url, root, broker, flush_delay=0.05)
        await adapter.start()
        await publish((f"{root}/Streetlight/good-1/attrs", reading(3, 4)))

        async def fourth() -> int | None:
            series = await store.history(HistoryQuery(good, ("powerConsumption",)))
            return 4 if len(series.get("powerConsumption", [])) == 4 else None

        await poll(fourth, "the reading after the restart")
        await adapter.stop()
        # the poison is not delivered again (a good message may be: storing it is idempotent)
        letters_, _ = await store.list_dead_letters(100, 0)
        assert len(letters_) == 1
        assert 1 <= adapter.received <= 2
    finally:
        await drop_session(root)
        await bus.stop()
        await store.close()


class AwayQueue:
    """An observation stream that cannot take anything while ``away`` (NATS restarting)."""

    def __init__(self) -> None:
        self.away = True
        self.kept: list[Reading] = []

    async def put(self, readings: Sequence[Reading], refs: dict[str, Any]) -> None:
        if self.away:
            raise QueueUnavailable("the observation stream is unavailable: NATS is away")
        self.kept.extend(readings)


async def test_messages_the_stream_cannot_take_now_are_not_dead_letters(tmp_path: Path) -> None:
    """A 503 from the observation stream is not the message's fault: it is neither
    dead-lettered nor acknowledged, and is stored once the stream is back."""
    require_service("MQTT broker", MQTT_HOST, MQTT_PORT)
    root = f"citypilot-test-{uuid.uuid4().hex[:12]}"
    store = SQLiteStore(tmp_path / "city.db")
    await store.open()
    bus = MemoryBus()
    await bus.start()
    queue = AwayQueue()
    broker = Broker(build_registry(Settings(data_dir=tmp_path)), store, bus)
    await broker.create_entity({"id": entity_id("Streetlight", "s-1"), "type": "Streetlight"})
    broker.observations = queue
    url = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"
    try:
        adapter = MqttIngest(url, root, broker, flush_delay=0.05)
        await adapter.start()
        await publish(
            (f"{root}/Streetlight/s-1/attrs", reading(0, 1)),
            (f"{root}/Streetlight/s-1/attrs", reading(1, 2)),
        )

        async def failed() -> int | None:
            return adapter.failed or None

        await poll(failed, "the batch the stream refused")
        letters_, _ = await store.list_dead_letters(100, 0)
        assert letters_ == [] and queue.kept == []
        queue.away = False

        async def kept() -> list[Any] | None:
            values = sorted({r.num for r in queue.kept})
            return values if len(values) == 2 else None

        assert await poll(kept, "both readings once the stream is back") == [1.0, 2.0]
        letters_, _ = await store.list_dead_letters(100, 0)
        assert letters_ == []
        await adapter.stop()
    finally:
        await drop_session(root)
        await bus.stop()
        await store.close()
