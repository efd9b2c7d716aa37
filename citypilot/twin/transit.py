"""The transit network: tram and bus lines routed on the road graph, stops and timetables.

Tram lines cross the centre along two-way streets; bus lines run from a suburb's
town centre through the city centre to the other side (a few are tangential).
Stops sit on route nodes every few hundred metres (platforms of named stations,
see ``stops``). Trips follow headways and running times that vary by time of day
(peaks on weekdays) and are chained into vehicle blocks at
the termini, which gives each Tram and Bus entity its day's work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from citypilot.twin.land import Land
from citypilot.twin.roads import ARTERIAL, LOCAL, RING, RoadGraph, Router
from citypilot.twin.stops import Station, Stop, StopPlacer

TRAM_LINES = 2
BUS_LINES = 15
TRAM_STOP_SPACING_M = 550.0
BUS_STOP_SPACING_M = 380.0
TRAM_DWELL_S = 25
BUS_DWELL_S = 20
MIN_LAYOVER_S = 300
#: (from, to, headway minutes) for weekday service; weekend uses WEEKEND_HEADWAY_FACTOR.
TRAM_HEADWAYS = ((5.5, 7.0, 10), (7.0, 9.5, 6), (9.5, 16.5, 9), (16.5, 19.5, 6), (19.5, 24.5, 15))
BUS_HEADWAYS = ((6.0, 7.0, 20), (7.0, 9.5, 12), (9.5, 16.5, 18), (16.5, 19.5, 12), (19.5, 22.0, 30))
WEEKEND_HEADWAY_FACTOR = 1.6
SERVICES = ("weekday", "weekend")
SERVICE_CODE = {"weekday": "WD", "weekend": "WE"}
TRAM_COLOURS = ("C8102E", "0072CE", "00A651", "F7A800", "7F3F98", "E4007C", "00A9E0", "8DC63F")
ROUTE_TYPE = {"Tram": 0, "Bus": 3}
#: Running time against the pattern's base (daytime off-peak) times: (from, to hour of
#: the trip's departure, factor) per service. Trams on their own track feel traffic
#: less: they move TRAM_TRAFFIC_SHARE of the way from 1.0 towards a bus's factor.
RUNNING_TIME_BANDS = {
    "weekday": (
        (0.0, 6.5, 0.86),
        (6.5, 7.5, 1.0),
        (7.5, 9.5, 1.2),
        (9.5, 16.0, 1.02),
        (16.0, 19.5, 1.22),
        (19.5, 21.0, 0.96),
        (21.0, 48.0, 0.88),
    ),
    "weekend": ((0.0, 10.0, 0.88), (10.0, 19.0, 0.98), (19.0, 48.0, 0.88)),
}
TRAM_TRAFFIC_SHARE = 0.4
#: Speed at which a detour's extra distance is timed (a bus in town traffic).
DETOUR_SPEED_MS = 7.0


@dataclass
class Pattern:
    """One direction of a line: path on the road graph, stops and running times."""

    direction: int
    nodes: list[int]
    edges: list[int]
    cum_m: np.ndarray  # cumulative distance at each path node
    stop_ids: list[str]
    stop_pos: list[int]  # index into ``nodes`` of each stop
    arrival_s: list[int]  # seconds from trip start to arrival at each stop
    dwell_s: int

    @property
    def shape_id(self) -> str:
        """Not unique on its own; prefixed with the route id in :func:`shape_id`."""
        return f"d{self.direction}"

    @property
    def duration_s(self) -> int:
        """Seconds from departure at the first stop to arrival at the last."""
        return self.arrival_s[-1]


@dataclass
class Route:
    """A tram or bus line with its two patterns."""

    route_id: str
    short_name: str
    long_name: str
    vehicle_type: str  # "Tram" or "Bus"
    colour: str
    patterns: list[Pattern]

    def shape_id(self, direction: int) -> str:
        """GTFS shape_id of one direction."""
        return f"{self.route_id}-{direction}"


@dataclass
class Trip:
    """One run of a pattern, by one vehicle (``block``), on one service day type."""

    trip_id: str
    route: int
    direction: int
    service: str
    start_s: int  # departure from the first stop, seconds after midnight (may exceed 86400)
    block: str  # local id of the vehicle (Tram/Bus entity) that runs it
    factor: float = 1.0  # running time against the pattern's base times (time of day)


@dataclass
class Transit:
    """The whole network: stops, routes, trips and the fleet that runs them."""

    stops: dict[str, Stop]  # platforms
    routes: list[Route]
    trips: list[Trip]
    vehicles: list[tuple[str, str, int]]  # (entity type, local id, route index)
    depots: list[tuple[str, float, float]]  # (name, x, y) per depot; index 0 trams
    vehicle_depot: dict[str, int] = field(default_factory=dict)
    stations: dict[str, Station] = field(default_factory=dict)


def running_factor(vehicle_type: str, service: str, start_s: int) -> float:
    """How much longer (or shorter) than the base times a trip departing at ``start_s``
    runs, by the time-of-day band of its service."""
    hour = start_s / 3600.0
    factor = next(f for a, b, f in RUNNING_TIME_BANDS[service] if a <= hour < b)
    if vehicle_type == "Tram":
        factor = 1.0 + TRAM_TRAFFIC_SHARE * (factor - 1.0)
    return round(factor, 3)


def scheduled_times(trip: Trip, pattern: Pattern) -> list[tuple[int, int]]:
    """(arrival, departure) in seconds after midnight at each stop of ``trip``."""
    f = trip.factor
    dwell = round(pattern.dwell_s * f)
    last = len(pattern.arrival_s) - 1
    out = []
    for k, base in enumerate(pattern.arrival_s):
        arr = trip.start_s + round(base * f)
        out.append((arr, arr if k in (0, last) else arr + dwell))
    return out


def rerouted(
    graph: RoadGraph,
    pattern: Pattern,
    nodes: Sequence[int],
    edges: Sequence[int],
    stop_ids: Sequence[str],
) -> Pattern:
    """``pattern`` driven along another path (a detour, or part of it for a short turn),
    serving ``stop_ids`` only. A stop keeps its scheduled time plus the time the extra
    distance before it takes at :data:`DETOUR_SPEED_MS`; a short turn keeps the times."""
    cum = np.concatenate([[0.0], np.cumsum(graph.length[list(edges)])])
    old_index = {sid: k for k, sid in enumerate(pattern.stop_ids)}
    stop_pos, arrivals = [], []
    start = 0
    for sid in stop_ids:
        node = pattern.nodes[pattern.stop_pos[old_index[sid]]]
        start = list(nodes).index(node, start)
        stop_pos.append(start)
    first_new, first_old = cum[stop_pos[0]], pattern.cum_m[pattern.stop_pos[old_index[stop_ids[0]]]]
    for sid, pos in zip(stop_ids, stop_pos, strict=True):
        k = old_index[sid]
        extra = (cum[pos] - first_new) - (pattern.cum_m[pattern.stop_pos[k]] - first_old)
        arrivals.append(pattern.arrival_s[k] + round(max(0.0, float(extra)) / DETOUR_SPEED_MS))
    return Pattern(
        pattern.direction,
        list(nodes),
        list(edges),
        cum,
        list(stop_ids),
        stop_pos,
        arrivals,
        pattern.dwell_s,
    )


def trip_duration(trip: Trip, pattern: Pattern) -> int:
    """Seconds from the first departure to the last arrival of ``trip``."""
    return round(pattern.duration_s * trip.factor)


def build_transit(rng: np.random.Generator, land: Land, graph: RoadGraph, scale: float) -> Transit:
    """Route the lines, place stops, build timetables and vehicle blocks; marks bus lanes."""
    n_tram = max(1, round(TRAM_LINES * scale))
    n_bus = max(2, round(BUS_LINES * scale))
    placer = StopPlacer(graph, land)
    routes: list[Route] = []
    node_ok = _usable_nodes(graph)

    tram_cost = np.where(
        graph.oneway | (graph.cls == RING),
        np.inf,
        graph.length * np.where(graph.cls == ARTERIAL, 1.0, 2.0),
    )
    tram_router = Router(graph, tram_cost)
    centre = graph.nearest_node(0.0, 0.0, node_ok)
    for k in range(n_tram):
        angle = math.pi * k / n_tram + rng.uniform(-0.25, 0.25)
        reach = land.core_radius * rng.uniform(1.05, 1.25)
        a = graph.nearest_node(reach * math.cos(angle), reach * math.sin(angle), node_ok)
        b = graph.nearest_node(-reach * math.cos(angle), -reach * math.sin(angle), node_ok)
        leg1 = tram_router.path(a, centre)
        leg2 = tram_router.path(centre, b)
        if leg1 is None or leg2 is None:
            continue
        nodes, edges = _join(leg1, leg2)
        forward = _pattern(placer, 0, nodes, edges, "TR", TRAM_STOP_SPACING_M, TRAM_DWELL_S, 0.65)
        back = _pattern(
            placer, 1, nodes[::-1], edges[::-1], "TR", TRAM_STOP_SPACING_M, TRAM_DWELL_S, 0.65
        )
        name = f"T{k + 1}"
        routes.append(
            Route(
                name,
                name,
                placer.line_name(forward.stop_ids),
                "Tram",
                TRAM_COLOURS[k % len(TRAM_COLOURS)],
                [forward, back],
            )
        )

    bus_cost = graph.length * np.select(
        [graph.cls == ARTERIAL, graph.cls == RING, (graph.cls == LOCAL) & graph.urban],
        [1.0, 1.15, 1.5],
        1.2,
    )
    bus_router = Router(graph, bus_cost)
    termini = _bus_termini(rng, land, graph, node_ok, n_bus)
    tangential = n_bus // 6
    for k in range(n_bus):
        a, b = termini[k]
        if k >= n_bus - tangential:
            legs = [bus_router.path(a, b), bus_router.path(b, a)]
            if None in legs:
                continue
            fwd_nodes, fwd_edges = legs[0]
            back_nodes, back_edges = legs[1]
        else:
            hub = graph.nearest_node(*(rng.uniform(-0.12, 0.12, 2) * land.core_radius), node_ok)
            parts = [
                bus_router.path(a, hub),
                bus_router.path(hub, b),
                bus_router.path(b, hub),
                bus_router.path(hub, a),
            ]
            if None in parts:
                continue
            fwd_nodes, fwd_edges = _join(parts[0], parts[1])
            back_nodes, back_edges = _join(parts[2], parts[3])
        forward = _pattern(
            placer, 0, fwd_nodes, fwd_edges, "BU", BUS_STOP_SPACING_M, BUS_DWELL_S, 0.55
        )
        back = _pattern(
            placer, 1, back_nodes, back_edges, "BU", BUS_STOP_SPACING_M, BUS_DWELL_S, 0.55
        )
        name = str(k + 1)
        routes.append(
            Route(
                f"L{name}",
                name,
                placer.line_name(forward.stop_ids),
                "Bus",
                "1F4E79" if k % 2 == 0 else "2E8B57",
                [forward, back],
            )
        )
        _mark_bus_lanes(graph, land, fwd_edges + back_edges)

    depots = _depots(land, graph, node_ok)
    trips, vehicles = _timetable(rng, routes)
    n_bus_depots = len(depots) - 1
    vehicle_depot = {
        f"{vtype}:{local}": 0 if vtype == "Tram" else 1 + r % n_bus_depots
        for vtype, local, r in vehicles
    }
    return Transit(placer.stops, routes, trips, vehicles, depots, vehicle_depot, placer.stations)


def _usable_nodes(graph: RoadGraph) -> np.ndarray:
    """Built-up grid nodes with at least two two-way edges (good places for stops)."""
    two = ~graph.oneway & (graph.cls != RING)
    deg = np.bincount(graph.u[two], minlength=graph.node_count) + np.bincount(
        graph.v[two], minlength=graph.node_count
    )
    urban_node = np.zeros(graph.node_count, dtype=bool)
    urban_node[graph.u[graph.urban]] = True
    return (deg >= 2) & urban_node & (graph.node_grid[:, 0] > -(10**6))


def _join(
    a: tuple[list[int], list[int]], b: tuple[list[int], list[int]]
) -> tuple[list[int], list[int]]:
    """Concatenate two node/edge paths sharing the junction node."""
    return a[0] + b[0][1:], a[1] + b[1]


def _bus_termini(
    rng: np.random.Generator, land: Land, graph: RoadGraph, node_ok: np.ndarray, count: int
) -> list[tuple[int, int]]:
    """Pairs of terminus nodes: suburb town centres first, then points on the urban fringe."""
    anchors = []
    order = np.argsort(-land.muni_population[1:], kind="stable") + 1
    for m in order:
        anchors.append(graph.nearest_node(*land.muni_xy[m], node_ok))
    while len(anchors) < 2 * count:
        t = rng.uniform(0, 2 * math.pi)
        r = land.core_radius * rng.uniform(0.6, 1.1)
        anchors.append(graph.nearest_node(r * math.cos(t), r * math.sin(t), node_ok))
    angles = np.arctan2(graph.y[anchors], graph.x[anchors])
    pairs = []
    for k in range(count):
        a = anchors[k % len(anchors)]
        target = angles[k % len(anchors)] + math.pi + rng.uniform(-0.6, 0.6)
        gap = np.abs((angles - target + math.pi) % (2 * math.pi) - math.pi)
        gap[k % len(anchors)] = np.inf
        b = anchors[int(np.argmin(gap + rng.uniform(0, 0.3, len(anchors))))]
        if b == a:
            b = anchors[(k + 1) % len(anchors)]
        pairs.append((a, b))
    return pairs


def _pattern(
    placer: StopPlacer,
    direction: int,
    nodes: list[int],
    edges: list[int],
    prefix: str,
    spacing: float,
    dwell: int,
    speed_factor: float,
) -> Pattern:
    """Place stops along a path and compute its base (daytime off-peak) running times."""
    graph = placer.graph
    lengths = graph.length[edges]
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    speed_ms = np.minimum(graph.maxspeed[edges], 50) * speed_factor / 3.6
    cum_t = np.concatenate([[0.0], np.cumsum(lengths / speed_ms)])
    stop_pos = [0]
    for k in range(1, len(nodes) - 1):
        if cum[k] - cum[stop_pos[-1]] >= spacing and cum[-1] - cum[k] >= 0.6 * spacing:
            stop_pos.append(k)
    stop_pos.append(len(nodes) - 1)
    stop_ids, arrivals = [], []
    for i, k in enumerate(stop_pos):
        stop_ids.append(placer.platform(prefix, nodes, k, edges))
        arrivals.append(round(float(cum_t[k]) + dwell * max(i - 1, 0)))
    return Pattern(direction, list(nodes), list(edges), cum, stop_ids, stop_pos, arrivals, dwell)


def _mark_bus_lanes(graph: RoadGraph, land: Land, edges: list[int]) -> None:
    """Arterials carrying buses inside the central city get a bus lane."""
    idx = np.asarray(edges, dtype=np.int64)
    mid_r = np.hypot(
        (graph.x[graph.u[idx]] + graph.x[graph.v[idx]]) / 2,
        (graph.y[graph.u[idx]] + graph.y[graph.v[idx]]) / 2,
    )
    sel = idx[(graph.cls[idx] == ARTERIAL) & (mid_r < 0.8 * land.core_radius)]
    graph.bus_lane[sel] = True


def _depots(land: Land, graph: RoadGraph, node_ok: np.ndarray) -> list[tuple[str, float, float]]:
    """A tram depot and one or more bus depots on the fringe of the central city."""
    out = []
    n_bus_depots = max(1, round(2 * land.radius / 9000.0))
    for k in range(1 + n_bus_depots):
        angle = 0.9 + 2 * math.pi * k / (1 + n_bus_depots)
        r = 0.85 * land.core_radius
        node = graph.nearest_node(r * math.cos(angle), r * math.sin(angle), node_ok)
        name = "Dépôt tram" if k == 0 else f"Dépôt bus {k}"
        out.append((name, float(graph.x[node]) + 40.0, float(graph.y[node]) + 40.0))
    return out


def _departures(
    headways: tuple[tuple[float, float, int], ...], factor: float, jitter: float
) -> list[int]:
    """Departure times (seconds after midnight) following a headway profile."""
    out = []
    for start_h, end_h, minutes in headways:
        t = start_h * 3600 + jitter
        step = minutes * factor * 60
        if out:
            t = max(t, out[-1] + step)
        while t < end_h * 3600:
            out.append(int(round(t / 30.0) * 30))
            t += step
    return out


def _timetable(
    rng: np.random.Generator, routes: list[Route]
) -> tuple[list[Trip], list[tuple[str, str, int]]]:
    """Trips of every route and service, chained into vehicle blocks at the termini."""
    trips: list[Trip] = []
    vehicles: list[tuple[str, str, int]] = []
    counters = {"Tram": 0, "Bus": 0}
    for r, route in enumerate(routes):
        headways = TRAM_HEADWAYS if route.vehicle_type == "Tram" else BUS_HEADWAYS
        jitter = float(rng.integers(0, 10)) * 60.0
        fleet: dict[str, str] = {}  # block label within route → vehicle local id
        for service in SERVICES:
            factor = 1.0 if service == "weekday" else WEEKEND_HEADWAY_FACTOR
            profile = (
                headways if service == "weekday" else ((headways[0][0] + 1.0, headways[-1][1], 12),)
            )
            runs = []
            for d, pattern in enumerate(route.patterns):
                offset = 0 if d == 0 else pattern.duration_s // 3
                for dep in _departures(profile, factor, jitter + offset):
                    runs.append((dep, d))
            runs.sort()
            # block building: reuse a vehicle waiting at this terminus, else take a new one
            free: dict[int, list[tuple[int, int]]] = {0: [], 1: []}  # terminus → (ready_at, block)
            n_blocks = 0
            for k, (dep, d) in enumerate(runs):
                waiting = free[d]
                waiting.sort()
                if waiting and waiting[0][0] <= dep:
                    _ready, block = waiting.pop(0)
                else:
                    block = n_blocks
                    n_blocks += 1
                factor = running_factor(route.vehicle_type, service, dep)
                end = dep + round(route.patterns[d].duration_s * factor) + MIN_LAYOVER_S
                free[1 - d].append((end, block))
                label = f"{block}"
                if label not in fleet:
                    counters[route.vehicle_type] += 1
                    local = f"{counters[route.vehicle_type]:04d}"
                    fleet[label] = local
                    vehicles.append((route.vehicle_type, local, r))
                trips.append(
                    Trip(
                        f"{route.route_id}-{SERVICE_CODE[service]}-{d}-{k + 1:04d}",
                        r,
                        d,
                        service,
                        dep,
                        fleet[label],
                        factor,
                    )
                )
    return trips, vehicles
