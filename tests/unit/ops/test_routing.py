"""Travel-time routing over the exported road graph, checked against the twin's own A*."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from citypilot.ops.roadgraph import load_network, travel_seconds
from citypilot.ops.routing import Routing
from citypilot.twin import generate_city
from citypilot.twin.export import write_graph
from citypilot.twin.roads import CLASS_NAMES, Router


@pytest.fixture(scope="module")
def city_and_routing(tmp_path_factory):
    city = generate_city(11, 0.1)
    folder = tmp_path_factory.mktemp("graph")
    write_graph(city, folder)
    return city, Routing(load_network(folder))


def _independent_router(city) -> Router:
    g = city.roads
    seconds = travel_seconds(
        np.round(g.length, 1), g.maxspeed.astype(float), [CLASS_NAMES[c] for c in g.cls]
    )
    return Router(g, seconds)


def test_fastest_routes_match_an_independent_search_on_random_pairs(city_and_routing):
    city, routing = city_and_routing
    reference = _independent_router(city)
    rng = random.Random(3)
    n = routing.network.node_count
    checked = 0
    for _ in range(40):
        a, b = rng.randrange(n), rng.randrange(n)
        ours = routing.route(a, b)
        theirs = reference.path(a, b)
        if theirs is None:
            assert ours is None
            continue
        cost = sum(reference._cost[e] for e in theirs[1])
        assert ours is not None
        assert ours.nodes[0] == a and ours.nodes[-1] == b
        assert ours.seconds == pytest.approx(cost, rel=1e-6, abs=1e-6)
        checked += 1
    assert checked >= 30


def test_one_search_to_the_incident_gives_every_travel_time(city_and_routing):
    _, routing = city_and_routing
    target = 42
    times = routing.times_to(target)
    sources = [0, 500, 1000]
    for src, route in zip(sources, routing.routes_to(target, sources), strict=True):
        assert route.seconds == pytest.approx(times[src])
        assert route.geometry()["type"] == "LineString"
        assert len(route.geometry()["coordinates"]) == len(route.nodes)


def test_one_way_streets_are_driven_only_their_way(city_and_routing):
    city, routing = city_and_routing
    net = routing.network
    oneway = np.nonzero(city.roads.oneway)[0]
    assert len(oneway) > 0
    e = int(oneway[0])
    u, v = int(city.roads.u[e]), int(city.roads.v[e])
    back = routing.route(v, u)
    assert back is not None
    assert all(not (net.arc_from[a] == v and net.arc_to[a] == u) for a in back.arcs)


def test_closures_change_the_route_and_can_isolate(city_and_routing):
    _, routing = city_and_routing
    net = routing.network
    a, b = 10, 900
    before = routing.route(a, b)
    used = {int(net.arc_edge[x]) for x in before.arcs}
    routing.set_closed(used)
    try:
        after = routing.route(a, b)
        assert after is None or not ({int(net.arc_edge[x]) for x in after.arcs} & used)
        if after is not None:
            assert after.seconds >= before.seconds
        around_b = {int(net.arc_edge[x]) for x in range(len(net.arc_to)) if net.arc_to[x] == b}
        routing.set_closed(used | around_b)
        assert routing.route(a, b) is None
        assert math.isinf(routing.times_to(b)[a])
    finally:
        routing.set_closed(())
    assert routing.route(a, b).seconds == pytest.approx(before.seconds)


def test_congestion_slows_a_route(city_and_routing):
    _, routing = city_and_routing
    before = routing.route(10, 900)
    routing.set_congestion({int(routing.network.arc_edge[x]): 4.0 for x in before.arcs})
    try:
        assert routing.route(10, 900).seconds > before.seconds
    finally:
        routing.set_congestion({})
