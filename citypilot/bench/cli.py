"""``citypilot bench ingest`` and ``citypilot bench query``: measured against a running server.

Each prints its figures and a same-run baseline, and the ratio between them.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from citypilot.bench.loadclient import Connection, run_requests
from citypilot.bench.server import server_process
from citypilot.bench.temporal import ATTR, seed_history, temporal_paths
from citypilot.config import Settings

console = Console()
CENTRE = (5.04, 47.32)
#: The NGSI-LD tenant ``bench query`` reads the same streetlights in.
BENCH_TENANT = "bench"
ADMIN, ADMIN_PASSWORD, DEVICE_KEY = "bench", "bench-password", "cpd_bench_device_key"


def add_bench_commands(sub: Any) -> None:
    """Register ``bench ingest`` and ``bench query`` on the CLI."""
    bench = sub.add_parser("bench", help="measure speed").add_subparsers(
        dest="bench", required=True
    )
    p = bench.add_parser("ingest", help="HTTP batch ingest vs raw SQLite executemany")
    p.add_argument("--entities", type=int, default=10_000)
    p.add_argument("--observations", type=int, default=400_000)
    p.add_argument("--batch", type=int, default=5_000)
    p.add_argument("--connections", type=int, default=2)
    p.set_defaults(func=bench_ingest)
    p = bench.add_parser("query", help="GET by id and type+bbox queries over many entities")
    p.add_argument("--entities", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--queries", type=int, default=2_000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--temporal-entities", type=int, default=1000)
    p.add_argument("--temporal-days", type=int, default=30)
    p.add_argument("--temporal-every", type=int, default=900, help="seconds between readings")
    p.add_argument("--temporal-requests", type=int, default=500)
    p.set_defaults(func=bench_query)
    from citypilot.bench.city import add_city_bench
    from citypilot.bench.console import add_console_bench

    add_city_bench(bench)
    add_console_bench(bench)
    from citypilot.bench.backpressure import add_backpressure_bench

    add_backpressure_bench(bench)
    from citypilot.bench.commands import add_commands_bench

    add_commands_bench(bench)
    from citypilot.bench.jsonld import add_jsonld_bench

    add_jsonld_bench(bench)
    from citypilot.bench.modes import add_modes_bench

    add_modes_bench(bench)

    from citypilot.bench.scale import add_scale_bench

    add_scale_bench(bench)
    from citypilot.bench.soak import add_soak_bench

    add_soak_bench(bench)

    from citypilot.bench.notify import add_notify_bench

    add_notify_bench(bench)
    from citypilot.bench.dispatch import add_dispatch_bench

    add_dispatch_bench(bench)

    from citypilot.bench.gtfs_rt import add_gtfs_rt_bench

    add_gtfs_rt_bench(bench)

    from citypilot.bench.rules import add_rules_bench

    add_rules_bench(bench)

    from citypilot.bench.alarms import add_alarms_bench

    add_alarms_bench(bench)

    from citypilot.bench.login import add_login_bench

    add_login_bench(bench)


def _streetlight(i: int, lon: float, lat: float) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Streetlight:b{i:07d}",
        "type": "Streetlight",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "powerState": {"type": "Property", "value": "off"},
        "status": {"type": "Property", "value": "ok"},
    }


async def _seed(data_dir: Path, n: int) -> None:
    """Create ``n`` streetlights, an admin and a device key in a fresh SQLite store."""
    from citypilot.store.sqlite import SQLiteStore

    store = SQLiteStore(data_dir / "city.db")
    await store.open()
    await seed_store(store, n)
    await store.close()


async def seed_store(store: Any, n: int) -> None:
    """Create ``n`` streetlights, an admin and a device key in an open store."""
    from citypilot.broker import Broker
    from citypilot.bus.memory import MemoryBus
    from citypilot.model.builtin_types import BUILTIN_TYPES
    from citypilot.model.types import TypeRegistry
    from citypilot.security.provision import add_logins

    rng = np.random.default_rng(1)
    lons = CENTRE[0] + rng.uniform(-0.15, 0.15, n)
    lats = CENTRE[1] + rng.uniform(-0.1, 0.1, n)
    broker = Broker(TypeRegistry(BUILTIN_TYPES), store, MemoryBus())
    for start in range(0, n, 5000):
        docs = [
            _streetlight(i, float(lons[i]), float(lats[i]))
            for i in range(start, min(n, start + 5000))
        ]
        await broker.batch_upsert(docs)
    await add_logins(store, [(ADMIN, ADMIN_PASSWORD, "admin")], [("bench", DEVICE_KEY)])


def _copy_into_tenant(data_dir: Path, tenant: str) -> None:
    """Give ``tenant`` a copy of the city's store (the same entities, a database of its own)."""
    from citypilot.store.files import private_dir

    target = private_dir(data_dir / "tenants" / tenant)
    for name in ("city.db", "city.db-wal"):
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, target / name)


