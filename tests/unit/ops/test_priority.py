"""Signal priority along a route: the signals in route order, requests and cancels on time."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from citypilot.ops.priority import (
    PACE_SLACK_S,
    PASS_MARGIN_S,
    PASS_TIMEOUT_S,
    PriorityRun,
    approach_from,
    expected_signal_delay_s,
    priority_benefit,
    route_progress,
    signals_on_route,
)
from citypilot.ops.roadgraph import load_network
from citypilot.ops.routing import Route, Routing
from tests.integration import incident_world as world


@pytest.fixture(scope="module")
def routing(tmp_path_factory) -> Routing:
    folder = tmp_path_factory.mktemp("town")
    world.write_graph(folder)
    return Routing(load_network(folder))


def _signal(name: str, col: float, row: float, dx_m: float = 0.0):
    lon, lat = world.lonlat(col + dx_m / world.SPACING_M, row)
    return (f"urn:ngsi-ld:TrafficSignal:{name}", lon, lat, None)


def test_signals_are_found_in_route_order_with_their_approach(routing: Routing):
    # (0,0) east to (3,0), then north to (3,1)
    route = routing.route(world.node(0, 0), world.node(3, 1))
    assert route.nodes[0] == world.node(0, 0) and route.nodes[-1] == world.node(3, 1)
    signals = [
        _signal("far", 3, 1),
        _signal("off-route", 1, 4),
        _signal("start", 0, 0),  # behind the unit: not asked
        _signal("near", 1, 0, dx_m=20),  # 20 m from the junction: within 30 m
        _signal("too-far", 2, 0, dx_m=45),
    ]
    stops = signals_on_route(routing.network, route, signals)
    names = [s.signal.rsplit(":", 1)[1] for s in stops]
    assert names[0] == "near" and names[-1] == "far"
    assert "off-route" not in names and "start" not in names and "too-far" not in names
    assert [s.order for s in stops] == list(range(len(stops)))
    etas = [s.eta_s for s in stops]
    assert etas == sorted(etas) and etas[-1] == pytest.approx(route.seconds)
    assert stops[0].approach == "west"  # driving east, it comes from the west


def test_approach_is_the_side_the_vehicle_comes_from():
    assert approach_from(0, 10) == "south"
    assert approach_from(0, -10) == "north"
    assert approach_from(10, 1) == "west"
    assert approach_from(-10, 1) == "east"


def test_the_benefit_is_the_signal_delay_avoided(routing: Routing):
    route = routing.route(world.node(0, 0), world.node(4, 0))
    stops = signals_on_route(routing.network, route, [_signal("a", 1, 0), _signal("b", 3, 0)])
    benefit = priority_benefit(route, stops)
    assert benefit["signals"] == 2
    assert benefit["savedSeconds"] == pytest.approx(2 * expected_signal_delay_s(), abs=0.1)
    assert benefit["withoutPrioritySeconds"] > benefit["withPrioritySeconds"]
    assert expected_signal_delay_s(90, 0.45) == pytest.approx(0.55**2 * 45)


def test_requests_go_out_in_route_order_ahead_of_the_unit_and_are_cancelled_after(
    routing: Routing,
):
    route = routing.route(world.node(0, 0), world.node(4, 0))  # 800 m, about 96 s
    signals = [_signal(n, c, 0) for n, c in (("d", 4), ("b", 2), ("a", 1), ("c", 3))]
    stops = signals_on_route(routing.network, route, signals)
    clock = [0.0]
    sent: list[tuple[float, str, str, dict]] = []

    async def fake_sleep(seconds: float) -> None:
        clock[0] += seconds

    async def submit(signal, command, args, reason):
        sent.append((clock[0], command, signal.rsplit(":", 1)[1], args))
        return f"cmd-{len(sent)}"

    timeline: list[tuple[str, str]] = []

    async def record(action, detail, command_id):
        timeline.append((action, command_id))

    run = PriorityRun(
        "urn:ngsi-ld:PoliceUnit:PM-1", stops, submit, record, 30.0, fake_sleep, lambda: clock[0]
    )
    asyncio.run(run.run())
    requests = [s for s in sent if s[1] == "requestPriority"]
    cancels = [s for s in sent if s[1] == "cancelPriority"]
    assert [r[2] for r in requests] == ["a", "b", "c", "d"]
    for (at, _, _, args), stop in zip(requests, stops, strict=True):
        assert at == pytest.approx(max(0.0, stop.eta_s - 30.0))
        assert args["eta_s"] == pytest.approx(min(stop.eta_s, 30.0), abs=0.1)
        assert args["class"] == "emergency" and args["approach"] == "west"
    assert [c[2] for c in cancels] == ["a", "b", "c", "d"]
    for (at, _, _, args), stop in zip(cancels, stops, strict=True):
        assert at == pytest.approx(stop.eta_s + PASS_MARGIN_S)
        request_id = next(
            f"cmd-{i + 1}"
            for i, s in enumerate(sent)
            if s[1] == "requestPriority" and s[2] == _name(stop)
        )
        assert args == {"request": request_id}
    assert [a for a, _ in timeline].count("priority requested") == 4
    assert all(cid for _, cid in timeline)


def _name(stop) -> str:
    return stop.signal.rsplit(":", 1)[1]


def _drive(routing: Routing, seconds_per_block: float | None, lead_s: float = 30.0):
    """A run along row 0 with signals at columns 1–4, and a unit that drives one block
    per ``seconds_per_block`` (None: never moves), followed by its reported position."""
    route = routing.route(world.node(0, 0), world.node(4, 0))  # 24 s per block by ETA
    stops = signals_on_route(routing.network, route, [_signal(n, n, 0) for n in (1, 2, 3, 4)])
    clock = [0.0]
    sent: list[tuple[float, str, str]] = []
    timeline: list[tuple[str, str]] = []

    async def fake_sleep(seconds: float) -> None:
        clock[0] += seconds

    async def submit(signal, command, args, reason):
        sent.append((clock[0], command, signal.rsplit(":", 1)[1]))
        return f"cmd-{len(sent)}"

    async def record(action, detail, command_id):
        timeline.append((action, detail))

    async def locate():
        blocks = 0.0 if seconds_per_block is None else min(4.0, clock[0] / seconds_per_block)
        return world.lonlat(blocks, 0)

    follow = route_progress(routing.network, route, locate, lambda: clock[0])
    run = PriorityRun(
        "urn:ngsi-ld:PoliceUnit:PM-1",
        stops,
        submit,
        record,
        lead_s,
        fake_sleep,
        lambda: clock[0],
        progress=follow,
    )
    asyncio.run(run.run())
    return stops, sent, timeline


def test_a_signal_is_released_once_the_unit_has_really_passed_it(routing: Routing):
    stops, sent, timeline = _drive(routing, 40.0)  # 40 s a block where its ETA says 24
    cancels = [(at, name) for at, command, name in sent if command == "cancelPriority"]
    assert [name for _, name in cancels] == ["1", "2", "3", "4"]
    for (at, _), stop, block in zip(cancels, stops, (1, 2, 3, 4), strict=True):
        assert at > stop.eta_s + PASS_MARGIN_S  # later than its ETA said...
        assert block * 40.0 <= at <= block * 40.0 + 5.0  # ...when it really passed
    assert all(detail.endswith("passed") for a, detail in timeline if a == "priority cancelled")


def test_a_unit_faster_than_its_eta_gets_each_green_before_it_arrives(routing: Routing):
    # 12 s a block where its ETA says 24; asked 10 s of route ahead
    stops, sent, timeline = _drive(routing, 12.0, lead_s=10.0)
    requests = {name: at for at, command, name in sent if command == "requestPriority"}
    cancels = {name: at for at, command, name in sent if command == "cancelPriority"}
    assert list(requests) == list(cancels) == ["1", "2", "3", "4"]
    for block, name in enumerate(("1", "2", "3", "4"), start=1):
        # asked ahead of the unit (by its position: the clock alone would be too late)...
        assert requests[name] < block * 12.0
        assert cancels[name] >= block * 12.0  # ...and released once it is past
    assert requests["1"] < stops[0].eta_s - 10.0  # the clock alone would wait for this
    assert not [a for a, _ in timeline if a == "priority skipped"]


def test_a_unit_that_never_comes_has_its_requests_timed_out(routing: Routing):
    stops, sent, timeline = _drive(routing, None)
    cancels = [(at, name) for at, command, name in sent if command == "cancelPriority"]
    assert [name for _, name in cancels] == ["1", "2", "3", "4"]
    for (at, _), stop in zip(cancels, stops, strict=True):
        assert at == pytest.approx(stop.eta_s + PASS_TIMEOUT_S, abs=1.5)
    assert all(detail.endswith("timed out") for a, detail in timeline if a == "priority cancelled")


def test_a_unit_parked_beside_a_later_part_of_its_route_has_not_passed_its_first_signals(
    routing: Routing,
):
    # the route goes east along row 0, north, and back west along row 1: a unit parked
    # just south of row 1 at column 0.5 lies nearer the route's last street (row 1) than
    # its first one (row 0), 200 m away; at its first reading it has passed nothing yet
    nodes = [world.node(c, 0) for c in (0, 1, 2)] + [world.node(c, 1) for c in (2, 1, 0)]
    net = routing.network
    arcs = [
        next(a for a in range(len(net.arc_from)) if net.arc_from[a] == u and net.arc_to[a] == v)
        for u, v in itertools.pairwise(nodes)
    ]
    loop = Route(
        tuple(nodes),
        tuple(arcs),
        sum(float(net.arc_seconds[a]) for a in arcs),
        0.0,
        (),
        tuple(float(net.arc_seconds[a]) for a in arcs),
    )
    clock = [0.0]

    async def locate():
        return world.lonlat(0.5, 0.8)  # 160 m north of row 0, 40 m south of row 1

    follow = route_progress(net, loop, locate, lambda: clock[0])
    assert asyncio.run(follow()) <= PACE_SLACK_S  # not 4 streets along already
    stops = signals_on_route(net, loop, [_signal(n, c, 0) for n, c in (("a", 1), ("b", 2))])
    sent: list[str] = []

    async def submit(signal, command, args, reason):
        sent.append(command)
        return f"cmd-{len(sent)}"

    async def record(action, detail, command_id):
        sent.append(action)

    async def no_sleep(seconds: float) -> None:
        raise asyncio.CancelledError  # the first round is all this test looks at

    run = PriorityRun(
        "urn:ngsi-ld:PoliceUnit:PM-1",
        stops,
        submit,
        record,
        600.0,
        no_sleep,
        lambda: clock[0],
        progress=route_progress(net, loop, locate, lambda: clock[0]),
    )
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run.run())
    assert "priority skipped" not in sent
    assert sent.count("requestPriority") == 2
