"""The rules engine on a real store of each backend and the bus: each trigger kind
(durations driven by the devices' observedAt and an injected clock, never by
sleeping), alarms raised and cleared, commands through the command service, errors
kept per rule, the loop guard, the mode hook, rules kept across a restart and read
from YAML files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from citypilot.broker import CHANGED, Broker
from citypilot.bus.memory import MemoryBus
from citypilot.engine.alarms import AlarmService
from citypilot.engine.commands import CommandService
from citypilot.engine.rule_model import RuleError
from citypilot.engine.rules import RuleEngine
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.timeutil import format_instant
from citypilot.model.types import TypeRegistry
from citypilot.ops.incidents import IncidentBook
from citypilot.store.base import Store
from citypilot.store.commands import command_log_for
from citypilot.store.sqlite import SQLiteStore
from tests.integration.command_rig import Clock

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
RIVER = "urn:ngsi-ld:WaterLevelSensor:river-1"
BAY = "urn:ngsi-ld:DeliveryArea:bay-1"
BUS = "urn:ngsi-ld:Bus:b-1"
LAMPS = [f"urn:ngsi-ld:Streetlight:rl-{k}" for k in range(3)]
LANE = {
    "type": "Polygon",
    "coordinates": [[[5.0, 47.3], [5.01, 47.3], [5.01, 47.31], [5.0, 47.31], [5.0, 47.3]]],
}


class World:
    """Store, bus, alarm and command services, and the rules engine of one test."""

    def __init__(self, make_store: Callable[[], Store], rule_dirs: tuple[Path, ...] = ()) -> None:
        self.make_store = make_store
        self.rule_dirs = rule_dirs
        self.clock = Clock(T0)

    async def open(self) -> RuleEngine:
        """(Re)open everything on the same store file."""
        self.store = self.make_store()
        await self.store.open()
        self.bus = MemoryBus()
        self.broker = Broker(TypeRegistry(BUILTIN_TYPES), self.store, self.bus)
        self.alarms = AlarmService(self.broker, clock=self.clock)
        await self.alarms.start(run_timers=False)
        self.commands = CommandService(self.broker, command_log_for(self.store), clock=self.clock)
        await self.commands.start(run_timers=False)
        self.rules = RuleEngine(
            self.broker,
            alarms=self.alarms,
            commands=self.commands,
            incidents=IncidentBook(self.broker),
            clock=self.clock,
            rule_dirs=self.rule_dirs,
        )
        await self.rules.start(run_timers=False)
        return self.rules

    async def close(self) -> None:
        """Stop the services and close the store."""
        await self.rules.stop()
        await self.commands.stop()
        await self.alarms.stop()
        await self.store.close()

    async def report(self, entity: str, at: float, lon: float | None = None, lat=None, **attrs):
        """A device's report as the broker publishes it, stamped ``at``."""
        change: dict[str, Any] = {
            "id": entity,
            "type": entity.split(":")[2],
            "attrs": attrs,
            "observedAt": format_instant(at),
            "lon": lon,
            "lat": lat,
        }
        await self.bus.publish(CHANGED, {"changes": [change]})
        await self.rules.settle()

    async def advance(self, seconds: float) -> None:
        """Let time pass, then run what it made due."""
        self.clock.advance(seconds)
        await self.rules.tick()
        await self.rules.settle()

    async def add(self, rule_id: str, **parts: Any) -> None:
        """Add a rule owned by the test department."""
        await self.rules.create(rule(rule_id, **parts), "admin")

    async def sent(self, rule: str, entity: str | None = None) -> list[Any]:
        """The commands a rule sent (to one entity), newest first."""
        found, _ = await self.commands.list(entity, None, None, 1000, 0)
        return [c for c in found if c.requested_by == f"rule:{rule}"]

    async def alarm(self, rule: str, entity: str) -> Any:
        """The open alarm of (rule, entity), or None."""
        return self.alarms.open_alarm(rule, entity)


@pytest.fixture
async def world(store_factory: Callable[[], Store]) -> AsyncIterator[World]:
    w = World(store_factory)
    await w.open()
    for k, lamp in enumerate(LAMPS):
        await w.broker.create_entity(
            {
                "id": lamp,
                "type": "Streetlight",
                "status": "ok" if k else "defectiveLamp",
                "location": {"type": "Point", "coordinates": [5.0 + k / 100, 47.3]},
            }
        )
    yield w
    await w.close()


