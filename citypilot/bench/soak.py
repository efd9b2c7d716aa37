"""``citypilot bench soak``: many devices at one message a minute, for a long time, through
NATS JetStream into PostgreSQL; the writers' memory and the consumer lag over time.

Each of ``--devices`` simulated sensors reports once a minute, spread evenly over the
minute (device ``i`` in second ``i mod 60``): a million devices is 16,667 readings a
second. As in ``bench scale``, the bench process plays the ingest tier: every second
it publishes that second's readings as the messages ingest puts on the observation
stream (2,000 readings each), on schedule whatever the writers do, while
``--writers`` ``citypilot worker writer`` processes write them into PostgreSQL
through their shared durable consumer.

Sampled while it runs: the consumer lag, as the age of the oldest message the writers
have not acknowledged yet (JetStream's ack floor against the time each message was
sent), every ``--sample`` seconds; the resident memory (RSS) of each writer process,
every 5 s. The table gives both per window of time, then whether memory stayed flat
(the RSS of the last 30 s within 10 % or 32 MB of the RSS once every device had
reported once, after the first minute) and the lag under 2 s.
Uses ``nats_url`` and ``postgres_dsn``, with a subject prefix and a database of its own
(both removed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rich.console import Console
from rich.table import Table

from citypilot.bench.scale import TYPE, drop_streams, start_workers
from citypilot.config import Settings
from citypilot.model.observation import Reading

console = Console()
#: Lag the soak must stay under, and how much the writers' memory may grow.
LAG_LIMIT_S = 2.0
RSS_GROWTH = (0.10, 32.0)  # fraction, MB
RSS_EVERY_S = 5.0
#: Every device has reported once after the first minute; memory is compared from then
#: on, over spans of 30 s.
WARM_UP_S, SPAN_S = 60.0, 30.0
#: How long the writers may take to catch up once publishing has ended.
DRAIN_S = 120.0
#: Publishes awaiting their PubAck at once.
WINDOW = 16


def add_soak_bench(bench: Any) -> None:
    """Register ``bench soak``."""
    p = bench.add_parser(
        "soak", help="devices at one message a minute for minutes: memory and consumer lag"
    )
    p.add_argument("--devices", type=int, default=1_000_000)
    p.add_argument("--minutes", type=float, default=10.0, help="how long to publish")
    p.add_argument("--writers", type=int, default=2)
    p.add_argument("--sample", type=float, default=0.5, help="seconds between lag samples")
    p.add_argument("--windows", type=int, default=10, help="rows of the table (windows of the run)")
    p.set_defaults(func=bench_soak)


@dataclass
class Samples:
    """What the soak measured, each as (seconds since the start, value)."""

    lag: list[tuple[float, float]] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # MB, all writers
    published: list[tuple[float, int]] = field(default_factory=list)  # readings per second
    late: float = 0.0  # the longest the publisher fell behind its schedule, s
    ended: float = 0.0  # when the last message was published
    drained: bool = True  # whether the writers caught up within DRAIN_S after that


async def seed_devices(dsn: str, devices: int) -> None:
    """Create the devices' entities in the PostgreSQL store at ``dsn``, as entities of the
    bench's type without attributes (their readings come in the soak): two writes of
    20,000 at a time."""
    from citypilot.model.entity import Entity
    from citypilot.store.postgres import PostgresStore

    store = PostgresStore(dsn)
    await store.open()
    now = time.time()
    starts = list(range(0, devices, 20_000))

    async def lane() -> None:
        while starts:
            start = starts.pop()
            entities = [
                Entity(f"urn:ngsi-ld:{TYPE}:b{i:07d}", TYPE)
                for i in range(start, min(devices, start + 20_000))
            ]
            await store.create_entities(entities, now)

    try:
        await asyncio.gather(lane(), lane())
    finally:
        await store.close()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _second_messages(devices: int, second: int, observed_at: float) -> list[bytes]:
    """The messages of one second: the devices whose turn it is, 2,000 readings each."""
    from citypilot.workers.queue import MESSAGE_READINGS, encode

    slot = second % 60
    value = float(second % 200)
    text = str(value)
    ids = [f"urn:ngsi-ld:{TYPE}:b{i:07d}" for i in range(slot, devices, 60)]
    return [
        encode(
            [
                Reading(eid, "no2", "Property", text, value, observed_at, "GQ")
                for eid in ids[start : start + MESSAGE_READINGS]
            ]
        )
        for start in range(0, len(ids), MESSAGE_READINGS)
    ]


async def _publish(
    bus: Any, devices: int, seconds: int, sent_at: dict[int, float], out: Samples, t0: float
) -> None:
    """Publish each second's messages on schedule; note when each stream sequence was sent."""
    subject = f"{bus.prefix}.observations.{TYPE}._"
    wall0 = time.time()
    for second in range(seconds):
        due = t0 + second
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            out.late = max(out.late, -delay)
        messages = _second_messages(devices, second, wall0 + second)
        queue = list(reversed(messages))

        async def lane(queue: list[bytes]) -> None:
            while queue:
                body = queue.pop()
                sent = time.monotonic()
                ack = await bus.js.publish(subject, body, timeout=bus.publish_timeout_s)
                sent_at[ack.seq] = sent

        await asyncio.gather(*(lane(queue) for _ in range(WINDOW)))
        out.published.append((due - t0, len(range(second % 60, devices, 60))))


