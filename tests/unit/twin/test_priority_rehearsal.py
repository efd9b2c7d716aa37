"""The twin drives a dispatch with and without signal priority: the difference is the
red light the unit would have waited at, from each simulated signal's own cycle."""

from __future__ import annotations

import numpy as np
import pytest

from citypilot.ops.roadgraph import load_network
from citypilot.ops.routing import Routing
from citypilot.twin import Simulator
from citypilot.twin.devices.traffic import TrafficSignalModel
from citypilot.twin.export import write_graph
from citypilot.twin.priority_rehearsal import red_wait, signals_by_node
from tests.unit.twin.conftest import SEED, local

START = local("2025-11-20 10:00")


def test_a_red_light_is_waited_out_to_the_next_green_and_a_green_is_not():
    signal = TrafficSignalModel.__new__(TrafficSignalModel)
    signal.phase, signal.mode, signal.started = "green", "fixedTime", True
    signal.cur_cycle, signal.green_share, signal.cycle_start = 90.0, 0.5, 1000.0
    assert red_wait(signal, 1000.0 + 10) == 0.0  # 10 s into a 45 s green
    assert red_wait(signal, 1000.0 + 60) == pytest.approx(30.0)  # 15 s into the red
    assert red_wait(signal, 1000.0 + 90 * 7 + 89) == pytest.approx(1.0)  # cycles go on
    signal.phase = "flashingAmber"
    assert red_wait(signal, 1000.0 + 60) == 0.0  # drivers give way, nobody waits


def test_dispatching_a_unit_rehearses_its_drive_with_and_without_priority(small_city, tmp_path):
    write_graph(small_city, tmp_path)
    routing = Routing(load_network(tmp_path))
    sim = Simulator(small_city, SEED, START, types={"TechnicalVehicle", "TrafficSignal"})
    sim.step(START)
    unit = next(d for d in sim.devices if getattr(d, "kind", "") == "fireEngine")
    signals = [d for d in sim.devices if isinstance(d, TrafficSignalModel)]
    home = unit.base_node
    # the farthest junction that has a signal: a long drive across signalled junctions
    net = routing.network
    order = np.argsort(-((net.x - net.x[home]) ** 2 + (net.y - net.y[home]) ** 2))
    route = next(
        r
        for r in (routing.route(home, int(n)) for n in order[:200])
        if r is not None and len(signals_by_node(unit, r.nodes, signals)) >= 3
    )
    rehearsal = sim.drive_unit(unit.entity_id, list(route.nodes), "urn:ngsi-ld:Incident:x")
    assert rehearsal.signals == len(signals_by_node(unit, route.nodes, signals)) >= 3
    assert rehearsal.with_priority_s > 0
    waits = rehearsal.without_priority_s - rehearsal.with_priority_s
    assert waits == pytest.approx(rehearsal.saved_s)
    # every red met costs at most a whole cycle, a green nothing
    longest = max(s.cur_cycle for s in signals)
    assert 0 <= waits <= rehearsal.reds * longest
    assert (waits > 0) == (rehearsal.reds > 0)
    shown = rehearsal.to_json()
    assert shown["savedSeconds"] == pytest.approx(waits, abs=0.1)
    assert 0 <= shown["savedPercent"] < 100
