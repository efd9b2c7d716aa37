"""Transit detours: bus and tram lines that cross a road closure, and what they do instead.

Each direction of each line of the static GTFS is laid back onto the road graph (its
shape's points are graph nodes). When the closures in force change, every line whose
streets they cut is planned again:

* a **bus** leaves its route at the junction before a closed stretch and drives the
  fastest open way (``Routing``) to the junction after it; the stops in between are
  not served (stretches a few segments apart are passed in one detour);
* a **tram** cannot leave its rails: it **short-turns**, serving only the longer part
  of its line on one side of the closure (replacement buses run the rest); a bus with
  no way round does the same;
* a line left with fewer than two stops is **suspended**.

Each plan is published as a service alert (``DETOUR``, ``MODIFIED_SERVICE`` or
``NO_SERVICE``) naming the line and the stops not served, and handed to the
listeners (the simulator drives the vehicles along it). When the closure ends the
line is restored and its alert withdrawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from citypilot.ops.closures import ActiveClosure
from citypilot.ops.roadgraph import RoadNetwork
from citypilot.ops.routing import Routing
from citypilot.publish.gtfs_index import StaticIndex
from citypilot.publish.gtfs_rt import ServiceAlert
from citypilot.twin.geo import to_metric

#: Closed stretches of one line this few segments apart are passed in one detour.
MERGE_GAP = 3
#: A platform stands this near its stop's junction (beside the road).
PLATFORM_REACH_M = 12.0
TRAM_ROUTE_TYPE = 0
EFFECT = {"detour": "DETOUR", "short_turn": "MODIFIED_SERVICE", "suspended": "NO_SERVICE"}


@dataclass(frozen=True)
class Line:
    """One direction of a route, on the road graph."""

    route_id: str
    direction_id: int
    name: str  # route_short_name
    tram: bool
    nodes: tuple[int, ...]
    edges: tuple[int, ...]
    stop_ids: tuple[str, ...]
    stop_pos: tuple[int, ...]  # index in ``nodes`` of each stop


@dataclass(frozen=True)
class Detour:
    """What a line does while closures cut it: the path it drives and the stops it serves."""

    line: Line
    kind: str  # "detour", "short_turn" or "suspended"
    closures: tuple[ActiveClosure, ...]
    nodes: tuple[int, ...]
    edges: tuple[int, ...]
    stop_ids: tuple[str, ...]  # served, in order
    skipped: tuple[str, ...]  # not served
    extra_metres: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        """(route_id, direction_id)."""
        return self.line.route_id, self.line.direction_id


#: Told of each line whose plan changes: (route_id, direction_id, detour or None).
Listener = Callable[[str, int, Detour | None], None]


def transit_lines(index: StaticIndex, network: RoadNetwork) -> list[Line]:
    """Every direction of every route of the static feed, laid onto the road graph."""
    node_at = {
        (round(float(lon), 6), round(float(lat), 6)): k
        for k, (lon, lat) in enumerate(zip(network.lon, network.lat, strict=True))
    }
    arc_edge = {
        (int(a), int(b)): int(e)
        for a, b, e in zip(network.arc_from, network.arc_to, network.arc_edge, strict=True)
    }
    lines: dict[str, Line] = {}
    for trip in index.trips.values():
        if trip.shape_id in lines or trip.shape_id not in index.shapes:
            continue
        nodes = [
            node_at.get((round(lon, 6), round(lat, 6))) or network.nearest_node(lon, lat)[0]
            for lon, lat in index.shapes[trip.shape_id]
        ]
        edges = [arc_edge.get(pair) for pair in pairwise(nodes)]
        if len(nodes) < 2 or None in edges:
            continue  # a shape that is not a drive over the graph
        lines[trip.shape_id] = Line(
            trip.route_id,
            trip.direction_id,
            index.routes.get(trip.route_id, trip.route_id),
            index.route_type.get(trip.route_id) == TRAM_ROUTE_TYPE,
            tuple(nodes),
            tuple(e for e in edges if e is not None),
            trip.stop_ids,
            _stop_positions(index, network, nodes, trip.stop_ids),
        )
    return sorted(lines.values(), key=lambda line: (line.route_id, line.direction_id))


def _stop_positions(
    index: StaticIndex, network: RoadNetwork, nodes: list[int], stop_ids: Sequence[str]
) -> tuple[int, ...]:
    """The node of the path each stop stands at: the first one ahead within
    :data:`PLATFORM_REACH_M` of its platform with the platform on the right of the way
    the line arrives there (a line may pass a junction twice), else the nearest ahead."""
    out, start = [], 0
    xs, ys = network.x[nodes], network.y[nodes]
    for sid in stop_ids:
        stop = index.stops[sid]
        sx, sy = to_metric(stop.lon, stop.lat)
        d2 = (xs[start:] - sx) ** 2 + (ys[start:] - sy) ** 2
        found = start + int(d2.argmin())
        for k in start + np.nonzero(d2 <= PLATFORM_REACH_M**2)[0]:
            a, b = (k - 1, k) if k > 0 else (k, k + 1)
            dx, dy = xs[b] - xs[a], ys[b] - ys[a]
            ox, oy = sx - xs[k], sy - ys[k]
            right = (ox * dy - oy * dx) / max(math.hypot(ox, oy) * math.hypot(dx, dy), 1e-9)
            if right > 0.7:  # square to the right of the way the line arrives
                found = int(k)
                break
        start = found
        out.append(found)
    return tuple(out)


def _runs(hits: list[int]) -> list[tuple[int, int]]:
    """Indices of closed segments → (first, last) of each stretch, near ones merged."""
    runs = [(hits[0], hits[0])]
    for k in hits[1:]:
        if k - runs[-1][1] <= MERGE_GAP:
            runs[-1] = (runs[-1][0], k)
        else:
            runs.append((k, k))
    return runs


def plan_line(line: Line, closures: Sequence[ActiveClosure], routing: Routing) -> Detour | None:
    """The line's plan under ``closures`` (None when none of them touches it)."""
    closed = frozenset().union(*(c.edges for c in closures)) if closures else frozenset()
    hits = [k for k, e in enumerate(line.edges) if e in closed]
    if not hits:
        return None
    cutting = tuple(c for c in closures if c.edges & set(line.edges))
    runs = _runs(hits)
    if not line.tram:
        detour = _bus_detour(line, runs, routing, cutting)
        if detour is not None:
            return detour
    return _short_turn(line, runs, cutting)


