"""CLI commands of the demo metropole: ``generate``, ``load`` and ``simulate``.

``generate`` writes a city to files; ``load`` puts a generated city into the
configured store (through the broker, like any write); ``simulate`` drives a
running server through its public ingest API or MQTT, like a device gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from citypilot.config import Settings

console = Console(stderr=True)
LOAD_BATCH = 2_000


def add_city_options(parser: argparse.ArgumentParser) -> None:
    """``--seed`` and ``--scale``, shared by every command that builds the city."""
    parser.add_argument("--seed", type=int, default=7, help="same seed, same city (default 7)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="1.0 ≈ 260,000 inhabitants; 0.1 a small town; 4 a million",
    )


def _check_scale(scale: float) -> None:
    if not 0.01 <= scale <= 8:
        raise SystemExit(f"--scale must lie between 0.01 and 8, not {scale}")


def generate(args: argparse.Namespace, settings: Settings) -> int:
    """Write the city: entities (NDJSON), map layers (GeoJSON), the GTFS feed, the graph."""
    from citypilot.twin import generate_city, write_city

    _check_scale(args.scale)
    started = time.perf_counter()
    with console.status(f"Generating the city (seed {args.seed}, scale {args.scale}) …"):
        city = generate_city(args.seed, args.scale)
    generated = time.perf_counter()
    with console.status(f"Writing it to {args.out} …"):
        written = write_city(city, args.out)
    console.print(
        f"{len(city.entities):,} entities generated in {generated - started:.1f} s, "
        f"written in {time.perf_counter() - generated:.1f} s:"
    )
    for name, path in written.items():
        console.print(f"  {name}: {path}")
    return 0


async def load_city(settings: Settings, city: Any) -> None:
    """Upsert every entity of a generated city into the configured store, with progress."""
    from citypilot.api.app import build_registry
    from citypilot.broker import Broker
    from citypilot.bus.memory import MemoryBus
    from citypilot.store.factory import opened_store

    async with opened_store(settings) as store:
        broker = Broker(build_registry(settings), store, MemoryBus())
        await broker.load_registered_types()
        total = len(city.entities)
        with Progress(
            TextColumn("Loading entities"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("load", total=total)
            for start in range(0, total, LOAD_BATCH):
                batch = city.entities[start : start + LOAD_BATCH]
                result = await broker.batch_upsert(batch)
                if result.errors:
                    first = result.errors[0].error
                    raise SystemExit(f"the generated city was refused: {first.detail}")
                progress.advance(task, len(batch))


def load(args: argparse.Namespace, settings: Settings) -> int:
    """Generate the city and load it into the configured store (embedded or PostgreSQL)."""
    from citypilot.twin import generate_city, write_layers

    _check_scale(args.scale)
    with console.status("Generating the city …"):
        city = generate_city(args.seed, args.scale)
    asyncio.run(load_city(settings, city))
    write_layers(city, settings.data_path / "layers")
    console.print(
        f"{len(city.entities):,} entities loaded; map layers in {settings.data_path / 'layers'}"
    )
    return 0


def simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Drive a running server with the live simulation, over HTTP ingest or MQTT."""
    from citypilot.twin import (
        HttpIngestClient,
        MqttPublisher,
        Simulator,
        generate_city,
        load_scenario,
        replay_start,
        run_simulation,
    )

    _check_scale(args.scale)
    key = args.device_key or os.environ.get("CITYPILOT_DEVICE_KEY")
    if args.mqtt is None and not key:
        raise SystemExit(
            "HTTP ingest needs a device key: --device-key or CITYPILOT_DEVICE_KEY "
            "(create one with `citypilot devices add NAME`)"
        )
    city = generate_city(args.seed, args.scale)
    scenario = load_scenario(args.scenario) if args.scenario else None
    start = replay_start(args.speed, args.replay_minutes)
    sim = Simulator(city, args.seed, start, args.speed, scenario=scenario)

    async def run() -> Any:
        sink: Any = (
            MqttPublisher(args.mqtt, topic_root=settings.mqtt_topic_root)
            if args.mqtt
            else HttpIngestClient(args.target, key)
        )
        if not args.mqtt:
            async with sink:
                return await run_simulation(sim, sink, duration=args.duration)
        # over MQTT the simulator is a gateway both ways: its devices obey commands
        from citypilot.twin.command_gateway import MqttCommandGateway

        stop = asyncio.Event()
        gateway = MqttCommandGateway(args.mqtt, sim, topic_root=settings.mqtt_topic_root)
        commands = asyncio.create_task(gateway.run(stop))
        try:
            async with sink:
                return await run_simulation(sim, sink, duration=args.duration)
        finally:
            stop.set()
            await commands

    where = args.mqtt or args.target
    console.print(
        f"Simulating {len(city.entities):,} devices at ×{args.speed} into {where} (Ctrl-C stops)"
    )
    stats = asyncio.run(run())
    console.print(
        f"{stats.published:,} observations in {stats.real_seconds:.0f} s ({stats.rate:,.0f}/s)"
    )
    return 0


def add_twin_commands(sub: Any) -> None:
    """Register ``generate``, ``load`` and ``simulate`` on the CLI."""
    p = sub.add_parser("generate", help="write the demo city to files (no server)")
    add_city_options(p)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=generate)

    p = sub.add_parser("load", help="generate the demo city and load it into the store")
    add_city_options(p)
    p.set_defaults(func=load)

    p = sub.add_parser("simulate", help="drive a running server with live device data")
    add_city_options(p)
    p.add_argument("--target", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument("--mqtt", help="publish to this MQTT broker instead (mqtt://host:port)")
    p.add_argument("--device-key", help="ingest key (or CITYPILOT_DEVICE_KEY)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument(
        "--replay-minutes",
        type=float,
        default=10.0,
        help="with --speed > 1, start this many real minutes in the past",
    )
    p.add_argument("--duration", type=float, help="stop after this many real seconds")
    p.add_argument("--scenario", type=Path, help="scripted events (TOML)")
    p.set_defaults(func=simulate)
