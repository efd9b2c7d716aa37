"""The live simulator: valid observations, realistic behaviour, deterministic output."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import timedelta

import pytest

from citypilot.model.observation import parse_observation
from citypilot.twin import Simulator, load_scenario, parse_scenario
from citypilot.twin.scenario import example_scenario

from .conftest import SEED, local

WEEKDAY_MORNING = local("2025-11-20 07:45")  # a Thursday in the past: observations are not "future"


def _latest(observations) -> dict[str, dict]:
    state: dict[str, dict] = {}
    for o in observations:
        state.setdefault(o["id"], {}).update(o["attrs"])
    return state


@pytest.fixture(scope="module")
def morning(small_city):
    """Ten simulated minutes of a weekday morning peak, from a fresh simulator."""
    sim = Simulator(small_city, SEED, WEEKDAY_MORNING)
    return sim, sim.run_until(WEEKDAY_MORNING + timedelta(minutes=10), step_s=30)


def test_every_observation_passes_the_platform_validation(morning, registry):
    _, observations = morning
    latest = time.time() + 300
    for k, obs in enumerate(observations):
        parse_observation(obs, registry, f"[{k}]", latest_allowed=latest)


def test_every_device_reports_its_state_at_start(small_city, morning):
    _, observations = morning
    simulated = {o["id"] for o in observations}
    devices = {d["id"] for d in small_city.entities if d["type"] not in ("Municipality", "Zone")}
    assert devices <= simulated


def test_observations_come_in_time_order_and_within_the_window(morning):
    _, observations = morning
    instants = [o["observedAt"] for o in observations]
    assert instants == sorted(instants)
    assert instants[0] >= "2025-11-20T06:45:00"
    assert instants[-1] <= "2025-11-20T06:55:00.000Z"


def test_vehicles_move_along_their_routes(small_city, morning):
    _, observations = morning
    stops = set(small_city.transit.stops)
    moving = [
        o for o in observations if o["type"] in ("Bus", "Tram") and o["attrs"].get("speed", 0) > 5
    ]
    assert moving
    for o in moving:
        assert o["attrs"]["nextStop"] in stops
        assert o["attrs"]["status"] in ("inService", "breakdown")
    per_vehicle = defaultdict(list)
    for o in observations:
        if o["type"] == "Bus":
            per_vehicle[o["id"]].append(o["observedAt"])
    reports = [len(v) for v in per_vehicle.values()]
    assert max(reports) >= 100  # every few seconds while running: 120 in 10 minutes


def test_units_patrol_or_wait_at_base(morning):
    _, observations = morning
    state = _latest(o for o in observations if o["type"] in ("PoliceUnit", "TechnicalVehicle"))
    statuses = Counter(s["status"] for s in state.values())
    assert statuses
    assert set(statuses) <= {"available", "patrolling", "offDuty", "atBase", "onRoute", "working"}


def test_same_seed_and_start_give_the_same_observations(small_city):
    end = WEEKDAY_MORNING + timedelta(minutes=3)
    a = Simulator(small_city, SEED, WEEKDAY_MORNING).run_until(end, step_s=60)
    b = Simulator(small_city, SEED, WEEKDAY_MORNING).run_until(end, step_s=7)
    assert a == b  # also independent of how time is sliced into steps


def test_streetlights_are_on_at_night_and_off_at_noon(small_city):
    sim = Simulator(small_city, SEED, local("2025-11-20 22:00"), types={"Streetlight"})
    night = _latest(sim.step(local("2025-11-20 22:00")))
    lights = [v for k, v in night.items() if ":Streetlight:" in k]
    assert sum(v["powerState"] == "on" for v in lights) > 0.95 * len(lights)
    assert all(v["powerConsumption"] > 10 for v in lights if v["powerState"] == "on")
    late = _latest(sim.run_until(local("2025-11-21 00:30"), step_s=300))
    dimmed = [v for k, v in late.items() if ":Streetlight:" in k and v.get("powerState") == "low"]
    assert len(dimmed) > 0.9 * len(lights)  # the night dimming profile
    noon = Simulator(small_city, SEED, local("2025-11-20 12:00"), types={"Streetlight"})
    day = _latest(noon.step(local("2025-11-20 12:00")))
    assert all(v["powerState"] == "off" for k, v in day.items() if ":Streetlight:" in k)


def test_lights_switch_on_at_dusk_for_the_city_latitude(small_city):
    sim = Simulator(small_city, SEED, local("2025-06-21 21:00"), types={"Streetlight"})
    before = _latest(sim.step(local("2025-06-21 21:00")))
    assert all(v["powerState"] == "off" for k, v in before.items() if ":Streetlight:" in k)
    after = _latest(sim.run_until(local("2025-06-21 22:10"), step_s=120))
    lit = [
        v
        for k, v in after.items()
        if ":Streetlight:" in k and v["powerState"] in ("on", "bootingUp")
    ]
    assert len(lit) > 0.95 * len(small_city.of_type("Streetlight"))


def test_traffic_counts_peak_in_the_morning(small_city):
    def counts(start):
        sim = Simulator(small_city, SEED, start, snapshot=False, types={"TrafficSignal"})
        obs = sim.run_until(start + timedelta(minutes=20), step_s=60)
        return sum(o["attrs"].get("vehicleCount", 0) for o in obs if o["type"] == "TrafficSignal")

    assert counts(local("2025-11-20 08:00")) > 3 * counts(local("2025-11-20 03:00"))


def test_badges_and_plates_are_pseudonymised(small_city):
    sim = Simulator(small_city, SEED, local("2025-11-20 07:30"), types={"AccessPoint", "Camera"})
    obs = sim.run_until(local("2025-11-20 09:30"), step_s=300)
    badges = [o["attrs"]["lastAccess"]["badge"] for o in obs if "lastAccess" in o["attrs"]]
    plates = [
        o["attrs"]["lastEvent"]["plate"] for o in obs if "plate" in o["attrs"].get("lastEvent", {})
    ]
    assert badges and plates
    assert all(b.startswith("badge:") and len(b) == 22 for b in badges)
    assert all(p.startswith("plate:") and "-" not in p for p in plates)


def test_heavy_rain_scenario_raises_the_river_past_its_alert_level(small_city):
    scenario = load_scenario(example_scenario("flood_and_fire"))
    start = local("2025-11-20 06:00")
    water = {"WaterLevelSensor"}
    sim = Simulator(small_city, SEED, start, scenario=scenario, types=water)
    calm = Simulator(small_city, SEED, start, types=water)
    end = local("2025-11-20 12:00")
    wet = [o for o in sim.run_until(end, step_s=600) if o["type"] == "WaterLevelSensor"]
    dry = [o for o in calm.run_until(end, step_s=600) if o["type"] == "WaterLevelSensor"]
    gauges = {d["id"]: d for d in small_city.of_type("WaterLevelSensor")}
    river = [k for k, d in gauges.items() if d["description"]["value"] == "River gauge"]
    peak_wet = max(o["attrs"]["waterLevel"] for o in wet if o["id"] in river)
    peak_dry = max(o["attrs"]["waterLevel"] for o in dry if o["id"] in river)
    alert = min(gauges[k]["alertLevel"]["value"] for k in river)
    assert peak_wet > alert > peak_dry
    assert max(o["attrs"]["rainfall"] for o in wet) >= 20.0


def test_accident_and_fire_show_on_cameras_and_signals(small_city):
    doc = {
        "name": "test",
        "event": [
            {
                "at": "+00:10",
                "kind": "roadAccident",
                "near": "centre",
                "radius": 800,
                "severity": 0.9,
                "duration": "1h",
            },
            {
                "at": "+00:20",
                "kind": "fireReport",
                "near": "urn:ngsi-ld:Building:0001",
                "crowd": 200,
                "duration": "1h",
            },
        ],
    }
    start = local("2025-11-20 08:00")
    kinds = {"TrafficSignal", "Camera"}
    with_events = Simulator(small_city, SEED, start, scenario=parse_scenario(doc), types=kinds)
    without = Simulator(small_city, SEED, start, types=kinds)
    end = start + timedelta(minutes=40)
    hot = with_events.run_until(end, step_s=60)
    cold = without.run_until(end, step_s=60)
    kinds = Counter(o["attrs"]["lastEvent"]["kind"] for o in hot if "lastEvent" in o["attrs"])
    assert kinds["roadAccident"] >= 1 and kinds["crowdGathering"] >= 1

    def queue(obs):
        return sum(
            o["attrs"].get("queueLength", 0) for o in obs if o["observedAt"] > "2025-11-20T07:15"
        )

    assert queue(hot) > 1.2 * queue(cold)


def test_device_fault_from_a_scenario_and_its_recovery(small_city):
    doc = {
        "event": [
            {
                "at": "+00:05",
                "kind": "deviceFault",
                "entity": "urn:ngsi-ld:Camera:0001",
                "status": "fault",
                "duration": "10m",
            }
        ]
    }
    start = local("2025-11-20 10:00")
    sim = Simulator(small_city, SEED, start, scenario=parse_scenario(doc), types={"Camera"})
    obs = [
        o
        for o in sim.run_until(start + timedelta(minutes=30), step_s=60)
        if o["id"] == "urn:ngsi-ld:Camera:0001" and "status" in o["attrs"]
    ]
    statuses = [o["attrs"]["status"] for o in obs]
    assert "fault" in statuses
    assert statuses[-1] == "online"


def test_commands_can_hook_into_device_state(small_city):
    start = local("2025-11-20 12:00")
    sim = Simulator(small_city, SEED, start)
    sim.step(start)
    light = sim.device("urn:ngsi-ld:Streetlight:000001")
    light.override_level = 1.0  # what a later "switchOn" command will do
    light.override_until = start.timestamp() + 3600
    sim.wake(light.entity_id)
    obs = [o for o in sim.step(start + timedelta(seconds=1)) if o["id"] == light.entity_id]
    assert obs and obs[0]["attrs"]["powerState"] == "on"