def _ingest_bodies(n_entities: int, total: int, batch: int) -> list[bytes]:
    base = time.time() - 86400
    bodies = []
    for start in range(0, total, batch):
        items = []
        for k in range(start, min(total, start + batch)):
            items.append(
                {
                    "id": f"urn:ngsi-ld:Streetlight:b{k % n_entities:07d}",
                    "type": "Streetlight",
                    "observedAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + k / 10))
                    + "Z",
                    "attrs": {
                        "powerConsumption": 20.0 + (k % 100) / 4,
                        "powerState": "on" if k % 3 else "low",
                    },
                }
            )
        bodies.append(orjson.dumps(items))
    return bodies


async def _post_all(url: str, bodies: list[bytes], connections: int) -> tuple[float, int]:
    host, port = url.removeprefix("http://").split(":")
    queue = list(reversed(bodies))
    accepted = 0

    async def worker() -> None:
        nonlocal accepted
        conn = Connection(host, int(port), {"X-Device-Key": DEVICE_KEY})
        await conn.open()
        while queue:
            status, body = await conn.request("POST", "/api/v1/ingest", queue.pop())
            if status != 200:
                raise RuntimeError(f"ingest answered {status}: {body[:300]!r}")
            accepted += orjson.loads(body)["accepted"]
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - start, accepted


