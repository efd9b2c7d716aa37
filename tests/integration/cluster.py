"""A CityPilot on several processes (API, ingest and writer workers) for tests, and a load
client that records every acknowledgement it got."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import httpx
import orjson
import psycopg

from citypilot.bench.processes import Proc, citypilot_argv, wait_until_serving
from citypilot.bench.server import free_port

DEVICE_KEY = "cpd_cluster_device_key_0123456789"
OPERATOR = ("operator", "operator-password")
TYPE = "AirQualityObserved"
READY = {"ingest": "MQTT ingest subscribed", "writer": "consumer writer of", "engine": "engine"}


@dataclass
class Cluster:
    """The processes of one city sharing a NATS prefix, a database and an MQTT topic root."""

    base: Path
    nats_url: str
    postgres_dsn: str
    mqtt_url: str
    prefix: str
    settings: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    @property
    def topic_root(self) -> str:
        """The MQTT topic root of this city."""
        return self.prefix

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every process of the city runs with."""
        import os

        return {
            **os.environ,
            "CITYPILOT_BUS": "nats",
            "CITYPILOT_NATS_URL": self.nats_url,
            "CITYPILOT_NATS_PREFIX": self.prefix,
            "CITYPILOT_STORE": "postgres",
            "CITYPILOT_POSTGRES_DSN": self.postgres_dsn,
            "CITYPILOT_MQTT_URL": self.mqtt_url,
            "CITYPILOT_MQTT_TOPIC_ROOT": self.topic_root,
            "CITYPILOT_DATA_DIR": str(self.base / "data"),
            "CITYPILOT_JWT_SECRET": "cluster-test-signing-key-0123456789abcdef",
            "CITYPILOT_LOG_LEVEL": "info",
            **self.settings,
            **extra,
        }

    def seed(self) -> None:
        """Create the operator (through the CLI) and the device key (a fixed one, through
        the programmatic path: the CLI generates keys only)."""
        self.add_user(OPERATOR, "operator")
        asyncio.run(self._seed_device_key())

    def add_user(self, login: tuple[str, str], role: str) -> None:
        """Create an account (name, password) with a role, through the CLI."""
        subprocess.run(
            citypilot_argv("users", "add", login[0], "--role", role, "--password-stdin"),
            env=self.env(),
            check=True,
            capture_output=True,
            input=login[1] + "\n",
            text=True,
        )

    async def _seed_device_key(self) -> None:
        from citypilot.config import Settings
        from citypilot.security.provision import add_logins
        from citypilot.store.factory import opened_store

        settings = Settings(store="postgres", postgres_dsn=self.postgres_dsn)
        async with opened_store(settings) as store:
            await add_logins(store, devices=[("gateway", DEVICE_KEY)])

    def api(self, name: str) -> tuple[Proc, str]:
        """Start ``citypilot serve`` on a free port; returns it and its URL once it answers."""
        port = free_port()
        proc = Proc(name, citypilot_argv("serve", "--port", str(port)), self.env(), self.base)
        self.procs.append(proc.start())
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(proc, url)
        return proc, url

    def worker(self, role: str, worker_id: str) -> tuple[Proc, int]:
        """Start a worker; returns it and its metrics port once it is ready."""
        port = free_port()
        argv = citypilot_argv("worker", role, "--id", worker_id, "--metrics-port", str(port))
        proc = Proc(f"{role}-{worker_id}", argv, self.env(), self.base)
        self.procs.append(proc.start())
        proc.wait_for_log(READY[role], timeout=90)
        return proc, port

    def restart_api(self, proc: Proc, url: str) -> None:
        """Start a stopped or killed API process again (same port) and wait until it answers."""
        proc.start()
        wait_until_serving(proc, url)

    def restart(self, proc: Proc, role: str) -> None:
        """Start a stopped or killed process again and wait until it is ready."""
        seen = proc.log().count(READY[role])
        proc.start()
        proc.wait_for_log(READY[role], count=seen + 1, timeout=90)

    def stop(self) -> None:
        """Stop every process of the city."""
        for proc in self.procs:
            proc.stop()


def token(url: str) -> str:
    """A bearer token of the operator."""
    r = httpx.post(
        url + "/api/v1/auth/token", data={"username": OPERATOR[0], "password": OPERATOR[1]}
    )
    r.raise_for_status()
    return r.json()["access_token"]


def create_sensors(url: str, count: int) -> list[str]:
    """Create ``count`` air quality sensors; their ids."""
    ids = [f"urn:ngsi-ld:{TYPE}:s{i}" for i in range(count)]
    docs = [
        {
            "id": eid,
            "type": TYPE,
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2, 48]}},
        }
        for eid in ids
    ]
    r = httpx.post(
        url + "/ngsi-ld/v1/entityOperations/upsert",
        json=docs,
        headers={"Authorization": f"Bearer {token(url)}"},
        timeout=30,
    )
    assert r.status_code in (200, 201, 204), r.text
    return ids


