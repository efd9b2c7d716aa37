"""``citypilot bench scale``: observations/s through NATS JetStream into PostgreSQL, per
number of writer processes, against a raw JetStream publish and a raw PostgreSQL COPY.

The bench process plays the ingest tier: it publishes checked observations (the
messages ingest puts on the stream, 2000 readings each) while N ``citypilot worker
writer`` processes write them into PostgreSQL; a round ends when the writers'
consumer has acknowledged everything. Baselines in the same run: the same
messages published to JetStream with nobody consuming, and the same rows sent by
one binary COPY into a bare table. Uses ``nats_url`` and ``postgres_dsn`` of the
settings, with a subject prefix and a database of its own (dropped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from rich.console import Console
from rich.table import Table

from citypilot.bench.processes import Proc, citypilot_argv
from citypilot.config import Settings
from citypilot.model.observation import Reading

console = Console()
TYPE = "AirQualityObserved"
#: Publishes awaiting their PubAck at once (as several ingest processes would have).
WINDOW = 64


def add_scale_bench(bench: Any) -> None:
    """Register ``bench scale``."""
    p = bench.add_parser("scale", help="NATS JetStream → PostgreSQL with 1, 2, 4 writers")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--observations", type=int, default=400_000)
    p.add_argument("--entities", type=int, default=10_000)
    p.set_defaults(func=bench_scale)


def _messages(n_entities: int, total: int, t0: float) -> list[tuple[str, bytes]]:
    """(subject suffix, body) of the observation messages of one round."""
    from citypilot.workers.queue import MESSAGE_READINGS, encode

    out = []
    for start in range(0, total, MESSAGE_READINGS):
        readings = [
            Reading(
                f"urn:ngsi-ld:{TYPE}:b{k % n_entities:06d}",
                "no2",
                "Property",
                str(float(k % 200)),
                float(k % 200),
                t0 + k / 1000,
                "GQ",
            )
            for k in range(start, min(total, start + MESSAGE_READINGS))
        ]
        out.append((f"{TYPE}.m{(start // MESSAGE_READINGS) % 23}", encode(readings)))
    return out


async def _publish_all(bus: Any, messages: list[tuple[str, bytes]]) -> float:
    """Publish every message with WINDOW in flight; seconds taken."""
    prefix = f"{bus.prefix}.observations"
    queue = list(reversed(messages))

    async def lane() -> None:
        while queue:
            suffix, body = queue.pop()
            await bus.publish_raw(f"{prefix}.{suffix}", body)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(WINDOW)))
    return time.perf_counter() - started


async def seed_sensors(dsn: str, n_entities: int) -> None:
    """Create ``n_entities`` sensors of the bench's type in the PostgreSQL store at ``dsn``."""
    from citypilot.model.builtin_types import BUILTIN_TYPES
    from citypilot.model.entity import parse_entity
    from citypilot.model.types import TypeRegistry
    from citypilot.store.postgres import PostgresStore

    registry = TypeRegistry(BUILTIN_TYPES)
    store = PostgresStore(dsn)
    await store.open()
    now = time.time()
    for start in range(0, n_entities, 5000):
        entities = [
            parse_entity(
                {
                    "id": f"urn:ngsi-ld:{TYPE}:b{i:06d}",
                    "type": TYPE,
                    "location": {
                        "type": "GeoProperty",
                        "value": {"type": "Point", "coordinates": [5.0 + i / 1e5, 47.3]},
                    },
                },
                registry,
            )
            for i in range(start, min(n_entities, start + 5000))
        ]
        await store.upsert_entities(entities, now, True)
    await store.close()


