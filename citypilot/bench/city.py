"""``citypilot bench city``: generation time, and the simulator's publish rate into a server.

Baselines measured in the same run: for generation, encoding the same entities as
NDJSON (the least any generator must do to emit them); for the live simulation,
the simulator alone into an in-memory sink (its own ceiling), against which the
rate a running server sustains is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from citypilot.config import Settings

console = Console()


def _generation(scale: float, seed: int) -> tuple[float, float, int, Any]:
    from citypilot.twin import generate_city

    started = time.perf_counter()
    city = generate_city(seed, scale)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    b"\n".join(orjson.dumps(e) for e in city.entities)
    encode = time.perf_counter() - started
    return elapsed, encode, len(city.entities), city


async def _simulator_alone(city: Any, seed: int, sim_seconds: float) -> float:
    """Observations per second the simulator produces into memory (no network)."""
    from citypilot.twin import MemorySink, Simulator, replay_start

    sim = Simulator(city, seed, replay_start(1.0, 0))
    sim.step(sim.now)  # the start-up snapshot is not the steady state
    sink = MemorySink()
    started = time.perf_counter()
    t, produced = sim.now, 0
    end = t + sim_seconds
    while t < end:
        t += 10.0
        batch = sim.step(t)
        await sink.send(batch)
        produced += len(batch)
    return produced / (time.perf_counter() - started)


async def _against_server(city: Any, seed: int, speed: float, seconds: float) -> tuple[float, int]:
    """Accepted observations per second when the simulator drives a real server."""
    from citypilot.bench.cli import DEVICE_KEY, _seed
    from citypilot.bench.server import server_process
    from citypilot.twin import HttpIngestClient, Simulator, replay_start, run_simulation
    from citypilot.twin.commands import load_city

    with tempfile.TemporaryDirectory(prefix="citypilot-bench-city-") as tmp:
        data = Path(tmp)
        await _seed(data, 0)
        await load_city(Settings(data_dir=data), city)
        with server_process(data) as url:
            sim = Simulator(city, seed, replay_start(speed, seconds / 60 + 1), speed)
            sim.step(sim.now)
            async with HttpIngestClient(url, DEVICE_KEY) as sink:
                stats = await run_simulation(sim, sink, duration=seconds)
            return sink.accepted / stats.real_seconds, sink.rejected


def bench_city(args: argparse.Namespace, settings: Settings) -> int:
    """Generation at the given scales, then the simulator into a running server."""
    table = Table(title="bench city: generation")
    for col in ("scale", "entities", "generate s", "baseline: NDJSON encode s", "ratio"):
        table.add_column(col, justify="right")
    cities = {}
    for scale in args.scales:
        elapsed, encode, count, city = _generation(scale, args.seed)
        cities[scale] = city
        table.add_row(
            f"{scale:g}",
            f"{count:,}",
            f"{elapsed:.2f}",
            f"{encode:.2f}",
            f"{elapsed / encode:.1f}×",
        )
    console.print(table)
    city = cities.get(1.0) or next(iter(cities.values()))
    alone = asyncio.run(_simulator_alone(city, args.seed, 3600))
    rate, rejected = asyncio.run(_against_server(city, args.seed, args.speed, args.seconds))
    table = Table(title=f"bench city: live simulation (scale {city.scale:g}, ×{args.speed:g})")
    for col in ("path", "observations/s"):
        table.add_column(col, justify="right")
    table.add_row("simulator → running server (HTTP ingest, accepted)", f"{rate:,.0f}")
    table.add_row("baseline: simulator alone → memory", f"{alone:,.0f}")
    console.print(table)
    console.print(
        f"ratio server-bound / simulator alone: [bold]{rate / alone:.3f}[/]; rejected: {rejected}"
    )
    return 0 if rejected == 0 else 1


def add_city_bench(bench: Any) -> None:
    """Register ``bench city``."""
    p = bench.add_parser("city", help="demo city generation time and simulator publish rate")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--speed",
        type=float,
        default=1000.0,
        help="simulated seconds per real second for the server run",
    )
    p.add_argument("--seconds", type=float, default=30.0, help="real seconds of the server run")
    p.set_defaults(func=bench_city)
