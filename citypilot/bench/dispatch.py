"""``citypilot bench dispatch``: the recommendation of 3 units with routes, and its baseline.

For random incidents on the demo city's road graph: the full recommendation (every
unit ranked by road travel time with one reversed Dijkstra, the 3 best with their
route geometry) and the priority plan of those routes (signals in route order),
against a bare igraph single-source shortest-path search measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from citypilot.config import Settings

console = Console()


def _one_scale(scale: float, seed: int, incidents: int) -> dict[str, Any]:
    from citypilot.model.builtin_types import BUILTIN_TYPES
    from citypilot.model.entity import parse_entity
    from citypilot.model.types import TypeRegistry
    from citypilot.ops.dispatch import Dispatcher
    from citypilot.ops.incidents import INCIDENT_TYPE
    from citypilot.ops.priority import signal_rows, signals_on_route
    from citypilot.ops.roadgraph import load_network
    from citypilot.ops.routing import Routing
    from citypilot.twin import generate_city
    from citypilot.twin.export import write_graph

    city = generate_city(seed, scale)
    registry = TypeRegistry(BUILTIN_TYPES)
    with tempfile.TemporaryDirectory() as tmp:
        write_graph(city, Path(tmp))
        routing = Routing(load_network(tmp))
    net = routing.network
    units = [
        parse_entity(doc, registry)
        for doc in city.entities
        if doc["type"] in ("PoliceUnit", "TechnicalVehicle")
    ]
    signals = signal_rows(
        [parse_entity(doc, registry) for doc in city.entities if doc["type"] == "TrafficSignal"]
    )
    rng = random.Random(seed)
    bare, full, plan = [], [], []
    for k in range(incidents):
        node = rng.randrange(net.node_count)
        lon, lat = float(net.lon[node]), float(net.lat[node])
        incident = parse_entity(
            {
                "id": f"urn:ngsi-ld:{INCIDENT_TYPE}:bench-{k}",
                "type": INCIDENT_TYPE,
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [lon, lat]},
                },
            },
            registry,
        )
        started = time.perf_counter()
        routing.times_to(node)
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        chosen = Dispatcher.rank(routing, incident, units, 3)
        full.append(time.perf_counter() - started)
        started = time.perf_counter()
        for c in chosen:
            signals_on_route(net, c.route, signals)
        plan.append(time.perf_counter() - started)
    return {
        "scale": scale,
        "nodes": net.node_count,
        "arcs": len(net.arc_from),
        "units": len(units),
        "signals": len(signals),
        "bare": bare,
        "full": full,
        "plan": plan,
    }


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Measure the recommendation at each scale against a bare shortest-path search."""
    table = Table(title="citypilot bench dispatch (milliseconds per incident)")
    for col in (
        "scale",
        "nodes / arcs",
        "units",
        "bare SSSP p50",
        "recommend 3 p50",
        "p95",
        "ratio p50",
        "priority plan p50",
    ):
        table.add_column(col, justify="right")
    for scale in args.scales:
        r = _one_scale(scale, args.seed, args.incidents)
        bare, full = statistics.median(r["bare"]), statistics.median(r["full"])
        table.add_row(
            f"{scale:g}",
            f"{r['nodes']:,} / {r['arcs']:,}",
            str(r["units"]),
            f"{1000 * bare:.1f}",
            f"{1000 * full:.1f}",
            f"{_ms(r['full'], 0.95):.1f}",
            f"{full / bare:.2f}×",
            f"{1000 * statistics.median(r['plan']):.2f}",
        )
    console.print(table)
    if args.dispatches > 0:
        _priority_table(args)
    return 0


def _priority_table(args: argparse.Namespace) -> None:
    """Dispatch → first priority request, through the API of a running demo."""
    from citypilot.bench.dispatch_priority import measure_priority

    with console.status(f"Starting the demo city at scale {args.priority_scale:g} …"):
        r = measure_priority(args.priority_scale, args.seed, args.dispatches)
    table = Table(
        title=f"dispatch → first requestPriority, through the API of `citypilot demo --scale "
        f"{args.priority_scale:g}` ({len(r['sent'])} dispatches, milliseconds)"
    )
    for col in ("", "p50", "p95", "max", "ratio p50 to bare SSSP"):
        table.add_column(col, justify="right" if col else "left")
    bare = statistics.median(r["bare"]) if r["bare"] else float("nan")
    rows = (
        ("baseline: bare SSSP", r["bare"]),
        ("dispatch call answered", r["answered"]),
        ("first request made (pending)", r["pending"]),
        ("first request sent to the signal", r["sent"]),
    )
    for name, values in rows:
        if not values:
            continue
        table.add_row(
            name,
            f"{_ms(values, 0.5):.1f}",
            f"{_ms(values, 0.95):.1f}",
            f"{1000 * max(values):.1f}",
            f"{statistics.median(values) / bare:.2f}×",
        )
    console.print(table)
    console.print(
        f"{r['tried']} incidents tried, {len(r['sent'])} routes crossing a signal within the "
        f"lead time, {len(r['lost'])} first requests not sent within 10 s, "
        f"{r['skipped']} signals skipped as passed already"
    )
    if r["sent"]:
        met = _ms(r["sent"], 0.95) < 200 and not r["lost"]
        console.print(
            f"target: first request sent < 200 ms after dispatch (p95): "
            f"{'met' if met else 'NOT met'}"
        )


def add_dispatch_bench(bench: Any) -> None:
    """Register ``bench dispatch``."""
    p = bench.add_parser("dispatch", help="unit recommendation by road travel time vs bare SSSP")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--incidents", type=int, default=30)
    p.add_argument(
        "--dispatches",
        type=int,
        default=20,
        help="dispatches timed to their first priority request through a running demo (0: none)",
    )
    p.add_argument("--priority-scale", type=float, default=1.0, help="the demo city's scale")
    p.set_defaults(func=bench_dispatch)