async def _sample_lag(
    bus: Any, sent_at: dict[int, float], out: Samples, t0: float, every: float, done: asyncio.Event
) -> None:
    """The age of the oldest message not acknowledged by the writers, every ``every`` s."""
    from citypilot.workers.pressure import WRITER_CONSUMER

    stream = bus.stream_name("OBSERVATIONS")
    while True:
        try:
            info = await bus.js.consumer_info(stream, WRITER_CONSUMER, timeout=2.0)
        except Exception as exc:  # a slow answer under load: this sample is lost, say so
            console.print(f"[yellow]lag sample lost: {exc!r}[/]")
            await asyncio.sleep(every)
            continue
        now = time.monotonic()
        oldest = sent_at.get(info.ack_floor.stream_seq + 1)
        out.lag.append((now - t0, now - oldest if oldest is not None else 0.0))
        # acknowledged sequences are no longer needed
        for seq in [s for s in sent_at if s <= info.ack_floor.stream_seq]:
            del sent_at[seq]
        if done.is_set() and oldest is None:
            return
        await asyncio.sleep(every)


async def _sample_rss(pids: list[int], out: Samples, t0: float, done: asyncio.Event) -> None:
    while not done.is_set():
        out.rss.append((time.monotonic() - t0, sum(rss_mb(pid) for pid in pids)))
        await asyncio.sleep(RSS_EVERY_S)


async def _soak(settings: Settings, prefix: str, dsn: str, args: argparse.Namespace) -> Samples:
    from citypilot.bus.nats import NatsBus

    out = Samples()
    with tempfile.TemporaryDirectory() as log_dir:
        procs = start_workers(settings, prefix, dsn, args.writers, Path(log_dir))
        bus = NatsBus(settings.nats_url, prefix)
        try:
            for proc in procs:
                await asyncio.to_thread(proc.wait_for_log, "consumer writer of", 1, 120.0)
            await bus.start()
            sent_at: dict[int, float] = {}
            done = asyncio.Event()
            t0 = time.monotonic()
            pids = [p.popen.pid for p in procs if p.popen is not None]
            samplers = [
                asyncio.create_task(_sample_lag(bus, sent_at, out, t0, args.sample, done)),
                asyncio.create_task(_sample_rss(pids, out, t0, done)),
            ]
            await _publish(bus, args.devices, round(args.minutes * 60), sent_at, out, t0)
            out.ended = time.monotonic() - t0
            done.set()
            try:  # the writers catch up, or the run says they did not
                await asyncio.wait_for(samplers[0], timeout=DRAIN_S)
            except TimeoutError:
                out.drained = False
            await samplers[1]
            for proc in procs:
                if proc.popen is not None and proc.popen.poll() is not None:
                    raise RuntimeError(f"{proc.name} exited: {proc.log()[-2000:]}")
        finally:
            await drop_streams(bus)
            await bus.stop()
            for proc in procs:
                proc.stop()
    return out


