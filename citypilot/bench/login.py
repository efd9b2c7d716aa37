"""``citypilot bench login``: what logins cost the rest of the server.

A probe asks ``/api/v1/health`` every few milliseconds while logins arrive at a fixed
offered rate (right passwords, so each one hashes; a paced, open-loop load over
several connections). The baseline, measured in the same run, is the probe with no
login at all. Last, an attack row: ``--attackers`` connections sending wrong
passwords flat out, as fast as the server answers (the back-off turns them into
cheap 429s). Printed per row: logins done per second, their median latency, and the
probe's p50 / p95; then the highest rate at which the probe's p95 stays under
``--target-ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from citypilot.bench.loadclient import Connection
from citypilot.bench.server import server_process
from citypilot.config import Settings

console = Console()
FORM = "application/x-www-form-urlencoded"


def add_login_bench(bench: Any) -> None:
    """Register ``bench login``."""
    p = bench.add_parser("login", help="/health latency under a login load")
    p.add_argument(
        "--rates", default="0.5,1,2,4,8", help="offered logins per second, comma-separated"
    )
    p.add_argument("--seconds", type=float, default=8.0, help="length of each step")
    p.add_argument("--attackers", type=int, default=8, help="connections of wrong passwords")
    p.add_argument("--target-ms", type=float, default=10.0, help="the /health p95 to keep")
    p.set_defaults(func=bench_login)


async def _probe(host: str, port: int, until: float, every_s: float = 0.01) -> list[float]:
    """GET /api/v1/health every ``every_s`` until ``until``; the latencies (s)."""
    conn = Connection(host, port, {})
    await conn.open()
    latencies = []
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        status, _ = await conn.request("GET", "/api/v1/health")
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"/health answered {status}")
        await asyncio.sleep(max(0.0, every_s - (time.perf_counter() - t0)))
    await conn.close()
    return latencies


async def _logins(
    host: str, port: int, body: bytes, rate: float, until: float, expect: int
) -> list[float]:
    """Logins at ``rate`` per second (0: none) until ``until``; their latencies (s)."""
    latencies: list[float] = []
    if rate <= 0:
        return latencies
    idle: list[Connection] = []

    async def one() -> None:
        conn = idle.pop() if idle else Connection(host, port, {})
        if conn.reader is None:
            await conn.open()
        t0 = time.perf_counter()
        status, answer = await conn.request("POST", "/api/v1/auth/token", body, FORM)
        latencies.append(time.perf_counter() - t0)
        if status != expect:
            raise RuntimeError(f"login answered {status}: {answer[:200]!r}")
        idle.append(conn)

    tasks = []
    start = time.perf_counter()
    k = 0
    while (due := start + k / rate) < until:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
        k += 1
    await asyncio.gather(*tasks)
    for conn in idle:
        await conn.close()
    return latencies


async def _attack(host: str, port: int, body: bytes, clients: int, until: float) -> list[int]:
    """Wrong passwords flat out over ``clients`` connections; the statuses answered."""
    statuses: list[int] = []

    async def client() -> None:
        conn = Connection(host, port, {})
        await conn.open()
        while time.perf_counter() < until:
            status, _ = await conn.request("POST", "/api/v1/auth/token", body, FORM)
            statuses.append(status)
        await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses


async def _step(url: str, seconds: float, load: Any) -> tuple[list[float], Any, float]:
    """Probe and load together for ``seconds``; the probe's latencies, what the load
    returned, and how long the load took to finish (queued logins included)."""
    host, port = url.removeprefix("http://").split(":")
    start = time.perf_counter()
    until = start + seconds
    probe, result = await asyncio.gather(
        _probe(host, int(port), until), load(host, int(port), until)
    )
    return probe, result, time.perf_counter() - start


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def bench_login(args: argparse.Namespace, settings: Settings) -> int:
    """/health p50/p95 with no login, at each offered login rate, and under attack."""
    from citypilot.bench.cli import ADMIN, ADMIN_PASSWORD, _seed

    good = f"username={ADMIN}&password={ADMIN_PASSWORD}".encode()
    bad = f"username={ADMIN}&password=wrong-guess".encode()
    rates = [float(r) for r in args.rates.split(",")]
    table = Table(title=f"bench login: /health probed every 10 ms, {args.seconds:g} s per row")
    for col in ("load", "logins/s done", "login p50 (ms)", "/health p50 (ms)", "/health p95 (ms)"):
        table.add_column(col, justify="right")
    best = None
    with tempfile.TemporaryDirectory(prefix="citypilot-bench-") as tmp:
        data = Path(tmp) / "data"
        asyncio.run(_seed(data, 100))
        with server_process(data) as url:
            for rate in [0.0, *rates]:
                probe, done, took = asyncio.run(
                    _step(
                        url,
                        args.seconds,
                        lambda h, p, u, r=rate: _logins(h, p, good, r, u, 200),
                    )
                )
                p95 = _ms(probe, 95)
                label = "baseline: no login" if rate == 0 else f"{rate:g} logins/s offered"
                table.add_row(
                    label,
                    f"{len(done) / took:.2f}",
                    f"{_ms(done, 50):.0f}" if done else "-",
                    f"{_ms(probe, 50):.2f}",
                    f"{p95:.2f}",
                )
                if rate > 0 and p95 < args.target_ms:
                    best = max(best or 0.0, len(done) / took)
            probe, statuses, took = asyncio.run(
                _step(url, args.seconds, lambda h, p, u: _attack(h, p, bad, args.attackers, u))
            )
            refused = sum(1 for s in statuses if s == 429)
            table.add_row(
                f"attack: {args.attackers} clients of wrong passwords",
                f"{len(statuses) / took:.0f} ({refused} × 429)",
                "-",
                f"{_ms(probe, 50):.2f}",
                f"{_ms(probe, 95):.2f}",
            )
    console.print(table)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    console.print(
        f"load average {load} on {os.cpu_count()} cores; "
        f"password_hash_slots={settings.password_hash_slots}; highest login rate with "
        f"/health p95 < {args.target_ms:g} ms: [bold]"
        + (f"{best:.2f} logins/s" if best is not None else "none of the rates tried")
        + "[/]"
    )
    return 0