def _raw_copy(dsn: str, messages: list[tuple[str, bytes]]) -> float:
    """Seconds for one binary COPY of the round's rows into a bare table."""
    from citypilot.workers.queue import decode

    rows = [
        (i % 1_000_000, r.name, r.observed_at, r.num, r.value)
        for i, (_, body) in enumerate(messages)
        for r in decode(body)
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_copy (eid bigint, name text,"
            " observed_at double precision, num double precision, value text)"
        )
        conn.execute("TRUNCATE bench_copy")
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy("COPY bench_copy FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(("int8", "text", "float8", "float8", "text"))
            for row in rows:
                copy.write_row(row)
        return time.perf_counter() - started


def start_workers(
    settings: Settings,
    prefix: str,
    dsn: str,
    workers: int,
    log_dir: Path,
    role: str = "writer",
    env: dict[str, str] | None = None,
) -> list[Proc]:
    """Start ``workers`` worker processes of ``role`` on the bus ``prefix`` and the
    database ``dsn`` (with more ``env``), their logs in ``log_dir``."""
    env = {
        **os.environ,
        "CITYPILOT_BUS": "nats",
        "CITYPILOT_NATS_URL": settings.nats_url,
        "CITYPILOT_NATS_PREFIX": prefix,
        "CITYPILOT_STORE": "postgres",
        "CITYPILOT_POSTGRES_DSN": dsn,
        "CITYPILOT_LOG_LEVEL": "info",
        "CITYPILOT_DATA_DIR": str(log_dir),
        **(env or {}),
    }
    return [
        Proc(
            f"{role}-{prefix}-{n}",
            citypilot_argv("worker", role, "--id", f"b{n}", "--metrics-port", "0"),
            env,
            log_dir,
        ).start()
        for n in range(workers)
    ]


async def _round(
    settings: Settings, prefix: str, dsn: str, workers: int, messages: list, log_dir: Path
) -> float:
    """Seconds from the first publish until ``workers`` writers acknowledged everything."""
    from citypilot.bus.nats import NatsBus
    from citypilot.workers.pressure import WRITER_CONSUMER

    procs = start_workers(settings, prefix, dsn, workers, log_dir)
    bus = NatsBus(settings.nats_url, prefix)
    try:
        for proc in procs:
            await asyncio.to_thread(proc.wait_for_log, "consumer writer of")
        await bus.start()
        started = time.perf_counter()
        await _publish_all(bus, messages)
        while (await bus.lag("observations.>", WRITER_CONSUMER)) != 0:
            await asyncio.sleep(0.05)
        return time.perf_counter() - started
    finally:
        await drop_streams(bus)
        await bus.stop()
        for proc in procs:
            proc.stop()


async def drop_streams(bus: Any) -> None:
    """Delete the JetStream streams of the bus's subject prefix."""
    with contextlib.suppress(Exception):
        for info in await bus.js.streams_info():
            if info.config.name.startswith(bus.prefix.upper() + "_"):
                await bus.js.delete_stream(info.config.name)


async def _raw_publish(settings: Settings, messages: list) -> float:
    from citypilot.bus.nats import NatsBus

    bus = NatsBus(settings.nats_url, f"bench{uuid.uuid4().hex[:8]}")
    await bus.start()
    try:
        return await _publish_all(bus, messages)
    finally:
        await drop_streams(bus)
        await bus.stop()


def _rounds(args: argparse.Namespace, settings: Settings, dsn: str) -> list[tuple[str, float, str]]:
    """(path, observations/s, ratio) of both baselines and of each writer count."""
    n = args.observations
    console.print(
        f"bench scale: {n:,} observations (1 reading each), {args.entities:,} sensors, "
        f"database {conninfo_to_dict(dsn).get('host')}/{conninfo_to_dict(dsn).get('dbname')}, "
        f"NATS {settings.nats_url}"
    )
    rows: list[tuple[str, float, str]] = []
    asyncio.run(seed_sensors(dsn, args.entities))
    t0 = time.time() - 7 * 86400
    raw_pub = asyncio.run(_raw_publish(settings, _messages(args.entities, n, t0)))
    raw_copy = _raw_copy(dsn, _messages(args.entities, n, t0))
    rows.append(("raw JetStream publish (no consumer)", n / raw_pub, "baseline"))
    rows.append(("raw PostgreSQL binary COPY (bare table)", n / raw_copy, "baseline"))
    with tempfile.TemporaryDirectory() as log_dir:
        for i, workers in enumerate(args.workers):
            messages = _messages(args.entities, n, t0 + (i + 1) * 86400)
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            seconds = asyncio.run(_round(settings, prefix, dsn, workers, messages, Path(log_dir)))
            rows.append(
                (
                    f"end to end, {workers} writer process{'es' if workers > 1 else ''}",
                    n / seconds,
                    f"1/{seconds / raw_pub:.1f} of publish, 1/{seconds / raw_copy:.1f} of COPY",
                )
            )
    return rows


def bench_scale(args: argparse.Namespace, settings: Settings) -> int:
    """Run the rounds and print observations/s per writer count with both baselines."""
    from citypilot.bench.worker_city import throwaway_database

    with throwaway_database(settings.postgres_dsn) as dsn:
        rows = _rounds(args, settings, dsn)
    table = Table(title=f"bench scale (cores: {os.cpu_count()}, load client included)")
    table.add_column("path")
    table.add_column("observations/s", justify="right")
    table.add_column("ratio")
    for label, rate, ratio in rows:
        table.add_row(label, f"{rate:,.0f}", ratio)
    console.print(table)
    return 0
