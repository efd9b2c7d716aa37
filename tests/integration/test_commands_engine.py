"""The command service with the simulator as the devices: lifecycle, bad input, restart.

Real SQLite store and broker; the simulated devices answer through the in-process
channel and confirm through their own reports, ingested like any gateway's. Timers
run on an injected clock.
"""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from citypilot.engine.commands import QUEUED, DeviceAnswer
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.twin import City, generate_city
from tests.integration.command_rig import Rig, loaded_store

SIMULATED = ("Streetlight", "AccessPoint", "Building", "Bus", "Camera")


@pytest.fixture(scope="module")
def town() -> City:
    """A small town (scale 0.05), generated once."""
    return generate_city(7, 0.05)


@pytest.fixture(scope="module")
def town_file(town: City, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The town's entities of the command types in a store file, made once."""
    return asyncio.run(loaded_store(town, tmp_path_factory.mktemp("town")))


@pytest.fixture
async def rig(town: City, town_file: Path, tmp_path: Path) -> AsyncIterator[Rig]:
    """The town loaded; its traffic signals are in the store but not simulated."""
    shutil.copy(town_file, tmp_path / "city.db")
    rig = Rig(town, tmp_path, SIMULATED)
    await rig.open()
    yield rig
    await rig.close()


def ok_lamp(rig: Rig) -> str:
    """A streetlight whose lamp works."""
    for doc in rig.city.of_type("Streetlight"):
        if doc["status"]["value"] == "ok":
            return doc["id"]
    raise AssertionError("no working lamp")


async def reported(rig: Rig, entity_id: str, attr: str):
    """What the store holds as the entity's reported value."""
    return (await rig.store.get_entity(entity_id)).attrs[attr].value


async def test_dimming_is_confirmed_by_the_lamps_next_report_and_power_falls(rig: Rig):
    lamp = ok_lamp(rig)
    full = await rig.submit(lamp, "setDimming", {"level": 100})
    assert full.state == "acknowledged"  # the device answered; no report yet
    await rig.report()
    assert (await rig.service.get(full.id)).state == "confirmed"
    power_full = await reported(rig, lamp, "powerConsumption")

    dim = await rig.submit(lamp, "setDimming", {"level": 20})
    await rig.report()
    dim = await rig.service.get(dim.id)
    assert dim.state == "confirmed"
    assert dim.before == {"illuminanceLevel": 1.0}
    power_dim = await reported(rig, lamp, "powerConsumption")
    assert power_dim < 0.5 * power_full
    states = [t.state for t in await rig.service.transitions(dim.id)]
    assert states == ["pending", "sent", "acknowledged", "confirmed"]
    assert [e["state"] for e in rig.events if e["id"] == dim.id] == states


async def test_a_switched_off_lamp_stays_off_at_night(rig: Rig):
    lamp = ok_lamp(rig)
    cmd = await rig.submit(lamp, "switch", {"state": "off"})
    await rig.report()
    assert (await rig.service.get(cmd.id)).state == "confirmed"
    await rig.report(24 * 3600)  # a whole day and night of reports
    assert await reported(rig, lamp, "illuminanceLevel") == 0
    assert await reported(rig, lamp, "powerConsumption") < 1.0
    assert await reported(rig, lamp, "powerState") == "off"


async def test_a_defective_lamp_rejects_with_its_reason(rig: Rig):
    lamp = ok_lamp(rig)
    rig.sim.device(lamp).fault = "defectiveLamp"
    cmd = await rig.submit(lamp, "switch", {"state": "on"})
    cmd = await rig.service.get(cmd.id)
    assert cmd.state == "rejected"
    assert cmd.answer == "the lamp is defectiveLamp"


async def test_a_lamp_that_keeps_reporting_dark_times_out_as_diverged(rig: Rig):
    lamp = ok_lamp(rig)
    rig.sim.device(lamp).cabinet.fault_until = math.inf  # accepts, but has no power
    cmd = await rig.submit(lamp, "setDimming", {"level": 60})
    await rig.report()
    assert (await rig.service.get(cmd.id)).state == "acknowledged"
    await rig.later(119)
    assert (await rig.service.get(cmd.id)).state == "acknowledged"
    await rig.later(2)
    cmd = await rig.service.get(cmd.id)
    assert cmd.state == "timed_out"
    assert cmd.diverged and cmd.last_reported == {"illuminanceLevel": 0.0}
    view = await rig.service.desired(lamp)
    assert view["desired"]["illuminanceLevel"]["value"] == 0.6
    assert view["reported"]["illuminanceLevel"]["value"] == 0.0
    assert view["diverged"] == ["illuminanceLevel"]


async def test_a_newer_command_supersedes_the_older_one(rig: Rig):
    lamp = ok_lamp(rig)
    first = await rig.submit(lamp, "setDimming", {"level": 30})
    second = await rig.submit(lamp, "switch", {"state": "off"})
    await rig.report()
    first = await rig.service.get(first.id)
    assert first.state == "superseded" and first.superseded_by == second.id
    assert (await rig.service.get(second.id)).state == "confirmed"
    assert (await rig.service.desired(lamp))["desired"]["illuminanceLevel"]["value"] == 0.0


async def test_the_same_idempotency_key_makes_one_command(rig: Rig):
    lamp = ok_lamp(rig)
    one = await rig.submit(lamp, "setDimming", {"level": 50}, idempotency_key="k-1")
    two = await rig.submit(lamp, "setDimming", {"level": 50}, idempotency_key="k-1")
    assert one.id == two.id
    found, total = await rig.service.list(entity_id=lamp)
    assert total == 1 and found[0].id == one.id


@pytest.mark.parametrize(
    ("type_name", "command", "args", "field"),
    [
        ("Streetlight", "explode", {}, "command"),
        ("Streetlight", "setDimming", {"level": 150}, "args.level"),
        ("Streetlight", "setDimming", {}, "args.level"),
        ("Streetlight", "setDimming", {"level": 50, "colour": "red"}, "args.colour"),
        ("Streetlight", "switch", {"state": "dim"}, "args.state"),
        ("AccessPoint", "switch", {"state": "off"}, "command"),
        ("AccessPoint", "allowGroups", {"groups": ["ok", 3]}, "args.groups[1]"),
        ("Streetlight", "setDimming", [50], "args"),
    ],
)
async def test_bad_commands_are_refused_naming_the_field(rig, type_name, command, args, field):
    with pytest.raises(BadRequestData) as refused:
        await rig.submit(rig.first(type_name), command, args)
    assert refused.value.field == field
    assert (await rig.service.list())[1] == 0  # nothing half-made


async def test_a_command_for_a_missing_entity_is_not_found(rig: Rig):
    with pytest.raises(ResourceNotFound):
        await rig.submit("urn:ngsi-ld:Streetlight:nope", "switch", {"state": "on"})


async def test_unreachable_devices_fail_after_bounded_retries(rig: Rig):
    signal = rig.first("TrafficSignal")  # in the store, but no channel reaches it
    cmd = await rig.submit(signal, "setPlan", {"plan": "event"})
    assert cmd.attempts == 1 and cmd.state == "pending"
    await rig.later(10)
    assert (await rig.service.get(cmd.id)).attempts == 2
    await rig.later(20)
    cmd = await rig.service.get(cmd.id)
    assert cmd.state == "failed" and cmd.attempts == 3


async def test_a_command_not_delivered_before_its_deadline_expires(rig: Rig):
    signal = rig.first("TrafficSignal")
    cmd = await rig.submit(signal, "setPlan", {"plan": "event"}, deadline=rig.clock.now + 5)
    await rig.later(6)
    assert (await rig.service.get(cmd.id)).state == "expired"


async def test_an_unanswered_command_is_sent_again_then_times_out(rig: Rig):
    lamp = ok_lamp(rig)
    rig.service.channels[0].deliver = _silently  # the device never answers
    cmd = await rig.submit(lamp, "switch", {"state": "off"})
    await rig.later(10)
    await rig.later(10)
    cmd = await rig.service.get(cmd.id)
    assert cmd.state == "sent" and cmd.attempts == 3
    await rig.later(101)
    assert (await rig.service.get(cmd.id)).state == "timed_out"


async def _silently(command):
    return None


async def _queued(command):
    return QUEUED  # a relay (the ingest workers on NATS) sends it later


async def test_a_queued_command_is_pending_until_its_relay_reports_the_send(rig: Rig):
    lamp = ok_lamp(rig)
    rig.service.channels[0].deliver = _queued
    cmd = await rig.submit(lamp, "switch", {"state": "off"})
    await rig.later(200)  # past retry and timeout: nothing was sent, so neither runs
    cmd = await rig.service.get(cmd.id)
    assert cmd.state == "pending" and cmd.attempts == 1 and cmd.channel is None
    await rig.service.stop()
    rig.service = rig.new_service()  # a new engine leader takes it up...
    rig.service.channels[0].deliver = _queued
    await rig.service.start(run_timers=False)
    await rig.service.settle()
    assert (await rig.service.get(cmd.id)).attempts == 1  # ...without queueing it again
    await rig.service.sent(cmd.id, channel="mqtt", source="channel:mqtt")
    cmd = await rig.service.get(cmd.id)
    assert cmd.state == "sent" and cmd.channel == "mqtt"
    assert cmd.timeout_at == rig.clock.now + 120  # the timeout runs from the send
    await rig.service.acknowledge(cmd.id, DeviceAnswer(True), source="mqtt:x")
    assert (await rig.service.get(cmd.id)).state == "acknowledged"
    transitions = await rig.service.transitions(cmd.id)
    assert [(t.state, t.detail.get("queued")) for t in transitions] == [
        ("pending", None),
        ("pending", "simulator"),  # the channel that queued it
        ("sent", None),
        ("acknowledged", None),
    ]


async def test_a_queued_command_no_relay_sends_expires_at_its_deadline(rig: Rig):
    rig.service.channels[0].deliver = _queued
    cmd = await rig.submit(ok_lamp(rig), "switch", {"state": "off"}, deadline=rig.clock.now + 30)
    await rig.later(31)
    assert (await rig.service.get(cmd.id)).state == "expired"
    assert await rig.service.sent(cmd.id, channel="mqtt", source="channel:mqtt") is None


async def test_an_ack_for_a_command_never_sent_is_a_dead_letter(rig: Rig):
    answer = DeviceAnswer(True)
    assert await rig.service.acknowledge("cmd-nope", answer, source="mqtt:x") is None
    letters, total = await rig.store.list_dead_letters(10, 0)
    assert total == 1 and "never sent" in letters[0].reason and letters[0].source == "mqtt:x"


async def test_commands_survive_a_restart(rig: Rig):
    signal = rig.first("TrafficSignal")
    waiting = await rig.submit(signal, "setPlan", {"plan": "event"})
    late = await rig.submit(
        rig.city.of_type("TrafficSignal")[1]["id"],
        "setPlan",
        {"plan": "peak"},
        deadline=rig.clock.now + 30,
    )
    await rig.service.stop()
    rig.clock.advance(60)  # the server was down a minute
    rig.service = rig.new_service()
    await rig.service.start(run_timers=False)
    await rig.service.settle()
    assert (await rig.service.get(late.id)).state == "expired"
    again = await rig.service.get(waiting.id)
    assert again.state == "pending" and again.attempts == 2  # tried again at start


async def test_a_disabled_reader_admits_only_the_allowed_groups(
    town: City, town_file: Path, tmp_path: Path
):
    shutil.copy(town_file, tmp_path / "city.db")
    rig = Rig(town, tmp_path, ("AccessPoint",))  # only the doors: two days pass quickly
    await rig.open()
    hospital = "urn:ngsi-ld:Building:0015"  # staff around the clock
    door = next(
        d["id"] for d in rig.city.of_type("AccessPoint") if d["refBuilding"]["object"] == hospital
    )
    allow = await rig.submit(door, "allowGroups", {"groups": ["security"]})
    off = await rig.submit(door, "disable")
    await rig.report()
    assert (await rig.service.get(allow.id)).state == "confirmed"
    assert (await rig.service.get(off.id)).state == "confirmed"
    events = []
    for _ in range(6):
        observations = await rig.report(12 * 3600)
        events += [
            o["attrs"]["lastAccess"]
            for o in observations
            if o["id"] == door and "lastAccess" in o["attrs"]
        ]
    granted = {e["group"] for e in events if e["result"] == "granted"}
    denied = {e["group"] for e in events if e["result"] == "denied"}
    assert granted <= {"security"} and "staff" in denied
    await rig.close()
