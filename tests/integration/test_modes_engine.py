"""City modes with the simulator as the devices: enter, confirm, leave, restore, restart.

Real SQLite store and broker; the simulated badge readers, signals and buses obey
the mode's commands and confirm them through their own reports. Leaving must bring
every device back to what it reported before the mode — except a device someone
else commanded while the mode was on, which keeps their decision.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from citypilot.engine.alarms import AlarmService
from citypilot.engine.mode_model import load_modes
from citypilot.engine.modes import ModeService
from citypilot.engine.rules import RuleEngine
from citypilot.model.errors import BadRequestData, Conflict, ResourceNotFound
from citypilot.ops.closures import ClosureBook
from citypilot.ops.routing import open_routing
from citypilot.store.modes import mode_log_for
from citypilot.twin import City, generate_city
from citypilot.twin.export import write_graph, write_layers
from tests.integration.command_rig import COMMAND_TYPES, Rig, loaded_store

SIMULATED = ("AccessPoint", "Building", "TrafficSignal", "Bus", "OffStreetParking")
PUBLIC = {"townHall", "school", "library", "sportsCentre", "museum", "office", "other"}


@pytest.fixture(scope="module")
def town() -> City:
    """A small town (scale 0.05), generated once."""
    return generate_city(7, 0.05)


@pytest.fixture(scope="module")
def town_dir(town: City, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The town's store (command types, municipalities, zones) and map layers, made once."""
    folder = tmp_path_factory.mktemp("town")
    types = (*COMMAND_TYPES, "OffStreetParking", "Municipality", "Zone")
    asyncio.run(loaded_store(town, folder, types))
    write_layers(town, folder / "layers")
    write_graph(town, folder / "graph")
    return folder


class ModeRig(Rig):
    """The command rig with a mode service on top."""

    def __init__(self, city: City, data: Path) -> None:
        super().__init__(city, data, SIMULATED)
        self.data = data
        self.modes = self.new_modes()

    def new_modes(self) -> ModeService:
        """A mode service on this rig's store, commands and clock."""
        return ModeService(
            self.broker,
            self.service,
            mode_log_for(self.store),
            load_modes(self.broker.registry),
            layers=self.data / "layers",
            clock=self.clock,
        )

    async def open(self) -> None:
        """Open the store, start the services, ingest the devices' first reports."""
        await super().open()
        await self.modes.start()

    async def settle(self, rounds: int = 4) -> None:
        """Let the devices report a few times, so commands confirm."""
        for _ in range(rounds):
            await self.report(2.0)


@pytest.fixture
async def rig(town: City, town_dir: Path, tmp_path: Path) -> AsyncIterator[ModeRig]:
    """The town loaded, its devices simulated, the mode service started."""
    shutil.copy(town_dir / "city.db", tmp_path / "city.db")
    shutil.copytree(town_dir / "layers", tmp_path / "layers")
    shutil.copytree(town_dir / "graph", tmp_path / "graph")
    rig = ModeRig(town, tmp_path)
    await rig.open()
    yield rig
    await rig.modes.stop()
    await rig.close()


def public_readers(city: City) -> list[str]:
    """Badge readers at the buildings the health-emergency mode closes."""
    public = {b["id"] for b in city.of_type("Building") if b["category"]["value"] in PUBLIC}
    return [d["id"] for d in city.of_type("AccessPoint") if d["refBuilding"]["object"] in public]


def other_readers(city: City) -> list[str]:
    """Badge readers at hospitals, police and fire stations and depots (they stay open)."""
    chosen = set(public_readers(city))
    return [d["id"] for d in city.of_type("AccessPoint") if d["id"] not in chosen]


async def reported(rig: Rig, entity_id: str) -> dict[str, Any]:
    """What the store holds as the entity's reported values."""
    found = await rig.store.get_entity(entity_id)
    return {k: v.value for k, v in found.attrs.items()}


