"""The simulated devices obey commands: what they answer and what they report next."""

from __future__ import annotations

from datetime import timedelta

from citypilot.twin import Simulator
from citypilot.twin.device_commands import carry_out
from tests.unit.twin.conftest import SEED, local


def reports(sim: Simulator, entity_id: str, seconds: float) -> list[dict]:
    """What one device reports over the next ``seconds`` of simulated time."""
    return [
        o["attrs"] for o in sim.run_until(sim.now + seconds, step_s=1.0) if o["id"] == entity_id
    ]


def test_a_signal_serves_the_priority_approach_then_returns_to_its_mode(small_city):
    start = local("2025-11-20 08:00")
    sim = Simulator(small_city, SEED, start, types=("TrafficSignal",))
    sim.step(start)
    signal = small_city.of_type("TrafficSignal")[0]["id"]
    before = sim.device(signal).mode
    args = {
        "approach": "east",
        "vehicle": "urn:ngsi-ld:Bus:1",
        "class": "bus",
        "eta_s": 10,
        "duration_s": 20,
    }
    accepted, reason, _ = carry_out(sim, signal, "requestPriority", args, "cmd-1")
    assert accepted and reason is None
    first = reports(sim, signal, 1)[0]
    assert first["priorityApproach"] == "east" and first["phase"] == "green"
    assert first["controlMode"] == "priority" and first["priorityRequest"] == "cmd-1"
    during = reports(sim, signal, 27)  # green held for eta_s + duration_s = 30 s
    assert all(r.get("phase", "green") == "green" for r in during)
    after = reports(sim, signal, 15)
    ended = [r for r in after if r.get("priorityApproach") == "none"]
    assert ended and ended[0]["controlMode"] == before
    assert any(r.get("phase") == "amber" for r in after)
    assert carry_out(sim, signal, "cancelPriority", {"request": "cmd-9"}, "cmd-2")[
        0
    ]  # nothing in force any more: cancelling is harmless


def test_buses_show_a_message_and_cameras_move_to_a_preset(small_city):
    start = local("2025-11-20 08:00")
    sim = Simulator(small_city, SEED, start, types=("Bus", "Camera"))
    sim.step(start + timedelta(minutes=5))
    bus = next(
        d.entity_id for d in sim.devices if d.entity_type == "Bus" and d.status == "inService"
    )
    accepted, _, _ = carry_out(sim, bus, "sendMessage", {"text": "Detour via Rue Neuve"}, "c1")
    assert accepted
    assert any(r.get("displayMessage") == "Detour via Rue Neuve" for r in reports(sim, bus, 1))
    camera = small_city.of_type("Camera")[0]["id"]
    assert carry_out(sim, camera, "preset", {"n": 3}, "c2")[0]
    assert any(r.get("preset") == 3 for r in reports(sim, camera, 1))
    refused = carry_out(sim, camera, "preset", {"n": 999}, "c3")
    assert refused[:2] == (False, "n must be a number in 0..255")
    assert (
        carry_out(sim, camera, "explode", {}, "c4")[1]
        == "a camera does not know the command 'explode'"
    )


def test_a_closed_car_park_lets_no_car_in_until_it_opens_again(small_city):
    start = local("2025-11-20 07:00")  # the morning fills the car parks
    sim = Simulator(small_city, SEED, start, types=("OffStreetParking",))
    park = small_city.of_type("OffStreetParking")[0]["id"]
    first = reports(sim, park, 1)[0]
    assert first["status"] == "open"
    assert carry_out(sim, park, "close", {}, "c1")[:2] == (True, None)
    closed = reports(sim, park, 3 * 3600)  # 07:00 to 10:00, closed all along
    assert closed[0]["status"] == "closed" and all(r["status"] == "closed" for r in closed)
    free = [r["availableSpotNumber"] for r in closed]
    assert free == sorted(free) and free[-1] > free[0]  # cars leave, none come in
    assert carry_out(sim, park, "open", {}, "c2")[0]
    opened = reports(sim, park, 3600)
    assert opened[0]["status"] == "open"
    assert opened[-1]["availableSpotNumber"] < free[-1]  # the late morning fills it again
    assert (
        carry_out(sim, park, "flood", {}, "c3")[1] == "a car park does not know the command 'flood'"
    )
