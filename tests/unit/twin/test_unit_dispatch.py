"""A dispatched unit drives the route it was given, then reports being on scene."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from citypilot.ops.roadgraph import load_network
from citypilot.ops.routing import Routing
from citypilot.twin import Simulator
from citypilot.twin.export import write_graph
from citypilot.twin.geo import to_metric
from tests.unit.twin.conftest import SEED, local

START = local("2025-11-20 10:00")


def test_a_dispatched_unit_follows_its_route_to_the_incident(small_city, tmp_path):
    write_graph(small_city, tmp_path)
    routing = Routing(load_network(tmp_path))
    sim = Simulator(small_city, SEED, START, types={"TechnicalVehicle"})
    sim.step(START)
    unit = next(d for d in sim.devices if getattr(d, "kind", "") == "fireEngine")
    home = unit.base_node
    far = int(np.argmax((routing.network.x - routing.network.x[home]) ** 2))
    route = routing.route(home, far)
    assert route is not None and len(route.nodes) > 5
    sim.drive_unit(unit.entity_id, list(route.nodes), "urn:ngsi-ld:Incident:test")
    reports = sim.run_until(START + timedelta(seconds=route.seconds * 2 + 120), step_s=5)
    mine = [r for r in reports if r["id"] == unit.entity_id]
    assert mine[0]["attrs"]["status"] == "onRoute"
    on_route = {
        tuple(np.round(to_metric(*r["attrs"]["location"]["coordinates"]), -1))
        for r in mine
        if r["attrs"]["status"] == "onRoute"
    }
    assert len(on_route) > 5
    # every position reported while driving lies on the route's polyline (within 15 m)
    net = routing.network
    xs, ys = net.x[list(route.nodes)], net.y[list(route.nodes)]
    for x, y in on_route:
        seg = [
            np.hypot(*_closest(x, y, xs[k], ys[k], xs[k + 1], ys[k + 1]))
            for k in range(len(xs) - 1)
        ]
        assert min(seg) < 15.0
    last = mine[-1]["attrs"]
    assert last["status"] == "working"
    lx, ly = to_metric(*last["location"]["coordinates"])
    assert np.hypot(lx - net.x[far], ly - net.y[far]) < 2.0


def _closest(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    return ax + t * dx - px, ay + t * dy - py