def _bus_detour(
    line: Line, runs: list[tuple[int, int]], routing: Routing, cutting: tuple[ActiveClosure, ...]
) -> Detour | None:
    net = routing.network
    nodes: list[int] = []
    edges: list[int] = []
    skipped: set[int] = set()
    prev = 0
    for first, last in runs:
        route = routing.route(line.nodes[first], line.nodes[last + 1])
        if route is None:
            return None
        nodes += line.nodes[prev:first] + route.nodes[:-1]
        edges += list(line.edges[prev:first]) + [int(net.arc_edge[a]) for a in route.arcs]
        skipped |= {i for i, pos in enumerate(line.stop_pos) if first < pos < last + 1}
        prev = last + 1
    nodes += line.nodes[prev:]
    edges += line.edges[prev:]
    length = float(sum(_edge_length(net, e) for e in edges))
    before = float(sum(_edge_length(net, e) for e in line.edges))
    return Detour(
        line,
        "detour",
        cutting,
        tuple(nodes),
        tuple(edges),
        tuple(s for i, s in enumerate(line.stop_ids) if i not in skipped),
        tuple(s for i, s in enumerate(line.stop_ids) if i in skipped),
        round(length - before, 1),
    )


def _edge_length(net: RoadNetwork, edge: int) -> float:
    return float(net.arc_length[edge])  # the first arcs are the segments themselves


def _short_turn(
    line: Line, runs: list[tuple[int, int]], cutting: tuple[ActiveClosure, ...]
) -> Detour:
    first, last = runs[0][0], runs[-1][1] + 1
    before = [i for i, pos in enumerate(line.stop_pos) if pos <= first]
    after = [i for i, pos in enumerate(line.stop_pos) if pos >= last]
    # the same side in both directions: direction 0 keeps its start, 1 its end, on a tie
    keep_before = len(before) > len(after) or (len(before) == len(after) and not line.direction_id)
    kept = before if keep_before else after
    if len(kept) < 2:
        return Detour(line, "suspended", cutting, (), (), (), line.stop_ids)
    a, b = (0, first) if keep_before else (last, len(line.nodes) - 1)
    return Detour(
        line,
        "short_turn",
        cutting,
        line.nodes[a : b + 1],
        line.edges[a:b],
        tuple(line.stop_ids[i] for i in kept),
        tuple(s for i, s in enumerate(line.stop_ids) if i not in kept),
    )


