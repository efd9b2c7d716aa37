"""``citypilot bench notify``: changes posted by a device gateway, notified through an
NGSI-LD subscription to a local HTTP receiver (in a process of its own), against bare
HTTP POSTs of the same notification bodies to the same receiver, in the same run.

Each reading carries its batch number as its value, so the receiver tells, for every
entity notified, how long after its change was stored (the ingest answer) it arrived.
``--engine embedded worker`` runs a round with the notifier in the API process and one
with it in ``citypilot worker engine`` (``bench/worker_city.py``); ``--rate`` paces the
gateway, so latency is measured at a given throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
ENGINES = ("embedded", "worker")


def add_notify_bench(bench: Any) -> None:
    """Register ``bench notify``."""
    p = bench.add_parser("notify", help="subscription notifications to a local HTTP receiver")
    p.add_argument("--entities", type=int, default=10_000)
    p.add_argument("--changes", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=500, help="observations per ingest request")
    p.add_argument("--connections", type=int, default=2, help="ingest connections")
    p.add_argument("--subscriptions", type=int, default=1, help="each notified of every change")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="changes/s offered by the gateway (paced batches); 0: as fast as ingest answers",
    )
    p.add_argument(
        "--engine",
        nargs="+",
        choices=ENGINES,
        default=["embedded"],
        help="where the notifier runs, one round each: in the API process (SQLite), or in "
        "`citypilot worker engine` (NATS on a free port, PostgreSQL of postgres_dsn)",
    )
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


async def _ingest(
    url: str, key: str, bodies: list[bytes], connections: int, every_s: float = 0.0
) -> list[float]:
    """POST every batch, batch ``i`` not before ``i * every_s`` after the start (0: as
    fast as the server answers); returns when each was stored (answered)."""
    stored = [0.0] * len(bodies)
    queue = list(reversed(range(len(bodies))))
    async with httpx.AsyncClient(base_url=url, headers={"X-Device-Key": key}) as client:
        start = time.monotonic()

        async def worker() -> None:
            while queue:
                i = queue.pop()
                await asyncio.sleep(start + i * every_s - time.monotonic())
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


def _finals(n_entities: int, changes: int, batch: int) -> dict[str, float]:
    """Each entity changed: the value of its last change (its last batch's number)."""
    return {
        f"urn:ngsi-ld:Streetlight:b{k % n_entities:07d}": float(k // batch) for k in range(changes)
    }


def _dump(url: str) -> list[tuple[float, bytes]]:
    """Every notification the receiver holds: (arrival, body)."""
    dump = httpx.get(url + "/_dump", timeout=60).content
    return [(at, body.encode()) for at, body in (orjson.loads(line) for line in dump.splitlines())]


def _has_finals(arrivals: list[tuple[float, bytes]], finals: dict[str, float], subs: int) -> bool:
    """Whether every entity's last change was notified to each subscription."""
    seen: dict[tuple[str, float], int] = {}
    for _, body in arrivals:
        for entity in orjson.loads(body)["data"]:
            key = (entity["id"], entity["powerConsumption"])
            seen[key] = seen.get(key, 0) + 1
    return all(seen.get(item, 0) >= subs for item in finals.items())


def _wait_for_entities(
    url: str, total: int, finals: dict[str, float], subs: int, timeout: float
) -> list[tuple[float, bytes]]:
    """Wait until the receiver holds ``total`` notified entities, or (changes of one
    entity merged into one notification: a writer's batch is one change per entity)
    until nothing more came for a second and every entity's last change was notified;
    return what arrived."""
    deadline = time.monotonic() + timeout
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        marks = httpx.get(url + "/_count", params={"mark": '"powerConsumption"'}).json()["marks"]
        if marks >= total:
            break
        if marks != last:
            last, quiet_since = marks, time.monotonic()
        elif time.monotonic() - quiet_since > 1.0 and _has_finals(_dump(url), finals, subs):
            break
        time.sleep(0.05)
    return _dump(url)


@dataclass
class Round:
    """What one round measured."""

    engine: str
    complete: bool  # every entity's last change notified to every subscription
    notified: int
    posts: int
    elapsed_s: float
    ingest_s: float
    latencies_ms: np.ndarray
    bare_s: float


@contextlib.contextmanager
def _city(engine: str, settings: Settings, base: Path, entities: int) -> Iterator[str]:
    """A seeded city whose notifier runs as ``engine`` says; yields the API's URL."""
    if engine == "worker":
        from citypilot.bench.worker_city import worker_city

        with worker_city(settings, base, entities) as url:
            yield url
        return
    from citypilot.bench.cli import _seed

    asyncio.run(_seed(base / "data", entities))
    with server_process(base / "data") as url:
        yield url


def _subscribe(url: str, receiver: str, count: int) -> None:
    from citypilot.bench.cli import ADMIN, ADMIN_PASSWORD

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
    for _ in range(count):
        r = httpx.post(
            url + "/ngsi-ld/v1/subscriptions",
            json=sub,
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()


def _round(engine: str, args: argparse.Namespace, settings: Settings, bodies: list[bytes]) -> Round:
    """Seed a city, subscribe, post the changes, collect what the receiver got, then
    POST the same bodies bare to the same receiver."""
    from citypilot.bench.cli import DEVICE_KEY

    with tempfile.TemporaryDirectory(prefix="citypilot-bench-") as tmp:
        console.print(f"({engine}) seeding {args.entities:,} streetlights …")
        with (
            receiver_process() as receiver,
            _city(engine, settings, Path(tmp), args.entities) as url,
        ):
            _subscribe(url, receiver, args.subscriptions)
            console.print(
                f"({engine}) posting {args.changes:,} changes in batches of {args.batch} "
                f"over {args.connections} connections"
                + (f", {args.rate:,.0f} changes/s" if args.rate > 0 else "")
                + " …"
            )
            start = time.time()
            every_s = args.batch / args.rate if args.rate > 0 else 0.0
            stored = asyncio.run(_ingest(url, DEVICE_KEY, bodies, args.connections, every_s))
            finals = _finals(args.entities, args.changes, args.batch)
            total = args.changes * args.subscriptions
            arrivals = _wait_for_entities(receiver, total, finals, args.subscriptions, 300)
            latencies = [
                at - stored[int(entity["powerConsumption"])]
                for at, body in arrivals
                for entity in orjson.loads(body)["data"]
            ]
            bodies_out = [body for _, body in arrivals]
            bare_s = asyncio.run(_bare_posts(receiver + "/notify", bodies_out, 64))
    return Round(
        engine,
        _has_finals(arrivals, finals, args.subscriptions),
        len(latencies),
        len(arrivals),
        max(at for at, _ in arrivals) - start,
        max(stored) - start,
        np.array(latencies) * 1000,
        bare_s,
    )


def bench_notify(args: argparse.Namespace, settings: Settings) -> int:
    """Notifications/s and change-to-delivery latency against bare HTTP POSTs, for each
    place the notifier may run."""
    bodies = _batches(args.entities, args.changes, args.batch)
    rounds = [_round(engine, args, settings, bodies) for engine in args.engine]
    title = (
        f"bench notify ({args.entities:,} entities, {args.subscriptions} subscription(s), "
        f"ingest batches of {args.batch} over {args.connections} connection(s)"
        + (f", {args.rate:,.0f} changes/s offered)" if args.rate > 0 else ")")
    )
    table = Table(title=title)
    for col in ("path", "entities notified/s", "POSTs/s", "p50 ms", "p99 ms", "ratio"):
        table.add_column(col, justify="right")
    for r in rounds:
        table.add_row(
            f"change → notification, notifier {r.engine}",
            f"{r.notified / r.elapsed_s:,.0f}",
            f"{r.posts / r.elapsed_s:,.0f}",
            f"{np.percentile(r.latencies_ms, 50):.1f}",
            f"{np.percentile(r.latencies_ms, 99):.1f}",
            f"{r.bare_s / r.elapsed_s:.3f}",
        )
        table.add_row(
            "  baseline: bare HTTP POST of the same bodies (64 connections)",
            f"{r.notified / r.bare_s:,.0f}",
            f"{r.posts / r.bare_s:,.0f}",
            "",
            "",
            "",
        )
    console.print(table)
    total = args.changes * args.subscriptions
    for r in rounds:
        console.print(
            f"({r.engine}) ingest took {r.ingest_s:.2f} s; the last notification arrived "
            f"{r.elapsed_s:.2f} s after the first change was sent; "
            f"{r.notified:,} of {total:,} changes notified in {r.posts:,} POSTs "
            f"({total - r.notified:,} merged into a later change of their entity); "
            f"{'every' if r.complete else '[red]NOT every[/]'} entity's last change notified"
        )
    console.print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if all(r.complete for r in rounds) else 1
