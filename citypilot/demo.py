"""``citypilot demo``: the generated metropole, the server and the live simulator, one process.

The first run generates the city from its seed, loads it into the embedded store,
writes its map layers and GTFS feed into the data directory and creates a demo
login and a device key for the simulator. Later runs resume the same city and its
history. The simulator is a client like any device gateway: it posts to the
server's own ingest API over loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from citypilot.config import Settings

console = Console(stderr=True)
DEMO_USER, DEMO_PASSWORD = "demo", "demo-operator"
DEMO_FILE = "demo.json"
_DEMO_FILES = ("city.db", "city.db-wal", "city.db-shm", DEMO_FILE, "layers", "gtfs")


def _wipe(data: Path) -> None:
    for name in _DEMO_FILES:
        path = data / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


async def _create_logins(settings: Settings) -> str:
    """The demo operator account and the simulator's device key (returned)."""
    from citypilot.security.provision import add_logins
    from citypilot.security.tokens import new_device_key
    from citypilot.store.factory import opened_store

    key = new_device_key()
    async with opened_store(settings) as store:
        await add_logins(store, [(DEMO_USER, DEMO_PASSWORD, "operator")], [("demo-simulator", key)])
    return key


def prepare_city(settings: Settings, seed: int, scale: float, fresh: bool) -> dict[str, Any]:
    """Generate and load the demo city on first run (or with ``fresh``); return its record."""
    from citypilot.twin import generate_city, write_gtfs, write_layers
    from citypilot.twin.commands import load_city

    data = settings.data_path
    record_path = data / DEMO_FILE
    if fresh:
        _wipe(data)
    if record_path.exists():
        record = orjson.loads(record_path.read_bytes())
        if (record["seed"], record["scale"]) != (seed, scale):
            raise SystemExit(
                f"{data} holds the demo city of seed {record['seed']} and scale "
                f"{record['scale']}; add --fresh to replace it with seed {seed}, scale {scale}"
            )
        console.print(f"Resuming the demo city in {data}")
        return record
    data.mkdir(parents=True, exist_ok=True)
    with console.status(f"Generating the city (seed {seed}, scale {scale}) …"):
        city = generate_city(seed, scale)
        write_layers(city, data / "layers")
        write_gtfs(city, data / "gtfs")
    asyncio.run(load_city(settings, city))
    key = asyncio.run(_create_logins(settings))
    record = {
        "seed": seed,
        "scale": scale,
        "entities": len(city.entities),
        "deviceKey": key,
        "city": city.metadata(),
    }
    fd = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    return record


async def run_demo(settings: Settings, record: dict[str, Any], speed: float) -> None:
    """Serve the API and run the simulator against it until interrupted.

    On Ctrl-C (or SIGTERM) the simulator finishes the batch it is sending, then the
    server shuts down (closing the store cleanly).
    """
    from citypilot.api.app import create_app
    from citypilot.twin import (
        HttpIngestClient,
        Simulator,
        generate_city,
        replay_start,
        run_simulation,
    )

    server = _signal_free_server(settings, create_app(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # raises what stopped the server (e.g. port in use)
            return
        await asyncio.sleep(0.05)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}"
    console.print(
        f"\nConsole: [bold]{url}/[/]   login [bold]{DEMO_USER}[/] / [bold]{DEMO_PASSWORD}[/]"
        f"   API docs: {url}/docs   Ctrl-C stops\n"
    )
    city = generate_city(record["seed"], record["scale"])
    sim = Simulator(city, record["seed"], replay_start(speed, 10.0), speed)

    async def simulate() -> None:
        async with HttpIngestClient(url, record["deviceKey"]) as sink:
            await run_simulation(sim, sink, stop_event=stop)

    simulation = asyncio.create_task(simulate())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, serving}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(simulation, 15)
    server.should_exit = True
    await serving


def _signal_free_server(settings: Settings, app: Any) -> Any:
    """A uvicorn server that leaves SIGINT/SIGTERM to the demo, which stops it cleanly."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False
    )
    return Server(config)


def demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the demo city: generate or resume it, serve it, simulate it."""
    if settings.store != "sqlite":
        console.print("[yellow]The demo runs on the configured PostgreSQL store.[/]")
    console.print(f"Data directory: [bold]{settings.data_path}[/]")
    record = prepare_city(settings, args.seed, args.scale, args.fresh)
    asyncio.run(run_demo(settings, record, args.speed))
    console.print("Demo stopped; `citypilot demo` resumes it.")
    return 0


def add_demo_command(sub: Any) -> None:
    """Register ``citypilot demo`` on the CLI."""
    from citypilot.twin.commands import add_city_options

    p = sub.add_parser("demo", help="generate (or resume) the demo city, serve and simulate it")
    add_city_options(p)
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--fresh", action="store_true", help="replace the city and its history")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=demo)