def rule(rule_id: str, **parts: Any) -> dict[str, Any]:
    """A rule document owned by the test department."""
    return {"id": rule_id, "owner": "test", **parts}


ALARM = {"kind": "alarm", "severity": "high", "message": "{entity}: {value}"}
OVERSTAY = {
    "type": "DeliveryArea",
    "attributes": ["status"],
    "condition": "change.attrs.status == 'occupied'",
    "trigger": {"kind": "held", "for": 1200},
    "actions": [ALARM],
}


async def test_threshold_with_hysteresis_raises_above_and_clears_only_below(world: World):
    await world.add(
        "river",
        type="WaterLevelSensor",
        attributes=["waterLevel"],
        trigger={
            "kind": "threshold",
            "attribute": "waterLevel",
            "above": 3.0,
            "clearBelow": 2.8,
        },
        actions=[ALARM],
    )
    await world.report(RIVER, T0, waterLevel=2.95)
    assert await world.alarm("river", RIVER) is None
    await world.report(RIVER, T0 + 60, waterLevel=3.1)
    raised = await world.alarm("river", RIVER)
    assert raised.state == "active-unacknowledged" and raised.message == f"{RIVER}: 3.1"
    await world.report(RIVER, T0 + 120, waterLevel=2.9)  # under 3.0 but not under 2.8
    await world.report(RIVER, T0 + 180, waterLevel=3.05)  # back above: no new raise
    assert (await world.alarm("river", RIVER)).state == "active-unacknowledged"
    assert (await world.alarm("river", RIVER)).count == 1
    await world.report(RIVER, T0 + 240, waterLevel=2.7)
    assert (await world.alarm("river", RIVER)).state == "cleared-unacknowledged"
    assert world.rules.stats["river"].firings == 2  # one raise, one clear


async def test_held_for_a_duration_is_measured_on_observed_at(world: World):
    await world.add("overstay", **OVERSTAY)
    await world.report(BAY, T0, status="occupied")
    await world.report(BAY, T0 + 1100, status="occupied")
    assert await world.alarm("overstay", BAY) is None
    await world.report(BAY, T0 + 1250, status="occupied")  # 20 min 50 s by the device's clock
    assert (await world.alarm("overstay", BAY)).reading["value"] == 1250
    await world.report(BAY, T0 + 1300, status="free")
    assert (await world.alarm("overstay", BAY)).state == "cleared-unacknowledged"


async def test_held_fires_from_the_clock_when_no_report_comes(world: World):
    await world.add("overstay", **OVERSTAY)
    await world.report(BAY, T0, status="occupied")
    await world.advance(1199)
    assert await world.alarm("overstay", BAY) is None
    await world.advance(2)
    assert await world.alarm("overstay", BAY) is not None


async def test_zone_enter_and_leave(world: World):
    await world.add(
        "lane",
        type="Bus",
        trigger={"kind": "zone", "area": LANE, "on": "enter"},
        actions=[{"kind": "alarm", "severity": "low", "message": "in the lane"}],
    )
    point = {"type": "Point", "coordinates": [4.99, 47.305]}
    await world.report(BUS, T0, lon=4.99, lat=47.305, location=point)
    assert await world.alarm("lane", BUS) is None
    await world.report(BUS, T0 + 10, lon=5.005, lat=47.305, location=point)
    assert (await world.alarm("lane", BUS)).state == "active-unacknowledged"
    await world.report(BUS, T0 + 20, lon=5.006, lat=47.305, location=point)
    assert (await world.alarm("lane", BUS)).count == 1  # still inside: no new entry
    await world.report(BUS, T0 + 30, lon=5.02, lat=47.305, location=point)
    assert (await world.alarm("lane", BUS)).state == "cleared-unacknowledged"


async def test_a_silent_device_raises_and_its_next_report_clears(world: World):
    await world.add(
        "silent",
        type="WaterLevelSensor",
        trigger={"kind": "silent", "after": 900},
        actions=[{"kind": "alarm", "severity": "medium", "message": "silent {value} s"}],
    )
    await world.report(RIVER, T0, waterLevel=1.0)
    await world.advance(899)
    assert await world.alarm("silent", RIVER) is None
    await world.advance(61)
    assert (await world.alarm("silent", RIVER)).message == "silent 960 s"
    await world.report(RIVER, T0 + 1000, waterLevel=1.0)
    assert (await world.alarm("silent", RIVER)).state == "cleared-unacknowledged"