def _raw_sqlite_baseline(path: Path, bodies: list[bytes], n_entities: int) -> float:
    """Seconds to executemany the same history rows into a bare SQLite table, batch by batch."""
    rows_per_batch = []
    for body in bodies:
        rows = []
        for item in orjson.loads(body):
            eid = int(item["id"].rsplit("b", 1)[1])
            for name, value in item["attrs"].items():
                num = value if isinstance(value, float) else None
                rows.append((eid, name, 0.0, num, None if num is not None else f'"{value}"'))
        rows_per_batch.append(rows)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE history (eid INTEGER, name TEXT, observed_at REAL, num REAL, value TEXT)"
    )
    start = time.perf_counter()
    for rows in rows_per_batch:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def bench_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """End-to-end HTTP batch ingest against a raw SQLite executemany of the same rows."""
    with tempfile.TemporaryDirectory(prefix="citypilot-bench-") as tmp:
        data = Path(tmp) / "data"
        console.print(f"Seeding {args.entities:,} streetlights …")
        asyncio.run(_seed(data, args.entities))
        bodies = _ingest_bodies(args.entities, args.observations, args.batch)
        readings = 2 * args.observations
        with server_process(data) as url:
            console.print(
                f"Posting {args.observations:,} observations in batches of "
                f"{args.batch:,} over {args.connections} connections …"
            )
            elapsed, accepted = asyncio.run(_post_all(url, bodies, args.connections))
        if accepted != args.observations:
            console.print(f"[red]only {accepted} of {args.observations} accepted[/]")
            return 1
        baseline = _raw_sqlite_baseline(Path(tmp) / "raw.db", bodies, args.entities)
    ours, raw = args.observations / elapsed, args.observations / baseline
    table = Table(title="bench ingest")
    for col in ("path", "observations/s", "readings/s", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(
        "CityPilot HTTP ingest (end to end)",
        f"{ours:,.0f}",
        f"{readings / elapsed:,.0f}",
        f"{elapsed:.2f}",
    )
    table.add_row(
        "baseline: raw SQLite executemany",
        f"{raw:,.0f}",
        f"{readings / baseline:,.0f}",
        f"{baseline:.2f}",
    )
    console.print(table)
    console.print(f"ratio CityPilot / raw SQLite: [bold]{ours / raw:.3f}[/] (1/{raw / ours:.1f})")
    return 0


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def bench_query(args: argparse.Namespace, settings: Settings) -> int:
    """GET by id and type+bbox queries against a raw SQLite primary-key lookup baseline."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="citypilot-bench-") as tmp:
        data = Path(tmp) / "data"
        console.print(f"Seeding {args.entities:,} streetlights …")
        asyncio.run(_seed(data, args.entities))
        days, temporal_n = args.temporal_days, min(args.temporal_entities, args.entities)
        console.print(
            f"Writing {days} days of history for {temporal_n:,} of them "
            f"(a reading every {args.temporal_every} s) …"
        )
        history_rows = asyncio.run(seed_history(data, temporal_n, days, args.temporal_every))
        _copy_into_tenant(data, BENCH_TENANT)
        temporal = temporal_paths(temporal_n, days, args.temporal_requests, 20)
        rng = np.random.default_rng(2)
        id_paths = [
            f"/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:b{int(i):07d}"
            for i in rng.integers(0, args.entities, args.requests)
        ]
        boxes = []
        for _ in range(args.queries):
            lon = CENTRE[0] + rng.uniform(-0.14, 0.14)
            lat = CENTRE[1] + rng.uniform(-0.09, 0.09)
            boxes.append(
                f"/ngsi-ld/v1/entities?type=Streetlight&bbox={lon:.5f},{lat:.5f},"
                f"{lon + 0.01:.5f},{lat + 0.007:.5f}&limit=100"
            )
        with server_process(data) as url:
            token = httpx.post(
                url + "/api/v1/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD}
            ).json()["access_token"]
            host, port = url.removeprefix("http://").split(":")
            auth = {"Authorization": f"Bearer {token}"}
            el_id, lat_id, fail_id = asyncio.run(
                run_requests(host, int(port), auth, id_paths, args.connections)
            )
            el_box, lat_box, fail_box = asyncio.run(run_requests(host, int(port), auth, boxes, 1))
            # the same, read with a user @context (kept on the server, named by Link)
            ld = {**auth, **_user_context(url, auth)}
            lamp_boxes = [b.replace("type=Streetlight", "type=Lamp") for b in boxes]
            with_ld = (
                asyncio.run(run_requests(host, int(port), ld, id_paths, args.connections)),
                asyncio.run(run_requests(host, int(port), ld, lamp_boxes, 1)),
            )
            in_tenant = asyncio.run(
                run_requests(
                    host,
                    int(port),
                    {**auth, "NGSILD-Tenant": BENCH_TENANT},
                    id_paths,
                    args.connections,
                )
            )
            ceiling = ["/api/v1/health"] * args.requests
            el_ceil, lat_ceil, _ = asyncio.run(
                run_requests(host, int(port), auth, ceiling, args.connections)
            )
            sample = httpx.get(url + boxes[0], headers=auth).json()
            timed = {
                label: asyncio.run(run_requests(host, int(port), auth, paths, 1))
                for label, paths in temporal.items()
            }
            one = httpx.get(url + temporal["one entity"][0], headers=auth).json()
            hours = len(one[ATTR]["avg"])
        raw = _raw_lookup_baseline(data / "city.db", args.requests, args.entities)
    table = Table(title=f"bench query ({args.entities:,} entities)")
    for col in ("query", "requests/s", "p50 ms", "p95 ms", "errors"):
        table.add_column(col, justify="right")
    table.add_row(
        f"GET by id ({args.connections} connections)",
        f"{args.requests / el_id:,.0f}",
        f"{_pct(lat_id, 50):.2f}",
        f"{_pct(lat_id, 95):.2f}",
        str(fail_id),
    )
    table.add_row(
        "type + bbox (~1 km², limit 100, 1 connection)",
        f"{args.queries / el_box:,.0f}",
        f"{_pct(lat_box, 50):.2f}",
        f"{_pct(lat_box, 95):.2f}",
        str(fail_box),
    )
    for label, n, (elapsed, lat, failed) in zip(
        (
            "GET by id, user @context (Link header)",
            "type + bbox, user @context (type=Lamp)",
            "GET by id in a tenant (NGSILD-Tenant, its own database)",
        ),
        (args.requests, args.queries, args.requests),
        (*with_ld, in_tenant),
        strict=True,
    ):
        table.add_row(
            label,
            f"{n / elapsed:,.0f}",
            f"{_pct(lat, 50):.2f}",
            f"{_pct(lat, 95):.2f}",
            str(failed),
        )
    table.add_row(
        "baseline: GET /api/v1/health (the HTTP stack alone)",
        f"{args.requests / el_ceil:,.0f}",
        f"{_pct(lat_ceil, 50):.2f}",
        f"{_pct(lat_ceil, 95):.2f}",
        "",
    )
    table.add_row("baseline: raw SQLite SELECT by primary key", f"{raw:,.0f}", "", "", "")
    labels = {
        "one entity": f"temporal: hourly avg, {days} days, 1 entity (1 connection)",
        "page of 20 entities": f"temporal: hourly avg, {days} days, page of 20 (1 connection)",
        "baseline": "baseline: /api/v1/history bucket=1h agg=avg, same rows",
    }
    for key, (elapsed, lat, failed) in timed.items():
        table.add_row(
            labels[key],
            f"{len(lat) / elapsed:,.0f}",
            f"{_pct(lat, 50):.2f}",
            f"{_pct(lat, 95):.2f}",
            str(failed),
        )
    console.print(table)
    console.print(
        f"(temporal: {history_rows:,} history rows over {temporal_n:,} entities; "
        f"one entity's answer holds {hours} hourly averages)"
    )
    console.print(f"(a sample bbox query returned {len(sample)} entities)")
    console.print(
        f"ratio GET by id / HTTP stack alone: [bold]{el_ceil / el_id:.2f}[/]; "
        f"GET by id / raw SQLite lookup: {args.requests / el_id / raw:.4f}"
    )
    console.print(
        f"ratio with a user @context / without: GET by id {el_id / with_ld[0][0]:.2f}, "
        f"type + bbox {el_box / with_ld[1][0]:.2f}"
    )
    failed = fail_id + fail_box + sum(t[2] for t in (*timed.values(), *with_ld))
    return 0 if failed == 0 else 1


def _user_context(url: str, auth: dict[str, str]) -> dict[str, str]:
    """Keep a user @context (its own words for streetlights and their power) on the
    server; the Link header naming it."""
    import httpx

    from citypilot.model.ldcontext import DEFAULT_VOCAB, link_header

    words = {"Lamp": DEFAULT_VOCAB + "Streetlight", "watts": DEFAULT_VOCAB + "powerConsumption"}
    r = httpx.post(url + "/ngsi-ld/v1/jsonldContexts", json={"@context": words}, headers=auth)
    r.raise_for_status()
    return {"Link": link_header(r.headers["location"])}


def _raw_lookup_baseline(path: Path, n: int, entities: int) -> float:
    """Lookups/s of one attribute row by primary key, straight from SQLite."""
    conn = sqlite3.connect(path)
    rng = np.random.default_rng(3)
    eids = [int(e) for e in rng.integers(1, entities + 1, n)]
    start = time.perf_counter()
    for eid in eids:
        conn.execute("SELECT name, value FROM attrs WHERE eid = ?", (eid,)).fetchall()
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed if elapsed else float("inf")
