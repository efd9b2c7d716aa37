"""``citypilot bench notify``: changes posted by a device gateway, notified through an
NGSI-LD subscription to a local HTTP receiver (in a process of its own), against bare
HTTP POSTs of the same notification bodies to the same receiver, in the same run.

Each reading carries its batch number as its value, so the receiver tells, for every
entity notified, how long after its change was stored (the ingest answer) it arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from citypilot.bench.server import free_port, server_process
from citypilot.config import Settings

console = Console()


def add_notify_bench(bench: Any) -> None:
    """Register ``bench notify``."""
    p = bench.add_parser("notify", help="subscription notifications to a local HTTP receiver")
    p.add_argument("--entities", type=int, default=10_000)
    p.add_argument("--changes", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=500, help="observations per ingest request")
    p.add_argument("--connections", type=int, default=2, help="ingest connections")
    p.add_argument("--subscriptions", type=int, default=1, help="each notified of every change")
    p.set_defaults(func=bench_notify)


def _batches(n_entities: int, changes: int, batch: int) -> list[bytes]:
    start = time.time() - 3600
    bodies = []
    for b, first in enumerate(range(0, changes, batch)):
        items = [
            {
                "id": f"urn:ngsi-ld:Streetlight:b{k % n_entities:07d}",
                "type": "Streetlight",
                "observedAt": _iso(start + k / 1000),
                "attrs": {"powerConsumption": float(b)},
            }
            for k in range(first, min(changes, first + batch))
        ]
        bodies.append(orjson.dumps(items))
    return bodies


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


async def _ingest(url: str, key: str, bodies: list[bytes], connections: int) -> list[float]:
    """POST every batch; returns when each was stored (answered)."""
    stored = [0.0] * len(bodies)
    queue = list(reversed(range(len(bodies))))
    async with httpx.AsyncClient(base_url=url, headers={"X-Device-Key": key}) as client:

        async def worker() -> None:
            while queue:
                i = queue.pop()
                r = await client.post(
                    "/api/v1/ingest",
                    content=bodies[i],
                    headers={"Content-Type": "application/json"},
                )
                stored[i] = time.time()
                if r.status_code != 200:
                    raise RuntimeError(f"ingest answered {r.status_code}: {r.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(connections)))
    return stored


async def _bare_posts(url: str, bodies: list[bytes], connections: int) -> float:
    """Seconds to POST every body to the receiver over pooled keep-alive connections."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits) as client:
        sem = asyncio.Semaphore(connections)

        async def post(body: bytes) -> None:
            async with sem:
                r = await client.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bodies))
        return time.perf_counter() - start


@contextlib.contextmanager
def receiver_process() -> Iterator[str]:
    """A receiver (``bench.receiver``) in a process of its own; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "citypilot.bench.receiver", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url + "/_count", timeout=1)
                break
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for_entities(url: str, total: int, timeout: float) -> list[tuple[float, bytes]]:
    """Wait until the receiver holds ``total`` notified entities; return what arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = httpx.get(url + "/_count", params={"mark": '"powerConsumption"'}).json()
        if count["marks"] >= total:
            break
        time.sleep(0.05)
    dump = httpx.get(url + "/_dump", timeout=60).content
    return [(at, body.encode()) for at, body in (orjson.loads(line) for line in dump.splitlines())]


def bench_notify(args: argparse.Namespace, settings: Settings) -> int:
    """Notifications/s and change-to-delivery latency against bare HTTP POSTs."""
    from citypilot.bench.cli import ADMIN, ADMIN_PASSWORD, DEVICE_KEY, _seed

    bodies = _batches(args.entities, args.changes, args.batch)
    with tempfile.TemporaryDirectory(prefix="citypilot-bench-") as tmp:
        data = Path(tmp) / "data"
        console.print(f"Seeding {args.entities:,} streetlights …")
        asyncio.run(_seed(data, args.entities))
        with receiver_process() as receiver, server_process(data) as url:
            token = httpx.post(
                url + "/api/v1/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD}
            ).json()["access_token"]
            sub = {
                "type": "Subscription",
                "entities": [{"type": "Streetlight"}],
                "watchedAttributes": ["powerConsumption"],
                "notification": {
                    "attributes": ["powerConsumption"],
                    "format": "keyValues",
                    "endpoint": {"uri": receiver + "/notify"},
                },
            }
            for _ in range(args.subscriptions):
                r = httpx.post(
                    url + "/ngsi-ld/v1/subscriptions",
                    json=sub,
                    headers={"Authorization": f"Bearer {token}"},
                )
                r.raise_for_status()
            console.print(
                f"Posting {args.changes:,} changes in batches of {args.batch} "
                f"over {args.connections} connections …"
            )
            start = time.time()
            stored = asyncio.run(_ingest(url, DEVICE_KEY, bodies, args.connections))
            total = args.changes * args.subscriptions
            arrivals = _wait_for_entities(receiver, total, 300)
            elapsed = max(at for at, _ in arrivals) - start
            latencies, notified = [], 0
            for at, body in arrivals:
                for entity in orjson.loads(body)["data"]:
                    latencies.append(at - stored[int(entity["powerConsumption"])])
                    notified += 1
            bodies_out = [body for _, body in arrivals]
            bare_s = asyncio.run(_bare_posts(receiver + "/notify", bodies_out, 64))
    lat = np.array(latencies) * 1000
    title = f"bench notify ({args.entities:,} entities, {args.subscriptions} subscription(s))"
    table = Table(title=title)
    for col in ("path", "entities notified/s", "POSTs/s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    table.add_row(
        f"change → notification (ingest batches of {args.batch})",
        f"{notified / elapsed:,.0f}",
        f"{len(arrivals) / elapsed:,.0f}",
        f"{np.percentile(lat, 50):.1f}",
        f"{np.percentile(lat, 99):.1f}",
    )
    table.add_row(
        "baseline: bare HTTP POST of the same bodies (64 connections)",
        f"{notified / bare_s:,.0f}",
        f"{len(arrivals) / bare_s:,.0f}",
        "",
        "",
    )
    console.print(table)
    console.print(
        f"ingest took {max(stored) - start:.2f} s; the last notification arrived "
        f"{elapsed:.2f} s after the first change was sent"
    )
    console.print(
        f"{notified:,} of {total:,} entity notifications in {len(arrivals):,} POSTs; "
        f"ratio to bare POSTs: {bare_s / elapsed:.3f}"
    )
    return 0 if notified == total else 1
