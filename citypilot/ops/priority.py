"""Emergency-vehicle priority along a dispatched unit's route (after NTCIP 1211).

The signals on the route (TrafficSignal entities within ``SIGNAL_RADIUS_M`` of a
route junction) are found in the order the unit reaches them, each with the
unit's ETA there and the approach it comes from. Each receives a
``requestPriority`` command ``lead_s`` seconds before the unit arrives — by its
ETA, or sooner when the unit's own reported position along its route shows it nearer
(an emergency vehicle often beats the routing's estimate) — and a ``cancelPriority``
once that position shows it past, or, for a unit that never comes,
``PASS_TIMEOUT_S`` after its ETA (without a position to follow: its ETA plus a
margin). Every command goes through the command service, so each is
acknowledged and on the incident's timeline.

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
#: A followed unit that has not passed a signal this long after its ETA there: the
#: request is cancelled anyway (timed out).
PASS_TIMEOUT_S = 120.0
#: How often a followed unit's position is read, and how far from its route it may be
#: and still count as driving it.
POLL_S = 1.0
ON_ROUTE_M = 60.0
#: The fastest a followed unit is taken to gain on its route: seconds of the route's own
#: travel time per second (an emergency vehicle beats the routing's speeds, not threefold),
#: and the route time it may be ahead at its first reading (parked off its first street).
MAX_PACE = 3.0
PACE_SLACK_S = 10.0
#: How far beyond a junction, in the route's seconds, a unit must be to have passed it.
PASSED_S = 2.0
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
    sx, sy = to_metric(
        np.fromiter((s[1] for s in signals), float, len(signals)),
        np.fromiter((s[2] for s in signals), float, len(signals)),
    )
    # only the signals within the route's bounding box can be near one of its junctions
    box = np.nonzero(
        (sx >= nx.min() - radius_m)
        & (sx <= nx.max() + radius_m)
        & (sy >= ny.min() - radius_m)
        & (sy <= ny.max() + radius_m)
    )[0]
    # junction × signal: whether the signal controls it (the start is behind the unit)
    near = (nx[1:, None] - sx[box]) ** 2 + (ny[1:, None] - sy[box]) ** 2 <= radius_m**2
    found = near.any(axis=0)
    first = near.argmax(axis=0) + 1  # each signal's first junction on the route
    cumulative = np.concatenate([[0.0], np.cumsum(route.arc_seconds)])
    stops = sorted((int(first[j]), signals[box[j]][0], int(box[j])) for j in np.nonzero(found)[0])
    out = []
    for order, (k, _, j) in enumerate(stops):
        signal_id, _, _, cycle = signals[j]
        dx = float(nx[k] - nx[k - 1])
        dy = float(ny[k] - ny[k - 1])
        out.append(
            SignalStop(
                signal_id,
                order,
                int(nodes[k]),
                float(cumulative[k]),
                approach_from(dx, dy),
                float(cycle or DEFAULT_CYCLE_S),
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
#: progress() -> how far along its route the unit has got, in the route's own seconds
#: (``SignalStop.eta_s`` is on the same scale; ``inf`` once arrived; None while unknown)
Progress = Callable[[], Awaitable[float | None]]
#: locate() -> the unit's latest reported (lon, lat), or None
Locate = Callable[[], Awaitable[tuple[float, float] | None]]


def route_progress(
    network: RoadNetwork,
    route: Route,
    locate: Locate,
    clock: Callable[[], float] = time.monotonic,
) -> Progress:
    """Follow a unit along its route from its reported positions: its position projected
    on the route, as the route's travel time to there (never going back; off the route
    by more than ``ON_ROUTE_M``, no progress).

    A route can pass the same place twice (round a block of one-way streets), and a unit
    parked mid-block may lie nearer a later part of its route than its first street: so
    only the parts it can have reached count — at most ``MAX_PACE`` seconds of route per
    second since the first reading, plus ``PACE_SLACK_S`` — and of those the nearest."""
    nodes = np.asarray(route.nodes)
    xs, ys = network.x[nodes], network.y[nodes]
    dx, dy = np.diff(xs), np.diff(ys)
    squared = np.maximum(dx**2 + dy**2, 1e-9)
    arc_s = np.asarray(route.arc_seconds, dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(arc_s)])
    furthest = [0.0]
    started: list[float] = []

    async def progress() -> float | None:
        where = await locate()
        if where is None:
            return None
        if len(nodes) < 2:
            return math.inf
        if not started:
            started.append(clock())
        reach = PACE_SLACK_S + MAX_PACE * (clock() - started[0])
        x, y = to_metric(*where)
        t = np.clip(((x - xs[:-1]) * dx + (y - ys[:-1]) * dy) / squared, 0.0, 1.0)
        d2 = (xs[:-1] + t * dx - x) ** 2 + (ys[:-1] + t * dy - y) ** 2
        d2[cumulative[:-1] > reach] = math.inf  # parts of the route it cannot be on yet
        i = int(np.argmin(d2))
        if float(d2[i]) <= ON_ROUTE_M**2:
            at = min(float(cumulative[i] + t[i] * arc_s[i]), reach)
            furthest[0] = max(furthest[0], at)
        return math.inf if furthest[0] >= cumulative[-1] - 0.5 else furthest[0]

    return progress


@dataclass
class PriorityRun:
    """The requests and cancels for one unit's drive: each request ``lead_s`` before the
    unit reaches the signal — by its ETA, or earlier when ``progress`` shows it nearer —
    and each cancel once ``progress`` shows it past (on a clock without ``progress``)."""

    unit: str
    stops: list[SignalStop]
    submit: Submit
    record: Record
    lead_s: float = DEFAULT_LEAD_S
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    progress: Progress | None = None
    poll_s: float = POLL_S

    def _cancel_due(self, stop: SignalStop) -> float:
        margin = PASS_TIMEOUT_S if self.progress is not None else PASS_MARGIN_S
        return stop.eta_s + margin

    async def run(self) -> None:
        """Issue every request ahead of the unit and every cancel once it has passed."""
        start = self.clock()
        to_request = sorted(self.stops, key=lambda s: (s.eta_s, s.order))
        issued: dict[str, str] = {}  # signal → its request's command id
        waiting: list[SignalStop] = []  # requested, not cancelled yet
        while to_request or waiting:
            along = await self.progress() if self.progress is not None else None
            now = self.clock() - start
            ahead = max(now, along if along is not None else 0.0)  # the route time reached
            while to_request and to_request[0].eta_s - self.lead_s <= ahead:
                stop = to_request.pop(0)
                if along is not None and along >= stop.eta_s + PASSED_S:
                    await self.record("priority skipped", f"{stop.signal}: passed already", "")
                elif await self._request(stop, stop.eta_s - ahead, issued):
                    waiting.append(stop)
            for stop in list(waiting):
                passed = along is not None and along >= stop.eta_s + PASSED_S
                if passed or now >= self._cancel_due(stop):
                    waiting.remove(stop)
                    why = "passed" if passed or self.progress is None else "timed out"
                    await self._cancel(stop, issued[stop.signal], why)
            nexts = [to_request[0].eta_s - self.lead_s] if to_request else []
            nexts += [self._cancel_due(s) for s in waiting]
            if self.progress is not None:  # the unit may come early, or pass
                nexts.append(now + self.poll_s)
            if nexts:
                wait = min(nexts) - (self.clock() - start)
                if wait > 0:
                    await self.sleep(wait)

    async def _request(self, stop: SignalStop, eta: float, issued: dict[str, str]) -> bool:
        eta = max(0.0, eta)
        args = {
            "approach": stop.approach,
            "vehicle": self.unit,
            "class": "emergency",
            "eta_s": round(min(eta, 600.0), 1),
            "duration_s": round(min(MAX_HOLD_S, PASS_MARGIN_S * 2), 1),
        }
        try:
            command_id = await self.submit(
                stop.signal, "requestPriority", args, f"emergency vehicle {self.unit}"
            )
        except Exception as exc:  # a refused command is on the timeline, the run goes on
            await self.record("priority request refused", f"{stop.signal}: {exc}", "")
            return False
        issued[stop.signal] = command_id
        await self.record(
            "priority requested",
            f"{stop.signal} (#{stop.order + 1}) from the {stop.approach}, ETA {eta:.0f} s",
            command_id,
        )
        return True

    async def _cancel(self, stop: SignalStop, request_id: str, why: str) -> None:
        reason = f"{self.unit} has passed" if why == "passed" else f"{self.unit} did not come"
        try:
            command_id = await self.submit(
                stop.signal, "cancelPriority", {"request": request_id}, reason
            )
        except Exception as exc:
            await self.record("priority cancel refused", f"{stop.signal}: {exc}", "")
            return
        await self.record("priority cancelled", f"{stop.signal} {why}", command_id)


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
