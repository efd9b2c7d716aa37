"""A city on several processes: two API processes, a writer and two MQTT ingest workers,
over the machine's NATS JetStream, PostgreSQL and Mosquitto (own prefix, database, topics)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import aiomqtt
import httpx
import orjson
import pytest
import websockets

from citypilot.bench.processes import wait_until
from citypilot.bench.receiver import Receiver
from tests.conftest import require_service, stream_protocols
from tests.integration.cluster import (
    DEVICE_KEY,
    TYPE,
    Cluster,
    create_sensors,
    metric,
    token,
)
from tests.integration.test_ngsi_ld_tenants import _drop_tenant_databases

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str) -> Iterator[dict]:
    """The running processes, their URLs and metrics ports."""
    require_service("NATS", "127.0.0.1", 4222)
    require_service("MQTT broker", "127.0.0.1", 1883)
    cluster = Cluster(
        tmp_path_factory.mktemp("workers"),
        "nats://127.0.0.1:4222",
        postgres_dsn,
        "mqtt://127.0.0.1:1883",
        f"w{uuid.uuid4().hex[:10]}",
    )
    try:
        cluster.seed()
        _, api_a = cluster.api("api-a")
        _, api_b = cluster.api("api-b")
        _, writer = cluster.worker("writer", "w1")
        _, ingest_1 = cluster.worker("ingest", "i1")
        _, ingest_2 = cluster.worker("ingest", "i2")
        ids = create_sensors(api_a, 10)
        yield {
            "cluster": cluster,
            "a": api_a,
            "b": api_b,
            "writer": writer,
            "ingest": [ingest_1, ingest_2],
            "ids": ids,
        }
    finally:
        cluster.stop()
        _drop_streams(cluster)
        _drop_tenant_databases(postgres_dsn)


def _drop_streams(cluster: Cluster) -> None:
    from citypilot.bus.nats import NatsBus

    async def drop() -> None:
        bus = NatsBus(cluster.nats_url, cluster.prefix)
        await bus.start()
        for info in await bus.js.streams_info():
            if info.config.name.startswith(bus.prefix.upper() + "_"):
                await bus.js.delete_stream(info.config.name)
        await bus.stop()

    asyncio.run(drop())


def _no2(url: str, eid: str) -> float | None:
    r = httpx.get(
        f"{url}/ngsi-ld/v1/entities/{eid}", headers={"Authorization": f"Bearer {token(url)}"}
    )
    return r.json().get("no2", {}).get("value") if r.status_code == 200 else None


async def test_http_ingest_reaches_history_and_every_api_process_stream(city: dict) -> None:
    eid = city["ids"][0]
    ws_url = city["b"].replace("http", "ws") + "/api/v1/stream"
    async with websockets.connect(ws_url, subprotocols=stream_protocols(token(city["b"]))) as ws:
        await ws.send(orjson.dumps({"ids": [eid]}).decode())
        await asyncio.sleep(0.5)  # let the filter apply
        r = httpx.post(
            city["a"] + "/api/v1/ingest",
            json=[
                {
                    "id": eid,
                    "type": TYPE,
                    "observedAt": "2026-12-01T10:00:00Z",
                    "attrs": {"no2": 33},
                }
            ],
            headers={"X-Device-Key": DEVICE_KEY},
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1
        async with asyncio.timeout(30):
            while True:
                frame = orjson.loads(await ws.recv())
                changes = [c for c in frame.get("changes", []) if c["id"] == eid]
                if changes and changes[0]["attrs"].get("no2") == 33:
                    break
    # the change reached API B from the writer process: state is in PostgreSQL
    assert _no2(city["b"], eid) == 33
    r = httpx.get(
        f"{city['b']}/api/v1/history/{eid}",
        params={"attrs": "no2"},
        headers={"Authorization": f"Bearer {token(city['b'])}"},
    )
    assert r.status_code == 200
    assert [v for _, v in r.json()["attrs"]["no2"]] == [33]


async def test_ingest_workers_share_the_mqtt_topic_tree(city: dict) -> None:
    cluster: Cluster = city["cluster"]
    before = [metric(port, "citypilot_observations_accepted_total") for port in city["ingest"]]
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        for n in range(60):
            local = city["ids"][n % 10].rsplit(":", 1)[1]
            payload = {"observedAt": f"2026-12-01T11:00:{n:02d}Z", "attrs": {"no2": n}}
            await client.publish(
                f"{cluster.topic_root}/{TYPE}/{local}/attrs", orjson.dumps(payload), qos=1
            )
    # the last message of each sensor became its state, whichever worker took it
    for n in range(50, 60):
        eid = city["ids"][n % 10]
        wait_until(lambda eid=eid, n=n: _no2(city["a"], eid) == n, f"{eid} = {n}", 30)
    gained = [
        metric(port, "citypilot_observations_accepted_total") - b
        for port, b in zip(city["ingest"], before, strict=True)
    ]
    assert sum(gained) == 60, "each message taken by exactly one worker"
    assert all(g > 0 for g in gained), f"both workers took a share: {gained}"


def test_metrics_and_health_of_every_process(city: dict) -> None:
    health = httpx.get(city["a"] + "/api/v1/health").json()
    assert health["status"] == "ok" and health["bus"] == "nats"
    assert health["dependencies"]["bus"]["up"] and health["dependencies"]["store"]["up"]
    text = httpx.get(city["a"] + "/metrics").text
    assert (
        'citypilot_http_request_duration_seconds_count{method="GET",route="/api/v1/health"' in text
    )
    assert metric(city["writer"], "citypilot_readings_written_total") > 0
    assert metric(city["writer"], "citypilot_batch_write_seconds_count") > 0
    wait_until(
        lambda: 'citypilot_stream_lag{consumer="writer"}' in httpx.get(city["a"] + "/metrics").text,
        "the writers' lag on the API's metrics",
        10,
    )


TENANT = {"NGSILD-Tenant": "acrossprocesses"}


def _in_tenant(url: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token(url)}", **TENANT}
    return httpx.request(method, url + "/ngsi-ld/v1" + path, headers=headers, timeout=30, **kwargs)


def _set_level(url: str, eid: str, level: float) -> None:
    body = {"waterLevel": {"type": "Property", "value": level}}
    r = _in_tenant(url, "PATCH", f"/entities/{eid}/attrs", json=body)
    assert r.status_code == 204, r.text


def test_a_tenant_is_one_data_space_across_api_processes(city: dict) -> None:
    """A tenant's change made through one API process is what the other reads next (its
    cache of rendered entities hears the tenant's bus), and its subscription notifies
    each change once, whichever process took it."""
    eid = f"urn:ngsi-ld:WaterLevelSensor:across-{uuid.uuid4().hex[:8]}"
    doc = {"id": eid, "type": "WaterLevelSensor", "waterLevel": {"type": "Property", "value": 1.0}}
    assert _in_tenant(city["a"], "POST", "/entities", json=doc).status_code == 201
    with Receiver() as receiver:
        sub = {
            "type": "Subscription",
            "entities": [{"type": "WaterLevelSensor", "id": eid}],
            "notification": {"format": "keyValues", "endpoint": {"uri": receiver.url}},
        }
        assert _in_tenant(city["a"], "POST", "/subscriptions", json=sub).status_code == 201
        time.sleep(1.0)  # process B takes the subscription up from the store
        # B reads (and caches) the entity; A changes it; B reads the change
        assert _in_tenant(city["b"], "GET", f"/entities/{eid}").json()["waterLevel"]["value"] == 1.0
        _set_level(city["a"], eid, 2.0)
        wait_until(
            lambda: (
                _in_tenant(city["b"], "GET", f"/entities/{eid}").json()["waterLevel"]["value"]
                == 2.0
            ),
            "process B to read the change made through A",
            15,
        )
        # each change notified once, whichever process took it (a notification shows
        # the entity as it is when matched: one change at a time here)
        for n, (process, level) in enumerate((("b", 3.0), ("a", 4.0), ("b", 5.0)), 2):
            _set_level(city[process], eid, level)
            assert receiver.wait_for(n)[-1].json()["data"][0]["waterLevel"] == level
        time.sleep(1.0)  # a second copy from the other process would be here by now
        levels = [n.json()["data"][0]["waterLevel"] for n in receiver.received]
        assert levels == [2.0, 3.0, 4.0, 5.0]
