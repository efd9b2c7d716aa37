"""``citypilot bench gtfs-rt``: the three GTFS-Realtime feeds built for the whole fleet.

The demo city at each scale runs its trams and buses through a weekday morning peak
(the simulator, transit only); from the fleet's state the VehiclePositions,
TripUpdates and Alerts feeds are built and serialised to protobuf, as the server does
for each request. The baseline, in the same run, is the same fleet state written as
plain JSON with orjson (what a bare map read of the vehicles costs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from citypilot.config import Settings

console = Console()
PEAK = "2025-11-20T08:10:00+01:00"  # a Thursday morning


def _one_scale(scale: float, seed: int, repeats: int) -> dict[str, Any]:
    from citypilot.publish.fleet import fleet_from_observations
    from citypilot.publish.gtfs_rt import FeedBuilder, ServiceAlert
    from citypilot.publish.gtfs_static import StaticFeed
    from citypilot.twin import Simulator, generate_city, write_gtfs

    city = generate_city(seed, scale)
    start = datetime.fromisoformat(PEAK)
    sim = Simulator(city, seed, start, types=("Tram", "Bus"))
    fleet = fleet_from_observations(sim.run_until(start + timedelta(minutes=2), step_s=10))
    with tempfile.TemporaryDirectory() as tmp:
        write_gtfs(city, Path(tmp))
        builder = FeedBuilder(StaticFeed(Path(tmp)).index())
    now = (start + timedelta(minutes=2)).timestamp()
    alerts = [
        ServiceAlert(
            f"bench-{r.route_id}",
            "DETOUR",
            "CONSTRUCTION",
            "Déviation",
            "Rue fermée",
            (r.route_id,),
            start=now,
            end=now + 3600,
        )
        for r in city.transit.routes[:2]
    ]
    plain = [v.__dict__ for v in fleet]
    timings: dict[str, list[float]] = {"json": [], "vehicles": [], "trips": [], "alerts": []}
    sizes: dict[str, int] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        body = orjson.dumps(plain)
        t1 = time.perf_counter()
        placed = builder.place(fleet, now)
        vp = builder.vehicle_positions(placed, now).SerializeToString()
        t2 = time.perf_counter()
        placed = builder.place(fleet, now)
        tu = builder.trip_updates(placed, now).SerializeToString()
        t3 = time.perf_counter()
        al = builder.alerts(alerts, now).SerializeToString()
        t4 = time.perf_counter()
        for name, dt in (
            ("json", t1 - t0),
            ("vehicles", t2 - t1),
            ("trips", t3 - t2),
            ("alerts", t4 - t3),
        ):
            timings[name].append(dt)
        sizes = {"json": len(body), "vehicles": len(vp), "trips": len(tu), "alerts": len(al)}
    return {
        "scale": scale,
        "fleet": len(fleet),
        "in_service": len(placed),
        "timings": timings,
        "sizes": sizes,
    }


def bench_gtfs_rt(args: argparse.Namespace, settings: Settings) -> int:
    """Measure the three feeds at each scale against plain JSON of the same fleet."""
    table = Table(title="citypilot bench gtfs-rt (milliseconds per build, median)")
    for col in (
        "scale",
        "vehicles / on a trip",
        "plain JSON",
        "VehiclePositions",
        "TripUpdates",
        "Alerts",
        "all three",
        "ratio to JSON",
        "bytes VP / TU",
    ):
        table.add_column(col, justify="right")
    for scale in args.scales:
        r = _one_scale(scale, args.seed, args.repeats)
        med = {k: 1000 * statistics.median(v) for k, v in r["timings"].items()}
        total = med["vehicles"] + med["trips"] + med["alerts"]
        table.add_row(
            f"{scale:g}",
            f"{r['fleet']} / {r['in_service']}",
            f"{med['json']:.2f}",
            f"{med['vehicles']:.2f}",
            f"{med['trips']:.2f}",
            f"{med['alerts']:.3f}",
            f"{total:.2f}",
            f"{total / med['json']:.1f}×",
            f"{r['sizes']['vehicles']:,} / {r['sizes']['trips']:,}",
        )
    console.print(table)
    return 0


def add_gtfs_rt_bench(bench: Any) -> None:
    """Register ``bench gtfs-rt``."""
    p = bench.add_parser("gtfs-rt", help="GTFS-Realtime feeds for the whole fleet vs plain JSON")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeats", type=int, default=30)
    p.set_defaults(func=bench_gtfs_rt)