class DetourBook:
    """The plans of the lines the closures in force cut, kept in step with them."""

    def __init__(
        self,
        lines: Iterable[Line],
        routing: Routing,
        index: StaticIndex,
        listeners: Callable[[], Iterable[Listener]] = tuple,
    ) -> None:
        self.lines = list(lines)
        self.routing = routing
        self.index = index
        self.listeners = listeners
        self._plans: dict[tuple[str, int], Detour] = {}

    def update(self, closures: list[ActiveClosure]) -> None:
        """Plan every line again under ``closures``; tell the listeners what changed."""
        plans = {}
        for line in self.lines:
            detour = plan_line(line, closures, self.routing)
            if detour is not None:
                plans[detour.key] = detour
        changed = [
            key
            for key in set(plans) | set(self._plans)
            if _path(plans.get(key)) != _path(self._plans.get(key))
        ]
        self._plans = plans
        for listener in self.listeners():
            for route_id, direction in sorted(changed):
                listener(route_id, direction, plans.get((route_id, direction)))

    def detours(self) -> list[Detour]:
        """The plans in force, by route and direction."""
        return [self._plans[k] for k in sorted(self._plans)]

    def skipped(self) -> dict[tuple[str, int], frozenset[str]]:
        """The stops each detoured line does not serve, by (route_id, direction_id)."""
        return {k: frozenset(d.skipped) for k, d in self._plans.items() if d.skipped}

    def alerts(self) -> list[ServiceAlert]:
        """One alert per route with a plan in force: the effect, the stops not served."""
        by_route: dict[str, list[Detour]] = {}
        for d in self.detours():
            by_route.setdefault(d.line.route_id, []).append(d)
        return [self._alert(route_id, plans) for route_id, plans in by_route.items()]

    def _alert(self, route_id: str, plans: list[Detour]) -> ServiceAlert:
        kinds = {d.kind for d in plans}
        kind = next(k for k in ("suspended", "short_turn", "detour") if k in kinds)
        closures = {c.id: c for d in plans for c in d.closures}.values()
        skipped = sorted({s for d in plans for s in d.skipped})
        mode = "Tram" if plans[0].line.tram else "Ligne"
        name = f"{mode} {plans[0].line.name}"
        streets = ", ".join(sorted({c.name for c in closures if c.name})) or "une rue"
        reasons = "; ".join(sorted({c.reason for c in closures if c.reason}))
        header = {
            "detour": f"{name} déviée",
            "short_turn": f"{name} : terminus provisoire",
            "suspended": f"{name} interrompue",
        }[kind]
        text = f"{streets} fermé{'e' if ',' not in streets else 'es'}"
        if reasons:
            text += f" ({reasons})"
        text += "."
        if kind == "short_turn":
            ends = sorted({self._name(d.stop_ids[k]) for d in plans for k in (0, -1) if d.stop_ids})
            text += f" Service entre {' et '.join(ends[:2])} ; bus de remplacement au-delà."
        if skipped:
            names = sorted({self._name(s) for s in skipped})
            text += f" Arrêts non desservis : {', '.join(names)}."
        return ServiceAlert(
            f"detour-{route_id}",
            EFFECT[kind],
            "OTHER_CAUSE",
            header,
            text,
            route_ids=(route_id,),
            stop_ids=tuple(skipped),
            start=min(c.starts_at for c in closures),
            end=max(c.ends_at for c in closures),
        )

    def _name(self, stop_id: str) -> str:
        stop = self.index.stops.get(stop_id)
        return stop.name if stop is not None else stop_id

    def view(self, d: Detour) -> dict[str, Any]:
        """A plan as the API shows it: line, kind, stops, closures and the path as GeoJSON."""
        net = self.routing.network
        coords = [[round(float(net.lon[n]), 6), round(float(net.lat[n]), 6)] for n in d.nodes]
        return {
            "routeId": d.line.route_id,
            "directionId": d.line.direction_id,
            "line": d.line.name,
            "mode": "tram" if d.line.tram else "bus",
            "kind": d.kind,
            "closures": [c.id for c in d.closures],
            "servedStops": list(d.stop_ids),
            "skippedStops": [{"stopId": s, "name": self._name(s)} for s in d.skipped],
            "extraMetres": d.extra_metres,
            "geometry": {"type": "LineString", "coordinates": coords} if len(coords) > 1 else None,
        }


def _path(d: Detour | None) -> tuple[Any, ...] | None:
    return None if d is None else (d.kind, d.nodes, d.stop_ids)