async def test_health_emergency_commands_every_public_reader_and_the_readers_obey(rig: ModeRig):
    on = await rig.modes.enter("health-emergency", None, "epidemic", "alice")
    await rig.settle()
    assert rig.modes.level() == 4
    view = rig.modes.active()[0]
    steps = {s["id"]: s for s in view["steps"]}
    readers = public_readers(rig.city)
    assert steps["badges-off"]["targets"] == steps["keep-access"]["targets"] == len(readers)
    assert steps["bus-priority"]["targets"] > 0  # signals on bus routes
    assert view["progress"]["underWay"] == 0, view["progress"]
    assert view["progress"]["confirmed"] == view["progress"]["total"] > 2 * len(readers)
    for door in readers:
        now = await reported(rig, door)
        assert now["badgesEnabled"] is False and now["allowedGroups"] == ["security", "management"]
    for door in other_readers(rig.city):
        assert (await reported(rig, door))["badgesEnabled"] is True
    assert on["enteredBy"] == "alice" and on["state"] == "active"
    detail = await rig.modes.last("health-emergency")
    signal = next(d for d in detail["devices"] if d["step"] == "bus-priority")
    assert signal["refs"]["approach"] in ("north", "east", "south", "west")
    assert (await reported(rig, signal["entity"]))["priorityApproach"] == signal["refs"]["approach"]


async def test_bus_priority_is_renewed_while_the_mode_lasts_and_cancelled_on_leaving(
    rig: ModeRig,
):
    await rig.modes.enter("health-emergency", None, "epidemic", "alice")
    await rig.settle()
    first = {
        d["entity"]: d["command"]
        for d in (await rig.modes.last("health-emergency"))["devices"]
        if d["step"] == "bus-priority"
    }
    assert await rig.modes.renew() == 0  # not due yet
    await rig.report(240)  # the signals' time: the 300 s requests have not lapsed yet
    rig.clock.advance(250)  # the mode's time: past renewEvery (240 s)
    assert await rig.modes.renew() == len(first)
    await rig.settle()
    await rig.report(160)  # over 400 s since entry: the first requests alone have lapsed
    devices = [
        d
        for d in (await rig.modes.last("health-emergency"))["devices"]
        if d["step"] == "bus-priority"
    ]
    for d in devices:
        assert d["renewals"] == 1 and d["command"] != first[d["entity"]]
        assert (await reported(rig, d["entity"]))["priorityApproach"] == d["refs"]["approach"]
    assert rig.modes.active()[0]["progress"]["underWay"] == 0
    await rig.modes.leave("health-emergency", "over", "bob")
    await rig.settle()
    for d in devices:  # the renewed request is the one cancelled
        assert (await reported(rig, d["entity"]))["priorityApproach"] == "none"


async def test_leaving_restores_each_device_but_keeps_what_an_operator_changed(rig: ModeRig):
    readers = public_readers(rig.city)
    closed_before, changed_during = readers[0], readers[1]
    await rig.submit(closed_before, "disable")  # an operator closed this door before the mode
    await rig.settle()
    await rig.modes.enter("health-emergency", None, "epidemic", "alice")
    await rig.settle()
    await rig.submit(changed_during, "allowGroups", {"groups": ["maintenance"]})
    await rig.settle()
    left = await rig.modes.leave("health-emergency", "over", "bob")
    assert left["state"] == "left" and left["leftBy"] == "bob"
    await rig.settle()
    assert rig.modes.level() == 1 and rig.modes.active() == []
    detail = await rig.modes.last("health-emergency")
    restoring = detail["restore"]["progress"]
    assert restoring["underWay"] == 0 and restoring["confirmed"] == restoring["total"] > 0
    for door in readers[2:]:
        now = await reported(rig, door)
        assert now["badgesEnabled"] is True and now["allowedGroups"] == [], door
    assert (await reported(rig, closed_before))["badgesEnabled"] is False  # as before the mode
    changed = await reported(rig, changed_during)
    assert changed["allowedGroups"] == ["maintenance"]  # the operator's later choice stands
    assert changed["badgesEnabled"] is True  # the property the operator did not touch returns
    kept = [
        d for d in detail["devices"] if d["entity"] == changed_during and d["step"] == "keep-access"
    ]
    assert kept[0]["restore"]["outcome"] == "kept" and "operator" in kept[0]["restore"]["reason"]
    for bus in [d for d in detail["devices"] if d["step"] == "bus-message"]:
        assert (await reported(rig, bus["entity"])).get("displayMessage", "") == ""


