"""The alarm service on a real store of each backend: one open alarm per (rule, entity),
the ISA-18.2 states, acknowledge, shelving that ends by itself, suppression by design,
a restart, and the alarm-management figures. Time is an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from citypilot.broker import Broker
from citypilot.bus.memory import MemoryBus
from citypilot.engine.alarms import AlarmScope, AlarmService
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.types import TypeRegistry
from citypilot.store.base import Store
from tests.integration.command_rig import Clock

LAMP = "urn:ngsi-ld:Streetlight:alarm-lamp"
OTHER = "urn:ngsi-ld:Streetlight:alarm-lamp-2"
TOWN = "urn:ngsi-ld:Municipality:north"


class World:
    """Store, bus, broker and alarm service of one test, and what went on the bus."""

    def __init__(self, make_store: Callable[[], Store]) -> None:
        self.make_store = make_store
        self.clock = Clock(1_800_000_000.0)
        self.events: list[dict[str, Any]] = []

    async def open(self) -> AlarmService:
        """(Re)open the store and start a new alarm service on it."""
        self.store = self.make_store()
        await self.store.open()
        self.bus = MemoryBus()
        self.broker = Broker(TypeRegistry(BUILTIN_TYPES), self.store, self.bus)
        self.bus.listen("alarms.changed", lambda s, p: self.events.extend(p["alarms"]))
        self.alarms = AlarmService(self.broker, clock=self.clock)
        await self.alarms.start(run_timers=False)
        return self.alarms

    async def close(self) -> None:
        """Stop the service and close the store."""
        await self.alarms.stop()
        await self.store.close()


@pytest.fixture
async def world(store_factory: Callable[[], Store]) -> AsyncIterator[World]:
    w = World(store_factory)
    await w.open()
    for local, lon, town in ((LAMP, 5.04, TOWN), (OTHER, 5.10, "urn:ngsi-ld:Municipality:south")):
        await w.broker.create_entity(
            {
                "id": local,
                "type": "Streetlight",
                "location": {"type": "Point", "coordinates": [lon, 47.32]},
                "refMunicipality": {"type": "Relationship", "object": town},
            }
        )
    yield w
    await w.close()


async def test_raising_twice_counts_a_repeat_on_one_alarm(world: World):
    a = await world.alarms.raise_alarm("lamp-defect", LAMP, "medium", "lamp out", value="off")
    world.clock.advance(5)
    b = await world.alarms.raise_alarm("lamp-defect", LAMP, "high", "lamp still out")
    assert a.id == b.id and b.count == 2 and b.severity == "high"
    found, total = await world.alarms.search()
    assert total == 1 and found[0].message == "lamp still out"
    assert found[0].location == {"type": "Point", "coordinates": [5.04, 47.32]}
    assert found[0].municipality == TOWN and found[0].source_type == "Streetlight"
    assert [e["count"] for e in world.events] == [1, 2]
    # another entity, or another rule, is another alarm
    c = await world.alarms.raise_alarm("lamp-defect", OTHER, "medium", "lamp out")
    d = await world.alarms.raise_alarm("lamp-silent", LAMP, "low", "no report")
    assert len({a.id, c.id, d.id}) == 3


async def test_acknowledged_then_cleared_closes_and_a_new_raise_is_a_new_alarm(world: World):
    a = await world.alarms.raise_alarm("r", LAMP, "medium", "m")
    assert a.state == "active-unacknowledged"
    assert (await world.alarms.acknowledge(a.id, "ann")).state == "active-acknowledged"
    cleared = await world.alarms.clear_alarm("r", LAMP)
    assert cleared is not None and cleared.state == "cleared"
    again = await world.alarms.raise_alarm("r", LAMP, "medium", "m")
    assert again.id != a.id and again.count == 1
    closed, total = await world.alarms.search(states=["cleared"])
    assert total == 1 and closed[0].id == a.id
    assert [e["action"] for e in closed[0].log] == ["raised", "acknowledged", "cleared"]


async def test_cleared_unacknowledged_returns_to_active_when_raised_again(world: World):
    a = await world.alarms.raise_alarm("r", LAMP, "medium", "m")
    assert (await world.alarms.clear_alarm("r", LAMP)).state == "cleared-unacknowledged"
    assert await world.alarms.clear_alarm("r", LAMP) is None  # nothing active to clear
    back = await world.alarms.raise_alarm("r", LAMP, "medium", "m")
    assert back.id == a.id and back.state == "active-unacknowledged" and back.cleared_at is None
    await world.alarms.clear_alarm("r", LAMP)
    done = await world.alarms.acknowledge(a.id, "ann")
    assert done.state == "cleared"
    assert (await world.alarms.search())[1] == 0


async def test_acknowledging_twice_is_once(world: World):
    a = await world.alarms.raise_alarm("r", LAMP, "medium", "m")
    first = await world.alarms.acknowledge(a.id, "ann")
    world.clock.advance(10)
    second = await world.alarms.acknowledge(a.id, "bob")
    assert second.acknowledged == first.acknowledged and second.acknowledged["by"] == "ann"
    assert [e["action"] for e in second.log].count("acknowledged") == 1


async def test_a_shelved_alarm_returns_by_itself_when_its_time_is_up(world: World):
    a = await world.alarms.raise_alarm("r", LAMP, "medium", "m")
    await world.alarms.shelve(a.id, "ann", 600, "crew on site")
    assert (await world.alarms.search(shelved=True))[1] == 1
    world.clock.advance(599)
    await world.alarms.tick()
    assert (await world.alarms.get(a.id)).shelved is not None
    world.clock.advance(2)
    await world.alarms.tick()
    back = await world.alarms.get(a.id)
    assert back.shelved is None and back.log[-1]["action"] == "unshelved"
    assert (await world.alarms.search(shelved=False))[1] == 1


async def test_alarms_stay_as_they_were_across_a_restart(world: World):
    a = await world.alarms.raise_alarm("r", LAMP, "critical", "m")
    await world.alarms.acknowledge(a.id, "ann")
    await world.alarms.shelve(a.id, "ann", 3600, "known")
    await world.close()
    alarms = await world.open()
    held = await alarms.get(a.id)
    assert held.state == "active-acknowledged" and held.shelved["by"] == "ann"
    repeat = await alarms.raise_alarm("r", LAMP, "critical", "m")
    assert repeat.id == a.id and repeat.count == 2
    assert alarms.figures()["alarms"] == 1  # the raise before the restart still counts


async def test_suppression_by_design_covers_its_scope_only_until_lifted(world: World):
    inside = await world.alarms.raise_alarm("r", LAMP, "high", "m")
    outside = await world.alarms.raise_alarm("r", OTHER, "high", "m")
    covered = await world.alarms.suppress("flood", AlarmScope(municipality=TOWN), "mode:flood")
    assert covered == 1
    assert (await world.alarms.get(inside.id)).suppressed["key"] == "flood"
    assert (await world.alarms.get(outside.id)).suppressed is None
    later = await world.alarms.raise_alarm("r2", LAMP, "low", "m")  # raised while it holds
    assert later.suppressed is not None
    assert (await world.alarms.search(suppressed=False))[1] == 1
    assert await world.alarms.unsuppress("flood", "mode:flood") == 2
    assert (await world.alarms.search(suppressed=True))[1] == 0
    assert world.alarms.suppressions() == {}


async def test_suppression_by_area_and_type(world: World):
    area = {
        "type": "Polygon",
        "coordinates": [[[5.0, 47.3], [5.07, 47.3], [5.07, 47.4], [5.0, 47.4], [5.0, 47.3]]],
    }
    await world.alarms.raise_alarm("r", LAMP, "high", "m")
    await world.alarms.raise_alarm("r", OTHER, "high", "m")
    assert await world.alarms.suppress("zone", AlarmScope(area=area), "mode:x") == 1
    assert await world.alarms.suppress("t", AlarmScope(types=("Camera",)), "mode:y") == 0


async def test_figures_show_a_flood_and_a_chattering_alarm(world: World):
    for k in range(12):
        await world.alarms.raise_alarm("flood-rule", f"urn:ngsi-ld:Sensor:s{k}", "low", "m")
    for _ in range(2):  # raised, cleared, raised, cleared within a minute: chattering
        await world.alarms.clear_alarm("r", LAMP)
        world.clock.advance(5)
        chatty = await world.alarms.raise_alarm("r", LAMP, "critical", "m")
        world.clock.advance(5)
        await world.alarms.clear_alarm("r", LAMP)
    got = world.alarms.figures(window_s=3600)
    assert got["alarms"] == 14 and got["peakPer10Min"] == 14
    assert got["floodPeriods"] == 1 and got["floodPercent"] == pytest.approx(100 / 6, abs=0.01)
    assert got["chattering"] == [chatty.id]
    assert got["meetsTargets"] == {
        "perOperatorPer10Min": False,
        "floodPercent": False,
        "chattering": False,
    }
    assert got["prioritySplit"]["critical"] == pytest.approx(100 * 2 / 14, abs=0.01)
    assert got["top10"][0] == {"rule": "r", "entity": LAMP, "count": 2}
    world.clock.advance(86400 + 1)
    assert world.alarms.figures()["alarms"] == 0


async def test_an_alarm_active_over_a_day_is_stale(world: World):
    a = await world.alarms.raise_alarm("r", LAMP, "medium", "m")
    world.clock.advance(86400 + 60)
    assert world.alarms.figures()["stale"] == [a.id]
