"""Transit detours on a generated town: buses round a closed street, trams short-turn,
the simulated vehicles follow, the feeds say so, and all is restored after."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from citypilot.ops.closures import ActiveClosure
from citypilot.ops.detours import DetourBook, transit_lines
from citypilot.ops.roadgraph import load_network
from citypilot.ops.routing import Routing
from citypilot.publish.fleet import fleet_from_observations
from citypilot.publish.gtfs_rt import FeedBuilder
from citypilot.publish.gtfs_static import StaticFeed
from citypilot.twin import Simulator, generate_city, write_gtfs
from citypilot.twin.environment import TIMEZONE
from citypilot.twin.export import write_graph
from citypilot.twin.geo import to_metric
from tests.unit.shape_distance import distance_to_shape

SEED = 7
MORNING = datetime(2025, 11, 20, 7, 30, tzinfo=TIMEZONE)  # a Thursday
OFF_SHAPE_M = 25.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The town, its static feed and road graph as the server loads them."""
    city = generate_city(SEED, 0.1)
    folder = tmp_path_factory.mktemp("town")
    write_gtfs(city, folder / "gtfs")
    write_graph(city, folder / "graph")
    index = StaticFeed(folder / "gtfs").index()
    routing = Routing(load_network(folder / "graph"))
    return city, index, routing


@pytest.fixture
def book(world):
    _, index, routing = world
    routing.set_closed(())
    calls: list[tuple[str, int, object]] = []
    listeners = [lambda route_id, d, detour: calls.append((route_id, d, detour))]
    made = DetourBook(transit_lines(index, routing.network), routing, index, lambda: listeners)
    made.calls = calls  # what the listener heard, for the tests
    yield made
    routing.set_closed(())


def _close(book: DetourBook, edges: set[int], name: str = "Rue fermée") -> ActiveClosure:
    now = time.time()
    closure = ActiveClosure(
        "urn:ngsi-ld:RoadClosure:t1", frozenset(edges), now + 3600, now, name, "fire"
    )
    book.routing.set_closed(edges)  # as the closure book does before telling the detours
    book.update([closure])
    return closure