async def test_a_municipality_scope_commands_only_its_devices(rig: ModeRig):
    muni = rig.city.of_type("Municipality")[1]["id"]
    await rig.modes.enter(
        "health-emergency", {"kind": "municipality", "municipality": muni}, "local", "alice"
    )
    detail = await rig.modes.last("health-emergency")
    assert detail["devices"]
    for d in detail["devices"]:
        assert rig.city.entity(d["entity"])["refMunicipality"]["object"] == muni


async def test_bad_input_is_refused_with_nothing_done(rig: ModeRig):
    far = {"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0]]]}
    with pytest.raises(ResourceNotFound):
        await rig.modes.enter("curfew", None, "x", "alice")
    with pytest.raises(BadRequestData) as empty:
        await rig.modes.enter("health-emergency", {"kind": "zone", "geometry": far}, "x", "alice")
    assert empty.value.field == "scope"
    with pytest.raises(BadRequestData) as muni:
        await rig.modes.enter(
            "health-emergency", {"kind": "municipality", "municipality": "nowhere"}, "x", "alice"
        )
    assert muni.value.field == "scope.municipality"
    with pytest.raises(BadRequestData) as reason:
        await rig.modes.enter("health-emergency", None, "  ", "alice")
    assert reason.value.field == "reason"
    with pytest.raises(Conflict):
        await rig.modes.leave("health-emergency", "not on", "alice")
    _, total = await rig.service.list()
    assert total == 0 and await rig.modes.history(10) == []  # nothing was sent or kept
    await rig.modes.enter("health-emergency", None, "epidemic", "alice")
    _, sent = await rig.service.list()
    with pytest.raises(Conflict):
        await rig.modes.enter("health-emergency", None, "again", "alice")
    assert (await rig.service.list())[1] == sent


async def test_an_active_mode_survives_a_restart_and_can_be_left_after_it(rig: ModeRig):
    await rig.modes.enter("health-emergency", None, "epidemic", "alice")
    await rig.settle()
    await rig.modes.stop()
    await rig.service.stop()
    rig.service = rig.new_service()
    await rig.service.start(run_timers=False)
    rig.modes = rig.new_modes()
    await rig.modes.start()
    assert rig.modes.level() == 4
    view = rig.modes.active()[0]
    assert view["enteredBy"] == "alice"
    assert view["progress"]["confirmed"] == view["progress"]["total"] > 0
    await rig.modes.leave("health-emergency", "over", "bob")
    await rig.settle()
    for door in public_readers(rig.city):
        assert (await reported(rig, door))["badgesEnabled"] is True


async def test_flood_closes_the_flood_zone_roads_and_suppresses_river_alarms_until_it_ends(
    rig: ModeRig,
):
    routing = open_routing(rig.data / "graph")
    rig.modes.closures = ClosureBook(rig.broker, routing)
    rig.modes.alarms = alarms = AlarmService(rig.broker, clock=rig.clock)
    await alarms.start(run_timers=False)
    bus = rig.first("Bus")
    river = await alarms.raise_alarm("river-above-alert-level", bus, "high", "river at 3.1 m")
    other = await alarms.raise_alarm("device-silent", bus, "low", "silent")
    on = await rig.modes.enter("flood", None, "the river rises", "alice")
    closures = [c for c in on["closures"] if "id" in c]
    assert closures and sum(c["edges"] for c in closures) == len(routing.closed_edges) > 0
    assert on["policies"]["suppression"]["covered"] == 1
    assert (await alarms.get(river.id)).suppressed["key"] == "flood"
    assert (await alarms.get(other.id)).suppressed is None  # not a rule the mode names
    assert on["policies"]["rules"]["state"] == "pending"  # no rules engine in this rig
    assert on["policies"]["rules"]["enable"] == ["river-above-action-level"]
    await rig.modes.leave("flood", "the river fell", "bob")
    assert routing.closed_edges == frozenset()
    assert (await alarms.get(river.id)).suppressed is None
    await alarms.stop()


async def test_flood_closes_the_underground_car_parks_and_reopens_them_when_it_ends(
    rig: ModeRig,
):
    parks = rig.city.of_type("OffStreetParking")
    underground = [p["id"] for p in parks if p["category"]["value"] == "underground"]
    others = [p["id"] for p in parks if p["category"]["value"] != "underground"]
    assert underground, "the demo city has an underground car park"
    closed_before = underground[0]  # an operator closed this one before the flood
    await rig.submit(closed_before, "close")
    await rig.settle()
    await rig.later(60.0)  # a minute before the flood
    await rig.modes.enter("flood", None, "the river rises", "alice")
    await rig.settle()
    detail = await rig.modes.last("flood")
    step = next(s for s in detail["steps"] if s["id"] == "close-underground-car-parks")
    assert step["targets"] == len(underground)
    assert step["progress"]["confirmed"] == step["progress"]["total"] == len(underground)
    for park in underground:  # the simulated car parks say so themselves
        now = await reported(rig, park)
        assert now["status"] == "closed", park
    for park in others:
        assert (await reported(rig, park))["status"] == "open"
    await rig.modes.leave("flood", "the river fell", "bob")
    await rig.settle()
    detail = await rig.modes.last("flood")
    restored = {
        d["entity"]: d["restore"]
        for d in detail["devices"]
        if d["step"] == "close-underground-car-parks"
    }
    assert restored[closed_before]["outcome"] == "unchanged"  # closed before the mode
    assert (await reported(rig, closed_before))["status"] == "closed"
    for park in underground[1:]:
        assert restored[park]["outcome"] == "restored"
        assert (await reported(rig, park))["status"] == "open", park


async def test_flood_switches_its_rules_on_and_puts_them_back_as_they_were(rig: ModeRig):
    rules = RuleEngine(rig.broker, commands=rig.service, clock=rig.clock)
    await rules.start(run_timers=False)
    rig.modes.rules = rules
    action_level = {
        "id": "river-above-action-level",
        "owner": "water",
        "enabled": False,
        "type": "WaterLevelSensor",
        "attributes": ["waterLevel"],
        "trigger": {
            "kind": "threshold",
            "attribute": "waterLevel",
            "above": 3.5,
            "clearBelow": 3.3,
        },
        "actions": [{"kind": "alarm", "severity": "critical", "message": "{entity}: {value}"}],
    }
    await rules.create(action_level, "admin")
    on = await rig.modes.enter("flood", None, "the river rises", "alice")
    assert rules.get("river-above-action-level").enabled is True
    switched = on["policies"]["rules"]["switched"]["river-above-action-level"]
    assert switched == {"set": True, "before": False}
    await rig.modes.leave("flood", "the river fell", "bob")
    assert rules.get("river-above-action-level").enabled is False  # as before the mode
    await rules.stop()


async def test_a_rule_the_engine_lacks_is_reported_on_the_mode_not_fatal(rig: ModeRig):
    rules = RuleEngine(rig.broker, commands=rig.service, clock=rig.clock)
    await rules.start(run_timers=False)
    rig.modes.rules = rules
    on = await rig.modes.enter("flood", None, "the river rises", "alice")
    assert on["state"] == "active" and on["progress"]["total"] > 0  # the buses were told
    policies = on["policies"]["rules"]
    assert policies["state"] == "partly applied"
    assert "river-above-action-level" in policies["switched"]["river-above-action-level"]["error"]
    left = await rig.modes.leave("flood", "the river fell", "bob")
    assert left["state"] == "left"
    await rules.stop()


async def test_a_zone_scope_commands_only_the_devices_inside_it(rig: ModeRig):
    from shapely.geometry import Point, shape

    readers = public_readers(rig.city)
    zone = next(
        z
        for z in rig.city.of_type("Zone")
        if any(rig.city.entity(r)["refZone"]["object"] == z["id"] for r in readers)
    )
    area = shape(zone["location"]["value"])
    await rig.modes.enter("health-emergency", {"kind": "zone", "zone": zone["id"]}, "x", "alice")
    detail = await rig.modes.last("health-emergency")
    chosen = {d["entity"] for d in detail["devices"] if d["step"] == "badges-off"}
    inside = {
        r
        for r in readers
        if area.covers(Point(rig.city.entity(r)["location"]["value"]["coordinates"]))
    }
    assert chosen == inside and 0 < len(chosen) < len(readers)
    assert detail["scope"]["kind"] == "zone" and detail["scope"]["zone"] == zone["id"]
