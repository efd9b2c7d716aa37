"""Scenario files and the real-time loop (against an in-memory sink)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from citypilot.twin import MemorySink, Simulator, load_scenario, parse_scenario, run_simulation
from citypilot.twin.clients import mqtt_payload, topic_for
from citypilot.twin.runner import replay_start
from citypilot.twin.scenario import ScenarioError, event_time, example_scenario, parse_duration

from .conftest import SEED, local


def test_shipped_scenario_resolves_in_any_city(small_city):
    scenario = load_scenario(example_scenario("flood_and_fire"))
    assert scenario.start is not None
    events = scenario.resolve(small_city, scenario.start.timestamp())
    assert [e.kind for e in events] == ["heavyRain", "roadAccident", "fireReport", "deviceFault"]
    assert events == sorted(events, key=lambda e: e.t)
    fire = events[2]
    assert fire.x is not None and abs(fire.x) < 2000 and abs(fire.y) < 2000


def test_event_times_accept_clock_times_offsets_and_instants():
    start = local("2025-11-20 10:00").timestamp()
    assert event_time("+01:30", start, "e") == start + 5400
    assert event_time("11:15", start, "e") == start + 4500
    assert event_time("09:00", start, "e") == start + 23 * 3600  # already past: tomorrow
    assert event_time("2025-11-20T10:00:00+01:00", start, "e") == start


@pytest.mark.parametrize(
    ("text", "seconds"), [("3h", 10800), ("1h30m", 5400), ("45m", 2700), (90, 90)]
)
def test_durations(text, seconds):
    assert parse_duration(text, "d") == seconds


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "at least one"),
        ({"event": [{"at": "08:00", "kind": "meteor"}]}, "kind must be one of"),
        ({"event": [{"kind": "heavyRain"}]}, ".at must be"),
        ({"event": [{"at": "08:00", "kind": "heavyRain", "duration": "soon"}]}, "duration"),
        ({"event": [{"at": "08:00", "kind": "deviceFault"}]}, "entity"),
    ],
)
def test_bad_scenarios_are_refused_with_the_reason(doc, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(doc)


def test_scenario_positions_must_exist_in_the_city(small_city):
    doc = {"event": [{"at": "+00:10", "kind": "fireReport", "near": "urn:ngsi-ld:Building:9999"}]}
    with pytest.raises(ScenarioError, match="no entity"):
        parse_scenario(doc).resolve(small_city, 0.0)


def test_mqtt_topic_and_payload_follow_the_adapter_contract():
    obs = {
        "id": "urn:ngsi-ld:Streetlight:000042",
        "type": "Streetlight",
        "observedAt": "2026-11-20T10:00:00.000Z",
        "attrs": {"powerState": "on"},
    }
    assert topic_for(obs) == "citypilot/Streetlight/000042/attrs"
    assert (
        mqtt_payload(obs)
        == b'{"observedAt":"2026-11-20T10:00:00.000Z","attrs":{"powerState":"on"}}'
    )


async def test_run_simulation_keeps_pace_and_stops_on_request(small_city):
    start = replay_start(speed=600.0, real_minutes=1.0)
    sim = Simulator(small_city, SEED, start, types={"Bus", "Tram", "TrafficSignal"})
    sink = MemorySink()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(1.5, stop.set)
    stats = await run_simulation(sim, sink, speed=600.0, stop_event=stop, tick=0.1)
    assert stats.real_seconds >= 1.4  # ran until asked to stop (the call returned: it stopped)
    assert 0 < stats.sim_seconds <= 600.0 * stats.real_seconds + 60  # never ahead of its speed
    assert sink.count == stats.published > 0
    assert stats.rate > 0


async def test_simulated_time_never_overtakes_the_wall_clock(small_city):
    start = replay_start(speed=1.0, real_minutes=0.0) - timedelta(seconds=30)
    sim = Simulator(small_city, SEED, start, types={"Bus"})
    stats = await run_simulation(sim, MemorySink(), speed=1000.0, duration=0.5, max_ahead_s=5.0)
    assert stats.sim_seconds <= 30 + 5 + 2


def test_offsets_place_events_before_and_after_the_start():
    assert event_time("-02:30", 10_000.0, "e") == 10_000.0 - 9000
    assert event_time("+00:03", 10_000.0, "e") == 10_180.0
    with pytest.raises(ScenarioError, match="-HH:MM"):
        event_time("-2h", 0.0, "e")


def test_shipped_scenarios_load_by_name_and_fit_a_generated_city():
    from citypilot.twin import generate_city
    from citypilot.twin.scenario import shipped_scenarios

    assert {"flood", "fire"} <= set(shipped_scenarios())
    city = generate_city(7, 0.05)
    for name in shipped_scenarios():
        events = load_scenario(name).resolve(city, 1_800_000_000.0)
        assert events, name
    flood = load_scenario("flood").resolve(city, 1_800_000_000.0)
    assert flood[0].kind == "heavyRain" and flood[0].t == 1_800_000_000.0 - 3 * 3600
    with pytest.raises(ScenarioError):
        load_scenario("no-such-scenario")