async def test_cron_commands_a_selection_through_the_command_service(world: World):
    await world.add(
        "night",
        trigger={"kind": "cron", "schedule": "0 22 * * *"},
        actions=[
            {
                "kind": "command",
                "command": "setDimming",
                "args": {"level": 40},
                "target": {"type": "Streetlight", "condition": "entity.status == 'ok'"},
            }
        ],
    )
    await world.advance(0)
    assert await world.sent("night") == []
    world.clock.advance(14 * 3600 + 1)  # past 22:00
    await world.advance(0)
    sent = await world.sent("night")
    assert len(sent) == 2 and {c.entity_id for c in sent} == set(LAMPS[1:])
    assert all(c.args == {"level": 40} for c in sent)
    await world.advance(0)  # the same minute again: nothing more
    assert len(await world.sent("night")) == 2


async def test_a_change_condition_raises_while_it_holds_and_clears_after(world: World):
    await world.add(
        "lamp",
        type="Streetlight",
        attributes=["status"],
        condition="change.attrs.status != 'ok'",
        trigger={"kind": "change"},
        actions=[
            {"kind": "alarm", "severity": "medium", "message": "lamp {value}"},
            {"kind": "command", "command": "switch", "args": {"state": "off"}},
        ],
    )
    await world.report(LAMPS[1], T0, status="defectiveLamp")
    await world.report(LAMPS[1], T0 + 60, status="defectiveLamp")
    alarm = await world.alarm("lamp", LAMPS[1])
    assert alarm.count == 2 and alarm.message == "lamp defectiveLamp"
    sent = await world.sent("lamp", LAMPS[1])
    assert len(sent) == 2 and sent[0].command == "switch"
    await world.report(LAMPS[1], T0 + 120, status="ok")
    assert (await world.alarm("lamp", LAMPS[1])).state == "cleared-unacknowledged"
    assert len(await world.sent("lamp", LAMPS[1])) == 2  # on fire only


async def test_an_incident_is_opened_once_while_the_condition_lasts(world: World):
    await world.broker.create_entity(
        {
            "id": "urn:ngsi-ld:Municipality:town",
            "type": "Municipality",
            "name": "Town",
            "location": {
                "type": "Polygon",
                "coordinates": [[[4.9, 47.2], [5.2, 47.2], [5.2, 47.4], [4.9, 47.4], [4.9, 47.2]]],
            },
        }
    )
    await world.add(
        "cabinet",
        type="Streetlight",
        attributes=["status"],
        condition="change.attrs.status == 'cabinetFault'",
        trigger={"kind": "change"},
        actions=[ALARM, {"kind": "incident", "incidentType": "infrastructureFault"}],
    )
    await world.report(LAMPS[1], T0, status="cabinetFault")
    await world.report(LAMPS[1], T0 + 60, status="cabinetFault")
    found = await IncidentBook(world.broker).search()
    assert len(found) == 1, world.rules.view(world.rules.get("cabinet"))
    links = found[0].attrs["links"].value
    alarm = await world.alarm("cabinet", LAMPS[1])
    assert links["rules"] == ["cabinet"] and links["alarms"] == [alarm.id]
    assert found[0].attrs["reportedBy"].value == "rule:cabinet"


async def test_evaluation_errors_are_counted_with_entity_and_reason(world: World):
    await world.add(
        "bad",
        type="Streetlight",
        attributes=["status"],
        condition="entity.powerState == 'on'",  # the lamps never reported it
        trigger={"kind": "change"},
        actions=[ALARM],
    )
    await world.report(LAMPS[1], T0, status="ok")
    await world.report(LAMPS[2], T0, status="ok")
    stats = world.rules.view(world.rules.get("bad"))["status"]
    assert stats["errors"] == 2 and stats["evaluations"] == 2
    assert [e["entity"] for e in stats["lastErrors"]] == LAMPS[1:]
    assert "powerState" in stats["lastErrors"][0]["reason"]


