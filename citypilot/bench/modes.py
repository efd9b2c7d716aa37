"""``citypilot bench modes``: the health-emergency mode over hundreds of badge readers.

A demo city large enough for the mode to select ``--count`` badge readers at public
buildings (each gets ``allowGroups`` and ``disable``), the simulated readers obeying
in-process as in ``citypilot demo``. Timed from the call to enter the mode until the
readers' own reports confirmed every command of it; then the same for leaving (every
reader restored). The same-run baseline is ``bench commands``' embedded path: the
same number of bare ``disable`` commands submitted straight to the command service.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from citypilot.bench.commands import ACCESS_POINTS_PER_SCALE, BOUND_S, run_devices
from citypilot.bench.commands import _run as bare_commands
from citypilot.config import Settings

console = Console()
MODE = "health-emergency"
LOADED_TYPES = ("AccessPoint", "Building", "Municipality")


def add_modes_bench(bench: Any) -> None:
    """Register ``bench modes``."""
    p = bench.add_parser("modes", help="enter and leave health-emergency over N badge readers")
    p.add_argument("--count", type=int, default=600, help="badge readers the mode commands")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=bench_modes)


def _public_readers(city: Any) -> list[str]:
    from citypilot.engine.mode_model import load_modes
    from citypilot.model.builtin_types import BUILTIN_TYPES
    from citypilot.model.types import TypeRegistry

    step = load_modes(TypeRegistry(BUILTIN_TYPES))[MODE].steps[0]
    assert step.select is not None and step.select.via is not None
    wanted = step.select.via.q_text or ""
    public = {b["id"] for b in city.of_type("Building") if f'"{b["category"]["value"]}"' in wanted}
    return [d["id"] for d in city.of_type("AccessPoint") if d["refBuilding"]["object"] in public]


def _city_for(count: int, seed: int) -> Any:
    """The smallest demo city whose public buildings have ``count`` badge readers."""
    from citypilot.twin import generate_city

    scale = max(0.05, count / ACCESS_POINTS_PER_SCALE)
    while True:
        city = generate_city(seed, scale)
        if len(_public_readers(city)) >= count or scale >= 8:
            return city
        scale = min(8.0, scale * 1.2)


class _Confirmations:
    """Counts the mode's commands confirmed, from the bus."""

    def __init__(self) -> None:
        self.confirmed: set[str] = set()
        self.ended: dict[str, str] = {}
        self.target = -1
        self.done = asyncio.Event()

    def follow(self, subject: str, payload: dict[str, Any]) -> None:
        for cmd in payload["commands"]:
            if cmd["requestedBy"] != f"mode:{MODE}":
                continue
            if cmd["state"] == "confirmed":
                self.confirmed.add(cmd["id"])
            elif cmd["state"] not in ("pending", "sent", "acknowledged"):
                self.ended[cmd["id"]] = cmd["state"]
        self.check()

    def check(self) -> None:
        if 0 <= self.target <= len(self.confirmed) + len(self.ended):
            self.done.set()

    def expect(self, total: int) -> None:
        self.target = total
        self.check()

    def reset(self) -> None:
        self.confirmed.clear()
        self.ended.clear()
        self.target = -1
        self.done.clear()


async def _run(city: Any, data: Path) -> dict[str, Any]:
    """Seconds to enter (call, all confirmed) and to leave (call, all restored)."""
    from citypilot.api.app import running_city
    from citypilot.twin import Simulator
    from citypilot.twin.command_channel import SimulatorChannel

    settings = Settings(data_dir=data, log_level="warning")
    async with running_city(settings) as running:
        broker, modes = running.broker, running.modes
        docs = [d for d in city.entities if d["type"] in LOADED_TYPES]
        for k in range(0, len(docs), 2000):
            await broker.batch_upsert(docs[k : k + 2000])
        sim = Simulator(city, city.seed, time.time() - 2, types=("AccessPoint",))
        running.commands.channels.insert(1, SimulatorChannel(sim))
        stop = asyncio.Event()

        async def send(batch: list[dict[str, Any]]) -> None:
            await broker.ingest(batch, "simulator")

        devices = asyncio.create_task(run_devices(sim, send, stop))
        await asyncio.sleep(0.5)  # the readers' start-up snapshot goes in first
        seen = _Confirmations()
        unlisten = broker.bus.listen("commands.changed", seen.follow)
        out: dict[str, Any] = {}
        started = time.perf_counter()
        on = await modes.enter(MODE, None, "bench", "bench")
        out["enter_call_s"] = time.perf_counter() - started
        seen.expect(on["progress"]["total"])
        await asyncio.wait_for(seen.done.wait(), BOUND_S)
        out["enter_s"] = time.perf_counter() - started
        out["commands"], out["failed"] = on["progress"]["total"], dict(seen.ended)
        out["readers"] = on["steps"][0]["targets"]
        seen.reset()
        started = time.perf_counter()
        left = await modes.leave(MODE, "bench over", "bench")
        out["leave_call_s"] = time.perf_counter() - started
        seen.expect(left["restore"]["progress"]["total"])
        await asyncio.wait_for(seen.done.wait(), BOUND_S)
        out["leave_s"] = time.perf_counter() - started
        out["restores"], out["restore_failed"] = (
            left["restore"]["progress"]["total"],
            dict(seen.ended),
        )
        unlisten()
        stop.set()
        await devices
    return out


def bench_modes(args: argparse.Namespace, settings: Settings) -> int:
    """Enter and leave health-emergency over ``--count`` badge readers, against bare commands."""
    with console.status("Generating a city with enough public badge readers …"):
        city = _city_for(args.count, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        mode = asyncio.run(_run(city, Path(tmp) / "mode"))
        readers = mode["readers"]
        base = asyncio.run(bare_commands(city, readers, Path(tmp) / "bare", None))
    table = Table(title=f"{MODE} over {readers} badge readers (scale {city.scale:.2f})")
    for column in ("", "commands", "call returns (s)", "all confirmed (s)", "commands/s"):
        table.add_column(column, justify="right" if column else "left")
    rows = [
        ("enter", mode["commands"], mode["enter_call_s"], mode["enter_s"]),
        ("leave (restore)", mode["restores"], mode["leave_call_s"], mode["leave_s"]),
        ("baseline: bare disable", readers, base["submit_s"], base["all_confirmed_s"]),
    ]
    for name, n, call, total in rows:
        table.add_row(name, f"{n:,}", f"{call:.2f}", f"{total:.2f}", f"{n / total:,.0f}")
    console.print(table)
    for what, failed in (("entering", mode["failed"]), ("leaving", mode["restore_failed"])):
        if failed:
            console.print(f"[red]{len(failed)} commands not confirmed {what}: {failed}[/]")
    ratio = mode["enter_s"] / base["all_confirmed_s"]
    console.print(
        f"entering commands {mode['commands']:,} devices' properties in {ratio:.1f}× the time "
        f"of {readers} bare commands"
    )
    met = mode["enter_s"] < 5.0 and not mode["failed"]
    console.print(
        f"target: all {readers} readers confirmed in < 5 s: {'met' if met else 'NOT met'}"
    )
    return 0