def _window_rows(out: Samples, windows: int, duration: float) -> list[list[str]]:
    """One row per window: published rate, lag p50/p99/max, writers' RSS at its end."""
    width = duration / windows
    rows = []
    for w in range(windows):
        lo, hi = w * width, (w + 1) * width
        lags = [v for t, v in out.lag if lo <= t < hi]
        rss = [v for t, v in out.rss if lo <= t < hi]
        sent = sum(n for t, n in out.published if lo <= t < hi)
        if not lags:
            continue
        p50, p99 = np.percentile(lags, [50, 99])
        rows.append(
            [
                f"{lo:.0f}–{hi:.0f} s",
                f"{sent / width:,.0f}",
                f"{p50:.2f}",
                f"{p99:.2f}",
                f"{max(lags):.2f}",
                f"{rss[-1]:.0f}" if rss else "",
            ]
        )
    return rows


def flat_memory(rss: list[tuple[float, float]], duration: float) -> bool | None:
    """Whether the writers' RSS in the last ``SPAN_S`` stayed within ``RSS_GROWTH`` of what
    it was once every device had reported once (after the first minute: whatever a
    device's first reading allocates is in); None for a run too short to tell."""
    if duration < WARM_UP_S + 2 * SPAN_S:
        return None
    warm = [v for t, v in rss if WARM_UP_S <= t < WARM_UP_S + SPAN_S]
    last = [v for t, v in rss if duration - SPAN_S <= t < duration]
    if not warm or not last:
        return None
    growth = max(last) - max(warm)
    return growth <= max(warm) * RSS_GROWTH[0] or growth <= RSS_GROWTH[1]


def bench_soak(args: argparse.Namespace, settings: Settings) -> int:
    """Run the soak and print memory and lag over time, and whether both held."""
    name = f"citypilot_soak_{uuid.uuid4().hex[:8]}"
    dsn = make_conninfo(settings.postgres_dsn, dbname=name)
    admin = make_conninfo(settings.postgres_dsn, dbname="postgres")
    rate = args.devices / 60
    console.print(
        f"bench soak: {args.devices:,} devices at one message a minute ({rate:,.0f}/s) for "
        f"{args.minutes:g} min, {args.writers} writers; database {name}, NATS {settings.nats_url}"
    )
    try:
        started = time.perf_counter()
        asyncio.run(seed_devices(dsn, args.devices))
        console.print(f"seeded {args.devices:,} sensors in {time.perf_counter() - started:.0f} s")
        out = asyncio.run(_soak(settings, f"soak{uuid.uuid4().hex[:8]}", dsn, args))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    duration = args.minutes * 60
    table = Table(title=f"bench soak: {args.devices:,} devices, {args.writers} writers")
    for col in ("time", "readings/s sent", "lag p50 s", "lag p99 s", "lag max s", "writers RSS MB"):
        table.add_column(col, justify="right")
    for row in _window_rows(out, args.windows, duration):
        table.add_row(*row)
    console.print(table)
    lags = [v for _, v in out.lag]
    p50, p99 = np.percentile(lags, [50, 99])
    flat = flat_memory(out.rss, duration)
    drained = (
        f"drained {out.lag[-1][0] - out.ended:.1f} s after the last publish"
        if out.drained
        else f"[red]not drained {DRAIN_S:.0f} s after the last publish[/]"
    )
    console.print(
        f"whole run: lag p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(lags):.2f} s "
        f"({len(lags)} samples); {drained}; "
        f"publisher at most {out.late:.2f} s behind its schedule"
    )
    console.print(
        f"writers' RSS {out.rss[0][1]:.0f} → {out.rss[-1][1]:.0f} MB "
        f"(max {max(v for _, v in out.rss):.0f}): memory flat after the first minute: "
        f"[bold]{ {True: 'yes', False: 'no', None: 'run too short to tell'}[flat] }[/]; "
        f"lag under {LAG_LIMIT_S:g} s: [bold]{'yes' if max(lags) < LAG_LIMIT_S else 'no'}[/]"
    )
    return 0 if flat and max(lags) < LAG_LIMIT_S else 1