async def test_the_loop_guard_stops_a_rule_that_keeps_firing(world: World):
    await world.add(
        "loop",
        type="Streetlight",
        attributes=["illuminanceLevel"],
        trigger={"kind": "change"},
        actions=[{"kind": "command", "command": "setDimming", "args": {"level": 50}}],
        loopGuard={"max": 3, "within": 10},
    )
    for k in range(6):
        await world.report(LAMPS[1], T0 + k, illuminanceLevel=0.5)
    view = world.rules.view(world.rules.get("loop"))["status"]
    assert view["stopped"] is not None and "loop guard" in view["stopped"]["reason"]
    assert view["firings"] == 3 and "loop guard" in view["lastErrors"][-1]["reason"]
    assert len(await world.sent("loop", LAMPS[1])) == 3
    await world.rules.enable("loop", "admin")
    assert world.rules.view(world.rules.get("loop"))["status"]["stopped"] is None


async def test_a_mode_action_reports_modes_not_available_until_a_hook_is_installed(world: World):
    await world.add(
        "flood",
        type="WaterLevelSensor",
        attributes=["waterLevel"],
        trigger={"kind": "threshold", "attribute": "waterLevel", "above": 4.0},
        actions=[{"kind": "mode", "enter": "flood", "scope": {"municipality": "x"}}],
    )
    await world.report(RIVER, T0, waterLevel=4.5)
    errors = world.rules.view(world.rules.get("flood"))["status"]["lastErrors"]
    assert "modes not available" in errors[0]["reason"] and errors[0]["entity"] == RIVER
    calls = []

    async def hook(action, mode, scope, reason, by):
        calls.append((action, mode, scope, by))

    world.rules.set_mode_hook(hook)
    await world.report(RIVER, T0 + 60, waterLevel=3.0)
    await world.report(RIVER, T0 + 120, waterLevel=4.6)
    assert calls == [("enter", "flood", {"municipality": "x"}, "rule:flood")]


async def test_disabled_rules_are_not_evaluated(world: World):
    await world.add(
        "lamp",
        type="Streetlight",
        attributes=["status"],
        trigger={"kind": "change"},
        actions=[ALARM],
    )
    await world.rules.disable("lamp", "mode:flood")
    await world.report(LAMPS[1], T0, status="ok")
    assert world.rules.stats["lamp"].evaluations == 0
    await world.rules.enable("lamp", "mode:flood")
    await world.report(LAMPS[1], T0 + 1, status="ok")
    assert world.rules.stats["lamp"].evaluations == 1


async def test_rules_are_indexed_by_type_and_attribute(world: World):
    for k in range(50):
        await world.add(
            f"r{k}",
            type="WaterLevelSensor",
            attributes=["flow"],
            trigger={"kind": "change"},
            actions=[ALARM],
        )
    await world.report(RIVER, T0, waterLevel=1.0)  # not an attribute they watch
    await world.report(LAMPS[1], T0, status="ok")  # not a type they watch
    assert sum(s.evaluations for s in world.rules.stats.values()) == 0


async def test_rules_survive_a_restart_with_their_version(world: World):
    doc = rule(
        "river",
        type="WaterLevelSensor",
        trigger={"kind": "threshold", "attribute": "waterLevel", "above": 3.0},
        actions=[ALARM],
    )
    await world.rules.create(doc, "admin")
    await world.rules.replace("river", {**doc, "description": "v2"}, "admin")
    await world.close()
    rules = await world.open()
    assert rules.get("river").version == 2 and rules.get("river").doc["description"] == "v2"
    await world.report(RIVER, T0, waterLevel=3.5)
    assert await world.alarm("river", RIVER) is not None