def _bus_edge(city) -> tuple[str, int]:
    """A bus line and an edge in the middle of its outward path that no tram uses."""
    tram_edges = {
        e
        for r in city.transit.routes
        if r.vehicle_type == "Tram"
        for p in r.patterns
        for e in p.edges
    }
    route = next(r for r in city.transit.routes if r.vehicle_type == "Bus")
    edges = route.patterns[0].edges
    k = next(k for k in range(len(edges) // 2, len(edges)) if edges[k] not in tram_edges)
    return route.route_id, edges[k]


def test_every_line_is_laid_back_on_the_road_graph(world, book):
    city, _, _ = world
    patterns = {(r.route_id, p.direction): p for r in city.transit.routes for p in r.patterns}
    assert {(line.route_id, line.direction_id) for line in book.lines} == set(patterns)
    for line in book.lines:
        p = patterns[(line.route_id, line.direction_id)]
        assert list(line.nodes) == p.nodes and list(line.edges) == p.edges
        assert list(line.stop_pos) == p.stop_pos


def test_a_bus_drives_round_the_closed_street_and_skips_the_stops_there(world, book):
    city, _, routing = world
    net = routing.network
    route_id, edge = _bus_edge(city)
    _close(book, {edge})
    plan = next(d for d in book.detours() if d.key == (route_id, 0))
    line = plan.line
    assert plan.kind == "detour"
    assert edge not in plan.edges and edge in line.edges
    assert (plan.nodes[0], plan.nodes[-1]) == (line.nodes[0], line.nodes[-1])
    arcs = set(zip(net.arc_from.tolist(), net.arc_to.tolist(), strict=True))
    assert all(pair in arcs for pair in pairwise(plan.nodes))  # a drive, one-ways respected
    assert set(plan.stop_ids) | set(plan.skipped) == set(line.stop_ids)
    assert list(plan.stop_ids) == [s for s in line.stop_ids if s not in plan.skipped]
    # every line the closed street does not carry runs as timetabled
    assert all(edge in d.line.edges for d in book.detours())


def test_the_detour_is_no_longer_than_the_shortest_way_round(world, book):
    """Checked against a search of our own over the graph without the closed segment."""
    city, _, routing = world
    route_id, edge = _bus_edge(city)
    _close(book, {edge})
    plan = next(d for d in book.detours() if d.key == (route_id, 0))
    line = plan.line
    k = line.edges.index(edge)
    start, end = line.nodes[k], line.nodes[k + 1]
    net = routing.network
    best = _dijkstra(net, start, end, banned=edge)
    driven = plan.nodes[
        plan.nodes.index(start) : plan.nodes.index(end, plan.nodes.index(start)) + 1
    ]
    seconds = {
        (int(a), int(b)): float(s)
        for a, b, s, e in zip(net.arc_from, net.arc_to, net.arc_seconds, net.arc_edge, strict=True)
        if e != edge
    }
    assert sum(seconds[p] for p in pairwise(driven)) == pytest.approx(best, rel=1e-6)


def _dijkstra(net, source: int, target: int, banned: int) -> float:
    import heapq

    out: dict[int, list[tuple[int, float]]] = {}
    for a, b, s, e in zip(net.arc_from, net.arc_to, net.arc_seconds, net.arc_edge, strict=True):
        if e != banned:
            out.setdefault(int(a), []).append((int(b), float(s)))
    dist = {source: 0.0}
    heap = [(0.0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if u == target:
            return d
        if d > dist.get(u, math.inf):
            continue
        for v, s in out.get(u, ()):
            if d + s < dist.get(v, math.inf):
                dist[v] = d + s
                heapq.heappush(heap, (d + s, v))
    return math.inf


def test_a_tram_short_turns_on_the_same_side_in_both_directions(world, book):
    city, index, _ = world
    tram = next(r for r in city.transit.routes if r.vehicle_type == "Tram")
    out = tram.patterns[0]
    edge = out.edges[len(out.edges) // 3]
    _close(book, {edge})
    plans = {d.line.direction_id: d for d in book.detours() if d.line.route_id == tram.route_id}
    assert set(plans) == {0, 1}
    for d in plans.values():
        assert d.kind == "short_turn"
        assert edge not in d.edges and d.skipped
        assert len(d.stop_ids) >= 2
    # the section kept is the same stretch of track, run both ways
    assert plans[0].nodes[0] == plans[1].nodes[-1]
    stations = [{index.stops[s].parent for s in plans[k].stop_ids} for k in (0, 1)]
    assert len(stations[0] & stations[1]) >= min(len(s) for s in stations) - 1
    (alert,) = [a for a in book.alerts() if a.route_ids == (tram.route_id,)]
    assert alert.effect == "MODIFIED_SERVICE"
    assert "bus de remplacement" in alert.description


def test_alerts_name_the_line_and_the_stops_it_skips_then_go_when_the_closure_ends(world, book):
    city, index, _ = world
    route_id, edge = _bus_edge(city)
    closure = _close(book, {edge}, name="Rue Pasteur")
    (alert,) = [a for a in book.alerts() if a.route_ids == (route_id,)]
    skipped = {s for d in book.detours() if d.line.route_id == route_id for s in d.skipped}
    assert alert.effect == "DETOUR"
    assert set(alert.stop_ids) == skipped
    assert "Rue Pasteur" in alert.description and "(fire)" in alert.description
    assert all(index.stops[s].name in alert.description for s in skipped)
    assert (alert.start, alert.end) == (closure.starts_at, closure.ends_at)
    heard = {(r, d) for r, d, detour in book.calls if detour is not None}
    assert heard == {d.key for d in book.detours()}
    book.calls.clear()
    book.routing.set_closed(())
    book.update([])
    assert book.alerts() == [] and book.detours() == []
    assert {(r, d) for r, d, detour in book.calls if detour is None} == heard


def _off_shape(index, placed) -> dict[str, float]:
    """Each vehicle's distance to its trip's shape, by vehicle id."""
    out = {}
    for p in placed:
        shape = [to_metric(lon, lat) for lon, lat in index.shapes[p.trip.shape_id]]
        x, y = to_metric(p.vehicle.lon, p.vehicle.lat)
        out[p.vehicle.vehicle_id] = distance_to_shape(x, y, shape)
    return out


def test_simulated_buses_take_the_detour_under_a_detour_alert_and_come_back(world, book):
    city, index, routing = world
    sim = Simulator(city, SEED, MORNING, types=("Bus", "Tram"))

    def follow(route_id, direction, detour):
        path = None if detour is None else (detour.nodes, detour.edges, detour.stop_ids)
        sim.reroute(route_id, direction, path)

    book.listeners = lambda: [follow]
    route_id, edge = _bus_edge(city)
    _close(book, {edge})
    builder = FeedBuilder(index)
    off_seen: set[str] = set()
    observations = sim.run_until(MORNING + timedelta(minutes=1), step_s=10)
    for minute in range(2, 40):
        end = MORNING + timedelta(minutes=minute)
        observations += sim.run_until(end, step_s=10)
        placed = builder.place(fleet_from_observations(observations), end.timestamp())
        detoured = {a.route_ids[0] for a in book.alerts() if a.effect == "DETOUR"}
        for p in placed:
            if _off_shape(index, [p])[p.vehicle.vehicle_id] > OFF_SHAPE_M:
                assert p.trip.route_id in detoured, p.vehicle.vehicle_id  # covered by an alert
                off_seen.add(p.vehicle.vehicle_id)
        trips = builder.trip_updates(placed, end.timestamp(), book.skipped())
        for e in trips.entity:
            for stu in e.trip_update.stop_time_update:
                if stu.stop_id in book.skipped().get(
                    (e.trip_update.trip.route_id, e.trip_update.trip.direction_id), ()
                ):
                    assert stu.schedule_relationship == rt.TripUpdate.StopTimeUpdate.SKIPPED
    assert off_seen  # some bus really drove round the closure
    assert route_id in detoured
    routing.set_closed(())
    book.update([])
    end = MORNING + timedelta(minutes=41)
    observations += sim.run_until(end, step_s=10)
    placed = builder.place(fleet_from_observations(observations), end.timestamp())
    assert max(_off_shape(index, placed).values()) < OFF_SHAPE_M
