"""``citypilot demo``: the generated metropole, the server and the live simulator, one process.

The first run generates the city from its seed, loads it into the embedded store,
writes its map layers and GTFS feed into the data directory and creates a demo
login and a device key for the simulator; while the city runs live, the last day of
its devices' reports is played into history in the background, so charts and figures
mean something from the first minute. Later runs resume the same city and its
history. The simulator is a client like any device gateway: it posts to the
server's own ingest API over loopback, and its devices obey commands handed to them
directly (``twin/command_channel.py``): a command is confirmed by their next report.
``--scenario flood`` (or ``fire``, or a TOML file) adds a crisis timed from the start
of the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from citypilot.config import Settings
from citypilot.store.files import private_dir

console = Console(stderr=True)
DEMO_USER, DEMO_PASSWORD = "demo", "demo-operator"
DEMO_FILE = "demo.json"
_DEMO_FILES = (
    "city.db",
    "city.db-wal",
    "city.db-shm",
    "audit.db",
    "audit.db-wal",
    "audit.db-shm",
    "notify.db",
    "notify.db-wal",
    "notify.db-shm",
    DEMO_FILE,
    "layers",
    "gtfs",
    "graph",
)


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
    from citypilot.security.scopes import Grant
    from citypilot.security.tokens import new_device_key
    from citypilot.store.factory import opened_store

    key = new_device_key()
    async with opened_store(settings) as store:
        await add_logins(store, [(DEMO_USER, DEMO_PASSWORD, "operator")], [("demo-simulator", key)])
        # the demo control room sees the whole metropole, police data included
        account = await store.get_account(DEMO_USER)
        account.grants = (Grant("operator"), Grant("operator", department="police"))
        await store.put_account(account)
    return key


def prepare_city(
    settings: Settings, seed: int, scale: float, fresh: bool, history_hours: int = 24
) -> dict[str, Any]:
    """Generate and load the demo city on first run (or with ``fresh``); return its record.

    ``history_hours`` of the recent past are played into history once the server runs.
    """
    from citypilot.twin import generate_city, write_gtfs, write_layers
    from citypilot.twin.commands import load_city
    from citypilot.twin.export import write_graph

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
        if not (data / "graph" / "edges.csv").exists():  # a city made before the graph was
            write_graph(generate_city(seed, scale), data / "graph")
        if not (data / "gtfs" / "calendar_dates.txt").exists():  # made before stations were
            write_gtfs(generate_city(seed, scale), data / "gtfs")
        return record
    private_dir(data)
    with console.status(f"Generating the city (seed {seed}, scale {scale}) …"):
        city = generate_city(seed, scale)
        write_layers(city, data / "layers")
        write_gtfs(city, data / "gtfs")
        write_graph(city, data / "graph")
    asyncio.run(load_city(settings, city))
    key = asyncio.run(_create_logins(settings))
    record = {
        "seed": seed,
        "scale": scale,
        "entities": len(city.entities),
        "deviceKey": key,
        "historyHours": history_hours,
        "historyPlayed": False,
        "city": city.metadata(),
    }
    _save_record(settings, record)
    return record


def _follow_detours(app: Any, sim: Any) -> None:
    """Drive the simulated trams and buses along the detours and short turns in force,
    and along every later one, back on their routes when the closure ends."""
    from citypilot.api.incidents import ops_for

    def reroute(route_id: str, direction: int, detour: Any) -> None:
        path = None
        if detour is not None and detour.kind != "suspended":
            path = (detour.nodes, detour.edges, detour.stop_ids)
        sim.reroute(route_id, direction, path)

    app.state.detour_listeners = [reroute]
    book = ops_for(app).detours
    for detour in book.detours() if book is not None else []:
        reroute(detour.line.route_id, detour.line.direction_id, detour)


def _save_record(settings: Settings, record: dict[str, Any]) -> None:
    fd = os.open(settings.data_path / DEMO_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))


async def _play_history(
    settings: Settings, record: dict[str, Any], url: str, city: Any, events: list[Any]
) -> None:
    """Fill the last ``record["historyHours"]`` hours of history once, showing progress."""
    from citypilot.twin import HttpIngestClient
    from citypilot.twin.backfill import play_recent_history

    hours = int(record.get("historyHours", 0))
    if record.get("historyPlayed") or hours <= 0:
        return

    def progress(done: int, total: int, sent: int) -> None:
        if done % 4 == 0 or done == total:
            console.print(f"History: {done} of the last {total} h played ({sent:,} reports)")

    console.print(f"Playing the city's last {hours} h into its history, in the background …")
    async with HttpIngestClient(url, record["deviceKey"]) as sink:
        sent = await play_recent_history(
            sink, city, record["seed"], hours=hours, events=events, progress=progress
        )
    record["historyPlayed"] = True
    _save_record(settings, record)
    console.print(f"History ready: {sent:,} reports of the last {hours} h.")


async def run_demo(
    settings: Settings, record: dict[str, Any], speed: float, scenario: Any = None
) -> None:
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

    # the built-in rule pack watches the demo city (docs/rules.md#the-built-in-rule-pack)
    app = create_app(settings.model_copy(update={"rule_pack": True}))
    server = _signal_free_server(settings, app)
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
    events = scenario.resolve(city, time.time()) if scenario is not None else []
    if scenario is not None:
        console.print(f"Scenario [bold]{scenario.name}[/]: {scenario.description}")
    sim = Simulator(city, record["seed"], replay_start(speed, 10.0), speed)
    for event in events:
        sim.inject(event)
    # commands reach the simulated devices directly; their reports still come by ingest
    from citypilot.twin.command_channel import SimulatorChannel
    from citypilot.twin.director import ScenarioDirector

    app.state.city.commands.channels.insert(1, SimulatorChannel(sim))
    app.state.unit_drivers = [sim.drive_unit]  # a dispatched unit drives its route
    _follow_detours(app, sim)  # trams and buses take the detours closures call for

    async def simulate() -> None:
        async with HttpIngestClient(url, record["deviceKey"]) as sink:
            await run_simulation(sim, sink, stop_event=stop)

    async def simulate_and_fill() -> None:
        history = asyncio.create_task(_play_history(settings, record, url, city, events))
        await simulate()
        history.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await history

    simulation = asyncio.create_task(simulate_and_fill())
    director = ScenarioDirector(
        url, record["deviceKey"], (DEMO_USER, DEMO_PASSWORD), speed=speed, say=_say
    )
    directing = asyncio.create_task(director.run(sim.citizen_reports, time.time, stop))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, serving}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(simulation, 15)
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(directing, 5)
    await director.aclose()
    server.should_exit = True
    await serving


def _say(text: str) -> None:
    console.print(f"[yellow]{text}[/]")


def _signal_free_server(settings: Settings, app: Any) -> Any:
    """A uvicorn server that leaves SIGINT/SIGTERM to the demo, which stops it cleanly."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    from citypilot.security.redact import logging_config

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level),
        access_log=False,
    )
    return Server(config)


def demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the demo city: generate or resume it, serve it, simulate it."""
    if settings.store != "sqlite":
        console.print("[yellow]The demo runs on the configured PostgreSQL store.[/]")
    console.print(f"Data directory: [bold]{settings.data_path}[/]")
    from citypilot.twin.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario) if args.scenario else None
    except ScenarioError as exc:
        raise SystemExit(f"--scenario: {exc}") from None
    if args.history_hours < 0 or args.history_hours > 24 * 7:
        raise SystemExit("--history-hours must lie between 0 and 168")
    record = prepare_city(settings, args.seed, args.scale, args.fresh, args.history_hours)
    asyncio.run(run_demo(settings, record, args.speed, scenario))
    console.print("Demo stopped; `citypilot demo` resumes it.")
    return 0


def add_demo_command(sub: Any) -> None:
    """Register ``citypilot demo`` on the CLI."""
    from citypilot.twin.commands import add_city_options
    from citypilot.twin.scenario import shipped_scenarios

    p = sub.add_parser("demo", help="generate (or resume) the demo city, serve and simulate it")
    add_city_options(p)
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--fresh", action="store_true", help="replace the city and its history")
    p.add_argument(
        "--scenario",
        help=f"a crisis timed from the start: {', '.join(shipped_scenarios())} or a TOML file",
    )
    p.add_argument(
        "--history-hours",
        type=int,
        default=24,
        help="hours of the recent past played into history on the first run (default 24)",
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=demo)