async def test_yaml_files_are_loaded_and_their_errors_kept(tmp_path: Path):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "good.yaml").write_text(
        "id: river\nowner: water\ntype: WaterLevelSensor\n"
        "trigger: {kind: threshold, attribute: waterLevel, above: 3.0, clearBelow: 2.8}\n"
        "actions:\n  - {kind: alarm, severity: high, message: 'River at {value} m'}\n"
    )
    (rules_dir / "bad.yaml").write_text("id: [unclosed\n")
    (rules_dir / "wrong.yaml").write_text(
        "id: wrong\nowner: water\ntype: WaterLevelSensor\ncondition: 'entity.waterLevel >'\n"
        "trigger: {kind: change}\nactions: [{kind: alarm, severity: low, message: m}]\n"
    )
    w = World(lambda: SQLiteStore(tmp_path / "city.db"), (rules_dir,))
    rules = await w.open()
    try:
        assert list(rules.rules) == ["river"]
        errors = {e["source"]: e for e in rules.load_errors}
        assert errors["file:bad.yaml"]["position"]["line"] == 2
        assert errors["file:wrong.yaml"]["field"] == "condition"
        assert errors["file:wrong.yaml"]["position"] == {
            "line": 1,
            "column": 20,
        }  # the end of the expression
    finally:
        await w.close()


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (
            rule(
                "x",
                type="Streetlight",
                condition="entity.status ==",
                trigger={"kind": "change"},
                actions=[ALARM],
            ),
            "condition",
        ),
        (
            rule(
                "x",
                type="Streetlight",
                condition="entity.colour == 'red'",
                trigger={"kind": "change"},
                actions=[ALARM],
            ),
            "condition",
        ),
        (
            rule(
                "x",
                trigger={"kind": "cron", "schedule": "every day"},
                actions=[{"kind": "webhook", "url": "http://127.0.0.1:9/"}],
            ),
            "trigger.schedule",
        ),
        (rule("x", type="Lamp", trigger={"kind": "change"}, actions=[ALARM]), "type"),
        (
            rule(
                "x",
                type="Streetlight",
                trigger={"kind": "threshold", "attribute": "status", "above": 1},
                actions=[ALARM],
            ),
            "trigger.attribute",
        ),
        (
            rule(
                "x",
                type="WaterLevelSensor",
                trigger={
                    "kind": "threshold",
                    "attribute": "waterLevel",
                    "above": 3,
                    "clearBelow": 3.5,
                },
                actions=[ALARM],
            ),
            "trigger.clearBelow",
        ),
        (
            rule(
                "x",
                type="Streetlight",
                trigger={"kind": "change"},
                actions=[{"kind": "command", "command": "explode"}],
            ),
            "actions[0].command",
        ),
        (
            rule(
                "x",
                type="Streetlight",
                trigger={"kind": "change"},
                actions=[{"kind": "command", "command": "setDimming", "args": {"level": 900}}],
            ),
            "actions[0].args.level",
        ),
        (
            rule("x", type="Streetlight", trigger={"kind": "held", "for": 60}, actions=[ALARM]),
            "condition",
        ),
        (rule("x", type="Alarm", trigger={"kind": "change"}, actions=[ALARM]), "actions[0]"),
        (rule("Bad Id", type="Streetlight", trigger={"kind": "change"}, actions=[ALARM]), "id"),
        (rule("test", type="Streetlight", trigger={"kind": "change"}, actions=[ALARM]), "id"),
        (rule("x", type="Streetlight", trigger={"kind": "change"}, actions=[]), "actions"),
        (
            rule("x", type="Streetlight", trigger={"kind": "change"}, actions=[ALARM], colour=1),
            "colour",
        ),
    ],
)
async def test_rules_that_cannot_work_are_refused_naming_the_field(
    world: World, doc: dict, field: str
):
    with pytest.raises(RuleError) as caught:
        await world.rules.create(doc, "admin")
    assert caught.value.field == field
    assert world.rules.rules == {}


async def test_a_cel_error_gives_line_and_column(world: World):
    with pytest.raises(RuleError) as caught:
        await world.rules.create(
            rule(
                "x",
                type="Streetlight",
                condition="entity.status == 'ok' &&\n  entity.colour > 1",
                trigger={"kind": "change"},
                actions=[ALARM],
            ),
            "admin",
        )
    assert caught.value.extra["position"] == {"line": 2, "column": 10}


async def test_history_arriving_in_a_burst_does_not_trip_the_loop_guard(world: World):
    await world.add(
        "busy",
        type="Streetlight",
        attributes=["illuminanceLevel"],
        trigger={"kind": "change"},
        actions=[ALARM],
        loopGuard={"max": 3, "within": 10},
    )
    for k in range(10):  # a day of reports replayed at once: an hour apart by their clock
        await world.report(LAMPS[1], T0 + 3600 * k, illuminanceLevel=0.5)
    status = world.rules.view(world.rules.get("busy"))["status"]
    assert status["stopped"] is None and status["firings"] == 10
    assert (await world.alarm("busy", LAMPS[1])).count == 10
