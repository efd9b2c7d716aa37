"""Emergency-vehicle priority along a dispatched unit's route (after NTCIP 1211).

The signals on the route (TrafficSignal entities within ``SIGNAL_RADIUS_M`` of a
route junction) are found in the order the unit reaches them, each with the
unit's ETA there and the approach it comes from. Each receives a
``requestPriority`` command ``lead_s`` seconds before the unit arrives (at once
when it is nearer than that) and a ``cancelPriority`` once the unit has passed
(ETA plus a margin) — the timeout that also ends a request whose unit never
came. Every command goes through the command service, so each is acknowledged
and on the incident's timeline.

The benefit is measured with a simple model: without priority an emergency
vehicle meets each fixed-time signal at a random point of its cycle and waits,
on average, ``(1 - g)² · C / 2`` (red share squared times half the cycle); with
priority it waits nothing. The same route is timed both ways.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from citypilot.ops.roadgraph import RoadNetwork
from citypilot.ops.routing import Route
from citypilot.twin.geo import to_metric

SIGNAL_RADIUS_M = 30.0
DEFAULT_LEAD_S = 30.0
PASS_MARGIN_S = 10.0
DEFAULT_CYCLE_S = 90.0
GREEN_SHARE = 0.45
MAX_HOLD_S = 300.0


@dataclass(frozen=True)
class SignalStop:
    """A signal on the route: when the unit reaches it and from which side."""

    signal: str
    order: int
    node: int
    eta_s: float  # seconds after the dispatch
    approach: str  # north, east, south or west: the side the unit comes from
    cycle_s: float = DEFAULT_CYCLE_S

    def to_json(self) -> dict[str, Any]:
        """The stop as the incident shows it."""
        return {
            "signal": self.signal,
            "order": self.order,
            "etaSeconds": round(self.eta_s, 1),
            "approach": self.approach,
        }


def approach_from(dx: float, dy: float) -> str:
    """The side a vehicle heading (dx, dy) arrives from (heading north: from the south)."""
    if abs(dy) >= abs(dx):
        return "south" if dy > 0 else "north"
    return "west" if dx > 0 else "east"


def signals_on_route(
    network: RoadNetwork,
    route: Route,
    signals: Sequence[tuple[str, float, float, float | None]],
    radius_m: float = SIGNAL_RADIUS_M,
) -> list[SignalStop]:
    """The signals (id, lon, lat, cycle or None) near the route's junctions, in route order."""
    if len(route.nodes) < 2 or not signals:
        return []
    nodes = np.asarray(route.nodes)
    nx, ny = network.x[nodes], network.y[nodes]
    cumulative = np.concatenate([[0.0], np.cumsum(route.arc_seconds)])
    stops = []
    for signal_id, lon, lat, cycle in signals:
        sx, sy = to_metric(lon, lat)
        d2 = (nx - sx) ** 2 + (ny - sy) ** 2
        near = np.nonzero(d2 <= radius_m**2)[0]
        near = near[near > 0]  # the signal at the start is behind the unit already
        if len(near) == 0:
            continue
        k = int(near[0])
        stops.append((k, signal_id, float(cycle or DEFAULT_CYCLE_S)))
    stops.sort()
    out = []
    for order, (k, signal_id, cycle) in enumerate(stops):
        dx = float(nx[k] - nx[k - 1])
        dy = float(ny[k] - ny[k - 1])
        out.append(
            SignalStop(
                signal_id, order, int(nodes[k]), float(cumulative[k]), approach_from(dx, dy), cycle
            )
        )
    return out


def expected_signal_delay_s(cycle_s: float = DEFAULT_CYCLE_S, green: float = GREEN_SHARE) -> float:
    """Mean wait at a fixed-time signal met at a random instant: (1 - g)² · C / 2."""
    return (1.0 - green) ** 2 * cycle_s / 2.0


def priority_benefit(route: Route, stops: Sequence[SignalStop]) -> dict[str, Any]:
    """The same drive timed without and with signal priority, and the time saved."""
    delay = sum(expected_signal_delay_s(s.cycle_s) for s in stops)
    without = route.seconds + delay
    return {
        "signals": len(stops),
        "withoutPrioritySeconds": round(without, 1),
        "withPrioritySeconds": round(route.seconds, 1),
        "savedSeconds": round(delay, 1),
        "savedPercent": round(100.0 * delay / without, 1) if without > 0 else 0.0,
    }


#: submit(signal id, command, args, reason) -> the command's id
Submit = Callable[[str, str, dict[str, Any], str], Awaitable[str]]
#: record(action, detail, command id) on the incident's timeline
Record = Callable[[str, str, str], Awaitable[None]]


@dataclass
class PriorityRun:
    """The requests and cancels for one unit's drive, issued on a clock."""

    unit: str
    stops: list[SignalStop]
    submit: Submit
    record: Record
    lead_s: float = DEFAULT_LEAD_S
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic

    async def run(self) -> None:
        """Issue every request ``lead_s`` before its ETA and every cancel after the pass."""
        start = self.clock()
        events: list[tuple[float, int, str, SignalStop]] = []
        for stop in self.stops:
            events.append((max(0.0, stop.eta_s - self.lead_s), 0, "request", stop))
            events.append((stop.eta_s + PASS_MARGIN_S, 1, "cancel", stop))
        events.sort(key=lambda e: (e[0], e[1], e[3].order))
        issued: dict[str, str] = {}
        for at, _, action, stop in events:
            wait = start + at - self.clock()
            if wait > 0:
                await self.sleep(wait)
            try:
                if action == "request":
                    eta = max(0.0, stop.eta_s - (self.clock() - start))
                    args = {
                        "approach": stop.approach,
                        "vehicle": self.unit,
                        "class": "emergency",
                        "eta_s": round(min(eta, 600.0), 1),
                        "duration_s": round(min(MAX_HOLD_S, PASS_MARGIN_S * 2), 1),
                    }
                    command_id = await self.submit(
                        stop.signal, "requestPriority", args, f"emergency vehicle {self.unit}"
                    )
                    issued[stop.signal] = command_id
                    await self.record(
                        "priority requested",
                        f"{stop.signal} (#{stop.order + 1}) from the {stop.approach}, "
                        f"ETA {eta:.0f} s",
                        command_id,
                    )
                elif stop.signal in issued:
                    command_id = await self.submit(
                        stop.signal,
                        "cancelPriority",
                        {"request": issued[stop.signal]},
                        f"{self.unit} has passed",
                    )
                    await self.record("priority cancelled", f"{stop.signal} passed", command_id)
            except Exception as exc:  # a refused command is on the timeline, the run goes on
                await self.record(f"priority {action} refused", f"{stop.signal}: {exc}", "")


def signal_rows(entities: Sequence[Any]) -> list[tuple[str, float, float, float | None]]:
    """(id, lon, lat, cycle) of TrafficSignal entities located by a Point."""
    out = []
    for e in entities:
        loc = e.attrs.get("location")
        if loc is None or not isinstance(loc.value, dict) or loc.value.get("type") != "Point":
            continue
        cycle = e.attrs.get("cycleTime")
        value = cycle.value if cycle is not None else None
        lon, lat = loc.value["coordinates"][:2]
        ok = isinstance(value, int | float) and math.isfinite(value) and value > 0
        out.append((e.id, float(lon), float(lat), float(value) if ok else None))
    return out
