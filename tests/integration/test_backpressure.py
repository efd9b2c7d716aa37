"""Back-pressure on ingest and batch writes against a real server (issue 7, defect 4).

Requests held open mid-body occupy the in-flight slots deterministically, so
the 503s below do not depend on timing.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from citypilot.bench.server import server_process
from tests.conftest import DEVICE_KEY, Server, seed_accounts
from tests.integration.test_api_entities import NGSI, light, problem

LIMIT_ENV = {"CITYPILOT_MAX_INFLIGHT_REQUESTS": "2", "CITYPILOT_MAX_INFLIGHT_BYTES": "4096"}


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server allowing 2 write requests and 4,096 body bytes in flight."""
    data = tmp_path_factory.mktemp("tight")
    asyncio.run(seed_accounts(data))
    with server_process(data, extra_env=LIMIT_ENV) as url:
        yield Server(url, data)


def observations(eid: str, first: int, count: int) -> list[dict]:
    return [
        {
            "id": eid,
            "type": "Streetlight",
            "observedAt": f"2026-11-20T10:{(first + i) // 60:02d}:{(first + i) % 60:02d}Z",
            "attrs": {"powerConsumption": first + i},
        }
        for i in range(count)
    ]


class HeldRequest:
    """An ingest request whose body is sent only at :meth:`finish`.

    It asks ``Expect: 100-continue`` and waits for the server's ``100 Continue``,
    which comes once the handler reads the body: by then the request holds its slot.
    """

    def __init__(self, url: str, body: bytes) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.body = body
        head = (
            f"POST /api/v1/ingest HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nX-Device-Key: {DEVICE_KEY}\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
            "Connection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = self.sock.recv(1)
            assert chunk, "the server closed the connection"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100"), interim

    def finish(self) -> int:
        """Send the body; the response's status."""
        self.sock.sendall(self.body)
        reply = b""
        while chunk := self.sock.recv(65536):
            reply += chunk
        self.sock.close()
        return int(reply.split(b" ", 2)[1])


def readings_of(server: Server, eid: str) -> list[float]:
    with server.client() as c:
        r = c.get(f"/api/v1/history/{eid}", params={"attrs": "powerConsumption", "limit": 100000})
        assert r.status_code == 200, r.text
        return sorted(v for _, v in r.json()["attrs"].get("powerConsumption", []))


def new_light(server: Server, local: str) -> str:
    with server.client() as c:
        assert c.post(f"{NGSI}/entities", json=light(local)).status_code == 201
    return f"urn:ngsi-ld:Streetlight:{local}"


def test_past_the_limits_writes_get_503_with_retry_after_and_nothing_is_lost(tight: Server):
    eid = new_light(tight, "held-1")
    small = orjson.dumps(observations(eid, 0, 1))
    held = HeldRequest(tight.url, orjson.dumps(observations(eid, 100, 20)))  # ~2 KB in flight
    with tight.device() as device:
        big = orjson.dumps(observations(eid, 200, 30))  # ~3 KB: past the byte bound
        r = device.post("/api/v1/ingest", content=big, headers={"Content-Type": "application/json"})
        body = problem(r, 503, "ServiceUnavailable")
        assert r.headers["Retry-After"] == "1" and body["retryAfter"] == 1
        assert "body bytes" in body["detail"]
        second = HeldRequest(tight.url, small)  # now two requests are in flight
        for path, content in (
            ("/api/v1/ingest", small),
            (f"{NGSI}/entityOperations/upsert", orjson.dumps([light("held-2")])),
        ):
            r = device.post(path, content=content, headers={"Content-Type": "application/json"})
            assert "write requests" in problem(r, 503, "ServiceUnavailable")["detail"]
        with tight.client() as reader:  # reads are not bounded
            assert reader.get(f"{NGSI}/entities/{eid}").status_code == 200
        assert held.finish() == 200 and second.finish() == 200
        r = device.post("/api/v1/ingest", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
    # exactly what was answered 200 is stored: 20 + 1 + 30, nothing of the 503s
    assert readings_of(tight, eid) == sorted([*range(100, 120), 0, *range(200, 230)])


def test_concurrent_clients_get_200_or_503_and_every_retried_batch_is_stored(tight: Server):
    eid = new_light(tight, "busy-1")
    batches = [orjson.dumps(observations(eid, 10 * i, 10)) for i in range(48)]

    def send(body: bytes) -> list[int]:
        statuses = []
        with httpx.Client(base_url=tight.url, headers={"X-Device-Key": DEVICE_KEY}) as c:
            while True:
                r = c.post(
                    "/api/v1/ingest", content=body, headers={"Content-Type": "application/json"}
                )
                statuses.append(r.status_code)
                if r.status_code != 503:
                    return statuses
                assert r.headers["Retry-After"] == "1"
                assert r.json()["type"].endswith("/ServiceUnavailable")
                time.sleep(0.02)  # a polite client backs off (Retry-After is 1 s)

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(send, batches))
    assert {s for statuses in outcomes for s in statuses} <= {200, 503}
    assert all(statuses[-1] == 200 for statuses in outcomes)
    assert readings_of(tight, eid) == list(range(480))