def metric(port_or_url: int | str, name: str) -> float:
    """The sum of a metric's samples (every label) on a process's /metrics."""
    url = port_or_url if isinstance(port_or_url, str) else f"http://127.0.0.1:{port_or_url}"
    text = httpx.get(url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class LoadClient:
    """Devices sending observations over HTTP and MQTT, keeping every one acknowledged.

    Each observation has its own ``observedAt`` (a counter in milliseconds), so an
    acknowledged one is found in history by (entity, instant). It runs in a thread
    with its own event loop until :meth:`stop`.
    """

    def __init__(self, ids: list[str], api_urls: list[str], mqtt_port: int, root: str) -> None:
        self.ids = ids
        self.api_urls = api_urls
        self.mqtt_port = mqtt_port
        self.root = root
        self.t0_ms = int((time.time() - 3600) * 1000)
        self.counter = 0
        self.acked: dict[tuple[str, int], float] = {}  # (entity, instant ms) -> value
        self.refused_http = 0  # 503s and connection errors (not acknowledged, so not owed)
        self.retry_after_seen = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> LoadClient:
        """Start sending."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait for the thread."""
        self._stop.set()
        self._thread.join(30)

    @property
    def count(self) -> int:
        """Observations acknowledged so far."""
        with self._lock:
            return len(self.acked)

    def _next(self) -> tuple[str, int, float]:
        self.counter += 1
        n = self.counter
        return self.ids[n % len(self.ids)], self.t0_ms + n, float(n % 200)

    @staticmethod
    def _stamp(ms: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"

    def _record(self, items: list[tuple[str, int, float]]) -> None:
        with self._lock:
            for eid, ms, value in items:
                self.acked[(eid, ms)] = value

    async def _main(self) -> None:
        await asyncio.gather(self._http_loop(), self._mqtt_loop())

    async def _http_loop(self) -> None:
        async with httpx.AsyncClient(headers={"X-Device-Key": DEVICE_KEY}, timeout=10) as http:
            turn = 0
            while not self._stop.is_set():
                turn += 1
                url = self.api_urls[turn % len(self.api_urls)]
                items = [self._next() for _ in range(20)]
                body = [
                    {"id": e, "type": TYPE, "observedAt": self._stamp(ms), "attrs": {"no2": v}}
                    for e, ms, v in items
                ]
                try:
                    r = await http.post(
                        url + "/api/v1/ingest",
                        content=orjson.dumps(body),
                        headers={"Content-Type": "application/json"},
                    )
                except httpx.HTTPError:
                    self.refused_http += 1
                    await asyncio.sleep(0.1)
                    continue
                if r.status_code == 200:
                    self._record(items)
                else:
                    assert r.status_code == 503, r.text  # never anything else
                    self.refused_http += 1
                    if "retry-after" in r.headers:
                        self.retry_after_seen += 1
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.02)

    async def _mqtt_loop(self) -> None:
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client("127.0.0.1", self.mqtt_port) as client:
                    while not self._stop.is_set():
                        batch = [self._next() for _ in range(10)]
                        for eid, ms, value in batch:
                            local = eid.rsplit(":", 1)[1]
                            payload = orjson.dumps(
                                {"observedAt": self._stamp(ms), "attrs": {"no2": value}}
                            )
                            # returns once the broker sent PUBACK: then the device is done
                            await client.publish(
                                f"{self.root}/{TYPE}/{local}/attrs", payload, qos=1
                            )
                            self._record([(eid, ms, value)])
                        await asyncio.sleep(0.02)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)


def missing_from_store(dsn: str, acked: dict[tuple[str, int], float]) -> tuple[int, int]:
    """(acknowledged observations absent from history, entities whose state is older than
    their newest acknowledged observation)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT k.id, round(h.observed_at * 1000)::bigint FROM history h"
            " JOIN entity_keys k USING (eid) WHERE h.name = 'no2'"
        ).fetchall()
        state = dict(
            conn.execute(
                "SELECT k.id, round(a.observed_at * 1000)::bigint FROM attrs a"
                " JOIN entity_keys k USING (eid) WHERE a.name = 'no2'"
            ).fetchall()
        )
    stored = set(rows)
    newest: dict[str, int] = {}
    for eid, ms in acked:
        newest[eid] = max(ms, newest.get(eid, 0))
    missing = sum(1 for key in acked if key not in stored)
    stale = sum(1 for eid, ms in newest.items() if state.get(eid, 0) < ms)
    return missing, stale
