"""The simulator drives a real CityPilot server like a device gateway: HTTP ingest and MQTT.

Each test starts its own server (embedded store) so that the city it loads does
not leak into other tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from citypilot.bench.server import server_process
from citypilot.twin import (
    City,
    HttpIngestClient,
    IngestRejected,
    MqttPublisher,
    Simulator,
    generate_city,
    run_simulation,
)
from citypilot.twin.runner import replay_start
from tests.conftest import DEVICE_KEY, OPERATOR, require_service, seed_accounts

SEED = 7
SIMULATED = ("Bus", "Tram", "Streetlight", "WaterLevelSensor")
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


@pytest.fixture(scope="module")
def city() -> City:
    """A small town."""
    return generate_city(SEED, 0.1)


def _operator(url: str) -> httpx.Client:
    r = httpx.post(
        url + "/api/v1/auth/token", data={"username": OPERATOR[0], "password": OPERATOR[1]}
    )
    r.raise_for_status()
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=60
    )


def _load(url: str, city: City) -> None:
    docs = [d for d in city.entities if d["type"] in SIMULATED]
    with _operator(url) as client:
        for k in range(0, len(docs), 2000):
            r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=docs[k : k + 2000])
            assert r.status_code in (200, 201, 204), r.text


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, city: City) -> Iterator[str]:
    data = tmp_path_factory.mktemp("twin-live")
    asyncio.run(seed_accounts(data))
    with server_process(data) as url:
        _load(url, city)
        yield url


async def test_simulated_updates_arrive_in_state_and_history(live_server: str, city: City):
    # a weekday morning in the past: buses run whatever the hour of the test run
    start = datetime(2026, 11, 19, 7, 40, tzinfo=UTC)
    sim = Simulator(city, SEED, start, types=SIMULATED)
    async with HttpIngestClient(live_server, DEVICE_KEY) as client:
        sent = 0
        for minute in range(1, 6):
            batch = sim.step(start + timedelta(minutes=minute))
            result = await client.send(batch)
            assert result.rejected == 0, result.errors[:3]
            sent += len(batch)
        assert client.accepted == sent > len(city.of_type("Streetlight"))
    moving = next(o["id"] for o in batch if o["type"] == "Bus" and o["attrs"].get("speed", 0) > 0)
    bus = [o for o in batch if o["id"] == moving][-1]  # its latest report
    with _operator(live_server) as api:
        state = api.get(f"/ngsi-ld/v1/entities/{bus['id']}").json()
        assert state["location"]["value"] == bus["attrs"]["location"]
        assert state["tripId"]["value"] == bus["attrs"]["tripId"]
        history = api.get(f"/api/v1/history/{bus['id']}", params={"attrs": "speed"}).json()
        assert len(history["attrs"]["speed"]) >= 10


async def test_real_time_loop_publishes_against_the_server(live_server: str, city: City):
    sim = Simulator(city, SEED, replay_start(speed=120.0, real_minutes=0.1), types=SIMULATED)
    start = sim.now
    enough = asyncio.Event()

    async def until_four_simulated_minutes() -> None:
        while sim.now - start < 240:  # the loop advances the clock by itself, at any load
            await asyncio.sleep(0.05)
        enough.set()

    watcher = asyncio.create_task(until_four_simulated_minutes())
    async with HttpIngestClient(live_server, DEVICE_KEY) as client:
        # 60 s only guards against a hang: at 120× the four minutes take about 2 s
        stats = await run_simulation(sim, client, speed=120.0, duration=60.0, stop_event=enough)
    watcher.cancel()
    assert stats.sim_seconds >= 240
    assert stats.published > 1000
    assert client.accepted == stats.published and client.rejected == 0


async def test_a_wrong_device_key_is_refused_with_the_server_reason(live_server: str, city: City):
    sim = Simulator(city, SEED, replay_start(1.0, 0.0) - timedelta(minutes=5), types={"Bus"})
    async with HttpIngestClient(live_server, "cpd_not_a_key") as client:
        with pytest.raises(IngestRejected) as caught:
            await client.send(sim.step(sim.now + 10))
    assert caught.value.status in (401, 403)


async def test_an_unreachable_server_is_retried_then_reported(city: City):
    sim = Simulator(city, SEED, replay_start(1.0, 0.0) - timedelta(minutes=5), types={"Bus"})
    client = HttpIngestClient(
        "http://127.0.0.1:9", DEVICE_KEY, first_backoff=0.05, give_up_after=0.3
    )
    began = time.monotonic()
    with pytest.raises(ConnectionError):
        await client.send(sim.step(sim.now + 10))
    await client.aclose()
    assert client.retries >= 3
    assert time.monotonic() - began >= 0.3


@pytest.mark.mqtt
async def test_mqtt_publisher_feeds_the_platform_mqtt_adapter(tmp_path: Path, city: City):
    require_service("MQTT broker", MQTT_HOST, MQTT_PORT)
    root = f"twin-{uuid.uuid4().hex[:8]}"
    await seed_accounts(tmp_path)
    env = {
        "CITYPILOT_MQTT_URL": f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
        "CITYPILOT_MQTT_TOPIC_ROOT": root,
    }
    with server_process(tmp_path, env) as url:
        _load(url, city)
        start = replay_start(1.0, 0.0) - timedelta(minutes=10)
        sim = Simulator(city, SEED, start, types={"WaterLevelSensor", "Tram"})
        batch = sim.step(start + timedelta(minutes=2))
        await asyncio.sleep(1.0)  # the adapter subscribes once the server is up
        async with MqttPublisher(f"mqtt://{MQTT_HOST}:{MQTT_PORT}", topic_root=root) as pub:
            assert await pub.send(batch) == len(batch)
        gauge = [o for o in batch if o["type"] == "WaterLevelSensor"][-1]
        with _operator(url) as api:
            deadline = time.monotonic() + 30
            while True:
                state = api.get(f"/ngsi-ld/v1/entities/{gauge['id']}").json()
                level = state.get("waterLevel", {}).get("value")
                if level == gauge["attrs"]["waterLevel"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        assert level == gauge["attrs"]["waterLevel"]
