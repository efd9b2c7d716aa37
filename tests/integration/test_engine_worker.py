"""The engine in its own processes (``engine = "worker"``): an API process, a writer and
two engine workers over a private NATS server and a fresh PostgreSQL database.

The API runs no engine: commands submitted to it are handled by the engine worker
holding the lease, which delivers them to an HTTP device; kill -9 that worker and
the standby takes the lease and handles the next command, once; with no engine
worker left the API answers 503 naming the engine, at once. (The command, alarm,
rule and mode API tests run against such an API in test_engine_worker_api.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import HTTPServer
from typing import Any

import httpx
import psycopg
import pytest

from citypilot.bench.processes import NatsServer, Proc, wait_until
from tests.integration.cluster import DEVICE_KEY, Cluster, token
from tests.integration.test_api_commands import Device, now_iso

pytestmark = pytest.mark.postgres

ADMIN = ("admin", "admin-password-0123")
LEADS = "engine running"
STANDBY = "standby: another engine worker holds the engine lease"
BOUND_S = 30.0


@pytest.fixture(scope="module")
def device() -> Iterator[str]:
    """An HTTP device that accepts every command and keeps what it was sent; its URL."""
    Device.received = []
    Device.answer = (200, b'{"status": "accepted"}')
    httpd = HTTPServer(("127.0.0.1", 0), Device)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/commands"
    httpd.shutdown()


@pytest.fixture(scope="module")
def city(
    tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str, device: str
) -> Iterator[dict]:
    """The processes: an API with engine = "worker", a writer, engine workers e1 (leading)
    and e2 (standby); a streetlight whose commands go to the HTTP device."""
    base = tmp_path_factory.mktemp("engine")
    nats_server = NatsServer(base)
    cluster = Cluster(base, nats_server.url, postgres_dsn, "mqtt://127.0.0.1:1", "engine")
    cluster.settings = {"CITYPILOT_ENGINE": "worker"}
    try:
        nats_server.start()
        cluster.seed()
        cluster.add_user(ADMIN, "admin")
        _, url = cluster.api("api")
        cluster.worker("writer", "w1")
        e1, _ = cluster.worker("engine", "e1")
        e1.wait_for_log(LEADS)
        e2, _ = cluster.worker("engine", "e2")
        e2.wait_for_log(STANDBY)
        lamp = "urn:ngsi-ld:Streetlight:engine-worker-1"
        doc = {
            "id": lamp,
            "type": "Streetlight",
            "illuminanceLevel": {"type": "Property", "value": 1.0},
        }
        with _client(url) as c:
            assert c.post("/ngsi-ld/v1/entities", json=doc).status_code == 201
        with _client(url, ADMIN) as admin:
            r = admin.put(f"/api/v1/commands/endpoints/{lamp}", json={"url": device})
            assert r.status_code == 200, r.text
        yield {"url": url, "lamp": lamp, "engines": {"e1": e1, "e2": e2}}
    finally:
        cluster.stop()
        nats_server.proc.stop()


def _client(url: str, who: tuple[str, str] | None = None) -> httpx.Client:
    if who is None:
        bearer = token(url)
    else:
        r = httpx.post(url + "/api/v1/auth/token", data={"username": who[0], "password": who[1]})
        bearer = r.json()["access_token"]
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


def _submit(city: dict, level: int) -> dict[str, Any]:
    with _client(city["url"]) as c:
        r = c.post(
            f"/api/v1/entities/{city['lamp']}/commands",
            json={"command": "setDimming", "args": {"level": level}, "reason": "test"},
        )
    assert r.status_code == 202, r.text
    return r.json()


def _until_state(city: dict, command_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + BOUND_S
    with _client(city["url"]) as c:
        while True:
            body = c.get(f"/api/v1/commands/{command_id}").json()
            if body["state"] == state:
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.05)


def _report(city: dict, level: float) -> None:
    body = [
        {
            "id": city["lamp"],
            "type": "Streetlight",
            "observedAt": now_iso(),
            "attrs": {"illuminanceLevel": level},
        }
    ]
    r = httpx.post(city["url"] + "/api/v1/ingest", json=body, headers={"X-Device-Key": DEVICE_KEY})
    assert r.status_code == 200, r.text


def _received(command_id: str) -> int:
    return sum(1 for doc in Device.received if doc["id"] == command_id)


def test_a_command_submitted_to_the_api_is_delivered_and_confirmed_by_the_engine_worker(
    city: dict,
) -> None:
    health = httpx.get(city["url"] + "/api/v1/health").json()
    assert health["dependencies"]["engine"] == {"backend": "worker", "up": True}
    cmd = _submit(city, 40)
    assert cmd["state"] == "pending" and cmd["requestedBy"] == "operator"
    acked = _until_state(city, cmd["id"], "acknowledged")
    assert acked["channel"] == "http" and _received(cmd["id"]) == 1
    _report(city, 0.4)  # the lamp's report, through the writer, confirms it
    confirmed = _until_state(city, cmd["id"], "confirmed")
    states = [t["state"] for t in confirmed["transitions"]]
    assert states == ["pending", "sent", "acknowledged", "confirmed"]


def test_a_refusal_of_the_engine_is_the_same_problem_as_an_embedded_one(city: dict) -> None:
    with _client(city["url"]) as c:
        r = c.post(
            f"/api/v1/entities/{city['lamp']}/commands",
            json={"command": "setDimming", "args": {"level": 101}},
        )
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("BadRequestData") and r.json()["field"] == "args.level"


def test_the_standby_takes_over_when_the_leader_is_killed(city: dict) -> None:
    e1: Proc = city["engines"]["e1"]
    e2: Proc = city["engines"]["e2"]
    before = _submit(city, 20)
    _until_state(city, before["id"], "acknowledged")
    e1.kill9()
    e2.wait_for_log("engine lease taken")
    e2.wait_for_log(LEADS)
    after = _submit(city, 60)
    _until_state(city, after["id"], "acknowledged")
    _report(city, 0.6)
    _until_state(city, after["id"], "confirmed")
    # each command reached the device once: the new leader did not send either again
    assert _received(before["id"]) == 1 and _received(after["id"]) == 1


def test_with_no_engine_worker_the_api_answers_503_naming_the_engine(city: dict) -> None:
    for proc in city["engines"].values():
        proc.kill9()
    with _client(city["url"]) as c:
        r = c.post(
            f"/api/v1/entities/{city['lamp']}/commands",
            json={"command": "setDimming", "args": {"level": 10}},
        )
        assert r.status_code == 503, r.text
        assert r.json()["field"] == "engine" and "citypilot worker engine" in r.json()["detail"]
        assert "retry-after" in r.headers
        for path in ("/api/v1/alarms", "/api/v1/modes", "/api/v1/rules"):
            r = c.get(path)
            assert r.status_code == 503 and r.json()["field"] == "engine", (path, r.text)
        # reads of the command log do not need the engine
        assert c.get("/api/v1/commands", params={"entity": city["lamp"]}).status_code == 200
    health = httpx.get(city["url"] + "/api/v1/health").json()
    assert health["status"] == "degraded" and health["down"] == ["engine"]


def test_a_killed_leader_restarted_waits_as_a_standby(city: dict) -> None:
    e1: Proc = city["engines"]["e1"]
    e2: Proc = city["engines"]["e2"]
    e2.start()
    wait_until(lambda: e2.log().count(LEADS) >= 2, "e2 to lead again", BOUND_S)
    seen = e1.log().count(STANDBY)
    e1.start()
    wait_until(lambda: e1.log().count(STANDBY) > seen, "e1 to wait as a standby", BOUND_S)
    cmd = _submit(city, 30)
    _until_state(city, cmd["id"], "acknowledged")
    assert _received(cmd["id"]) == 1


def test_a_leader_that_loses_its_lease_stops_and_another_leads(
    city: dict, postgres_dsn: str
) -> None:
    e1: Proc = city["engines"]["e1"]
    e2: Proc = city["engines"]["e2"]
    runs = e1.log().count(LEADS) + e2.log().count(LEADS)
    # e2 leads (the test before): its lease session ends, as when PostgreSQL drops it
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'citypilot-engine-lease e2'"
        )
    e2.wait_for_log("engine lease lost")
    e2.wait_for_log("the engine is stopped; waiting for the lease again")
    wait_until(
        lambda: e1.log().count(LEADS) + e2.log().count(LEADS) > runs,
        "an engine worker to lead again",
        BOUND_S,
    )
    cmd = _submit(city, 70)
    _until_state(city, cmd["id"], "acknowledged")
    assert _received(cmd["id"]) == 1
