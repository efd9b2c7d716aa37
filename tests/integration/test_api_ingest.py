"""Device ingest, history, dead letters and the live stream, over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import orjson
import pytest
import websockets

from citypilot.bench.server import free_port, server_process
from tests.conftest import DEVICE_KEY, OPERATOR, Server, seed_accounts, stream_protocols
from tests.integration.test_api_entities import NGSI, light, problem


def new_light(server: Server, **attrs: object) -> str:
    local = uuid.uuid4().hex[:12]
    with server.client() as c:
        assert c.post(f"{NGSI}/entities", json=light(local, **attrs)).status_code == 201
    return f"urn:ngsi-ld:Streetlight:{local}"


def obs(entity_id: str, at: str, **attrs: object) -> dict:
    return {"id": entity_id, "type": "Streetlight", "observedAt": at, "attrs": attrs}


def test_ingest_updates_state_and_history_newest_wins(server: Server):
    eid = new_light(server, powerState="off")
    with server.client() as c:  # read first: the rendered entity is now cached
        assert c.get(f"{NGSI}/entities/{eid}").json()["powerState"]["value"] == "off"
    batch = [
        obs(eid, "2026-11-20T10:00:00Z", powerConsumption=41.5, powerState="on"),
        obs(eid, "2026-11-20T09:00:00Z", powerConsumption=9.5, powerState="off"),
    ]
    with server.device() as device:
        r = device.post("/api/v1/ingest", json=batch)
        assert r.status_code == 200 and r.json()["accepted"] == 2
        # a late reading after the fact: history only
        device.post("/api/v1/ingest", json=[obs(eid, "2026-11-20T08:00:00Z", powerConsumption=1.0)])
    with server.client() as c:
        state = c.get(f"{NGSI}/entities/{eid}", params={"options": "keyValues"}).json()
        assert state["powerConsumption"] == 41.5 and state["powerState"] == "on"
        plain = c.get(f"{NGSI}/entities/{eid}").json()
        assert plain["powerState"]["value"] == "on"
        assert plain["powerState"]["observedAt"] == "2026-11-20T10:00:00.000Z"
        hist = c.get(f"/api/v1/history/{eid}", params={"attrs": "powerConsumption"}).json()
        assert [v for _, v in hist["attrs"]["powerConsumption"]] == [1.0, 9.5, 41.5]


def test_history_range_and_server_side_buckets(server: Server):
    eid = new_light(server)
    batch = [
        obs(eid, f"2026-11-20T{h:02d}:{m:02d}:00Z", powerConsumption=float(h * 10 + m))
        for h in (10, 11)
        for m in (0, 30)
    ]
    with server.device() as device:
        assert device.post("/api/v1/ingest", json=batch).status_code == 200
    with server.client() as c:
        base = f"/api/v1/history/{eid}"
        r = c.get(base, params={"attrs": "powerConsumption", "bucket": "1h", "agg": "avg"})
        assert r.json()["attrs"]["powerConsumption"] == [
            ["2026-11-20T10:00:00.000Z", 115.0],
            ["2026-11-20T11:00:00.000Z", 125.0],
        ]
        r = c.get(base, params={"attrs": "powerConsumption", "bucket": "1h", "agg": "count"})
        assert [v for _, v in r.json()["attrs"]["powerConsumption"]] == [2, 2]
        r = c.get(
            base,
            params={
                "attrs": "powerConsumption",
                "from": "2026-11-20T10:15:00Z",
                "to": "2026-11-20T11:15:00Z",
            },
        )
        assert [v for _, v in r.json()["attrs"]["powerConsumption"]] == [130, 110]
        problem(c.get(base, params={"bucket": "1fortnight"}), 400, "BadRequestData", "bucket")
        problem(c.get(base, params={"from": "soon"}), 400, "BadRequestData", "from")
        problem(c.get(base, params={"agg": "median", "bucket": "1h"}), 400, "InvalidRequest", "agg")


def test_ndjson_batch_mixing_good_and_bad_items(server: Server):
    eid = new_light(server)
    lines = [
        orjson.dumps(obs(eid, "2026-11-20T10:00:00Z", powerConsumption=12.0)),
        b"{not json",
        orjson.dumps(obs(eid, "2026-11-20T10:01:00Z", powerConsumption=99999.0)),
        orjson.dumps(
            obs("urn:ngsi-ld:Streetlight:ghost", "2026-11-20T10:00:00Z", powerConsumption=1.0)
        ),
        orjson.dumps(obs(eid, "2026-11-20T10:02:00Z", powerConsumption=13.0)),
    ]
    with server.device() as device:
        r = device.post(
            "/api/v1/ingest",
            content=b"\n".join(lines),
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert r.status_code == 207
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == 3
    assert [(e["index"], e["error"]["field"]) for e in body["errors"]] == [
        (1, "[1]"),
        (2, "[2].attrs.powerConsumption"),
        (3, "[3].id"),
    ]
    with server.client() as c:
        letters = c.get("/api/v1/dead-letters", params={"limit": 50}).json()["items"]
        reasons = {
            d["field"]: d for d in letters if eid in d["payload"] or "not json" in d["payload"]
        }
        assert "[2].attrs.powerConsumption" in reasons
        assert "99999" in reasons["[2].attrs.powerConsumption"]["payload"]
        assert any(d["payload"] == "{not json" for d in letters)


def test_all_refused_is_400_problem_and_json_errors_are_dead_lettered(server: Server):
    with server.device() as device:
        r = device.post("/api/v1/ingest", json=[{"id": "x"}])
        body = problem(r, 400, "BadRequestData", "body")
        assert body["errors"][0]["error"]["field"] == "[0].type"
        r = device.post(
            "/api/v1/ingest", content=b"[{oops", headers={"Content-Type": "application/json"}
        )
        problem(r, 400, "InvalidRequest", "body")
        r = device.post("/api/v1/ingest", content=b"x", headers={"Content-Type": "text/csv"})
        problem(r, 415, "UnsupportedMediaType")
    with server.client() as c:
        payloads = [d["payload"] for d in c.get("/api/v1/dead-letters").json()["items"]]
        assert "[{oops" in payloads


def test_ingest_needs_a_device_key_or_an_operator(server: Server):
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/api/v1/ingest", json=[], headers={"X-Device-Key": "cpd_wrong"})
        problem(r, 401, "Unauthorized")
        problem(c.post("/api/v1/ingest", json=[]), 401, "Unauthorized")
    from tests.conftest import VIEWER

    with server.client(VIEWER) as viewer:
        problem(viewer.post("/api/v1/ingest", json=[]), 403, "Forbidden")


async def _collect(url: str, token: str, until: float, want: int) -> list[dict]:
    frames: list[dict] = []
    async with websockets.connect(url, subprotocols=stream_protocols(token)) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        while time.monotonic() < until and sum(len(f["changes"]) for f in frames) < want:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if frame["type"] == "changes":
                frames.append(frame)
    return frames


def test_stream_pushes_filtered_batched_changes(server: Server):
    inside = new_light(server)
    outside_local = uuid.uuid4().hex[:12]
    with server.client() as c:
        c.post(f"{NGSI}/entities", json=light(outside_local, 6.5, 48.5))
    outside = f"urn:ngsi-ld:Streetlight:{outside_local}"
    token = server.token(OPERATOR)
    ws_url = (
        server.url.replace("http", "ws") + "/api/v1/stream?types=Streetlight&bbox=5.0,47.0,5.1,47.5"
    )

    async def scenario() -> list[dict]:
        collector = asyncio.create_task(_collect(ws_url, token, time.monotonic() + 10, 1))
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(
            base_url=server.url, headers={"X-Device-Key": DEVICE_KEY}
        ) as device:
            batch = [
                obs(inside, f"2026-11-20T10:00:{s:02d}Z", powerConsumption=float(s))
                for s in range(20)
            ]
            batch.append(obs(outside, "2026-11-20T10:00:00Z", powerConsumption=1.0))
            assert (await device.post("/api/v1/ingest", json=batch)).status_code == 200
        return await collector

    frames = asyncio.run(scenario())
    changes = [ch for f in frames for ch in f["changes"]]
    assert [ch["id"] for ch in changes] == [inside]  # 20 updates merged, filter applied
    assert changes[0]["attrs"]["powerConsumption"] == 19.0


def test_stream_refuses_without_a_token(server: Server):
    async def attempt() -> dict:
        async with websockets.connect(server.url.replace("http", "ws") + "/api/v1/stream") as ws:
            return json.loads(await ws.recv())

    reply = asyncio.run(attempt())
    assert reply["type"] == "error" and reply["error"]["status"] == 401


@pytest.mark.slow
def test_acknowledged_observations_survive_kill_9(tmp_path):
    asyncio.run(seed_accounts(tmp_path))
    port = free_port()
    env = {**os.environ, "CITYPILOT_DATA_DIR": str(tmp_path), "CITYPILOT_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "citypilot.cli", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/api/v1/health")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        server = Server(url, tmp_path)
        eid = new_light(server)
        with server.device() as device:
            batch = [
                obs(eid, f"2026-11-20T10:{m:02d}:00Z", powerConsumption=float(m)) for m in range(60)
            ]
            assert device.post("/api/v1/ingest", json=batch).status_code == 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with server_process(tmp_path) as url2:
        server2 = Server(url2, tmp_path)
        with server2.client() as c:
            state = c.get(f"{NGSI}/entities/{eid}", params={"options": "keyValues"}).json()
            hist = c.get(f"/api/v1/history/{eid}").json()
    assert state["powerConsumption"] == 59.0
    assert len(hist["attrs"]["powerConsumption"]) == 60
