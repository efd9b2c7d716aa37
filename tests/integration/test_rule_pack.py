"""The built-in rule pack: each rule raises its alarm on the reports that call for it,
and not on the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from citypilot.engine.rule_pack import RULE_PACK_DIR
from citypilot.store.sqlite import SQLiteStore
from tests.integration.test_rules_engine import T0, World

GAUGE = "urn:ngsi-ld:WaterLevelSensor:pack-gauge"
AIR = "urn:ngsi-ld:AirQualityObserved:pack-air"
READER = "urn:ngsi-ld:AccessPoint:pack-reader"
LAMP = "urn:ngsi-ld:Streetlight:pack-lamp"
CAMERA = "urn:ngsi-ld:Camera:pack-camera"
BAY = "urn:ngsi-ld:DeliveryArea:pack-bay"


@pytest.fixture
async def pack(tmp_path: Path) -> AsyncIterator[World]:
    w = World(lambda: SQLiteStore(tmp_path / "city.db"), (RULE_PACK_DIR,))
    await w.open()
    await w.broker.create_entity({"id": GAUGE, "type": "WaterLevelSensor", "alertLevel": 3.0})
    await w.broker.create_entity({"id": READER, "type": "AccessPoint", "badgesEnabled": False})
    yield w
    await w.close()


async def test_the_pack_loads_whole(pack: World):
    assert len(pack.rules.rules) == 11 and pack.rules.load_errors == []


async def test_a_defective_streetlight(pack: World):
    await pack.report(LAMP, T0, status="ok")
    assert await pack.alarm("defective-streetlight", LAMP) is None
    await pack.report(LAMP, T0 + 60, status="brokenLantern")
    assert (await pack.alarm("defective-streetlight", LAMP)).message == (
        "Streetlight fault: brokenLantern"
    )


async def test_a_bus_lane_intrusion(pack: World):
    await pack.report(CAMERA, T0, lastEvent={"kind": "crowdGathering", "count": 40})
    assert await pack.alarm("bus-lane-intrusion", CAMERA) is None
    await pack.report(CAMERA, T0 + 5, lastEvent={"kind": "busLaneIntrusion", "plate": "x"})
    assert (await pack.alarm("bus-lane-intrusion", CAMERA)).severity == "low"


async def test_a_delivery_bay_overstay(pack: World):
    await pack.report(BAY, T0, status="occupied", overstay=False)
    assert await pack.alarm("delivery-bay-overstay", BAY) is None
    await pack.report(BAY, T0 + 1800, overstay=True)
    assert await pack.alarm("delivery-bay-overstay", BAY) is not None
    await pack.report(BAY, T0 + 1900, status="free", overstay=False)
    assert (await pack.alarm("delivery-bay-overstay", BAY)).state == "cleared-unacknowledged"


async def test_a_river_above_its_own_alert_level_with_hysteresis(pack: World):
    await pack.report(GAUGE, T0, waterLevel=2.9)
    assert await pack.alarm("river-above-alert-level", GAUGE) is None
    await pack.report(GAUGE, T0 + 60, waterLevel=3.05)
    alarm = await pack.alarm("river-above-alert-level", GAUGE)
    assert alarm.message == "Water at 3.05 m, above the alert level"
    await pack.report(GAUGE, T0 + 120, waterLevel=2.85)  # under 3.0, not under 2.8
    assert alarm.state == "active-unacknowledged"
    await pack.report(GAUGE, T0 + 180, waterLevel=2.75)
    assert alarm.state == "cleared-unacknowledged"


async def test_air_quality_above_the_limit(pack: World):
    await pack.report(AIR, T0, pm10=42.0)
    await pack.report(AIR, T0 + 300, pm10=55.0)
    assert (await pack.alarm("air-quality-above-limit", AIR)).reading["value"] == 55.0


async def test_a_silent_gauge(pack: World):
    await pack.report(GAUGE, T0, waterLevel=1.0)
    await pack.advance(899)
    assert await pack.alarm("water-gauge-silent", GAUGE) is None
    await pack.advance(2)
    assert await pack.alarm("water-gauge-silent", GAUGE) is not None


async def test_a_badge_refused_at_a_disabled_reader(pack: World):
    await pack.report(READER, T0, lastAccess={"group": "staff", "result": "denied"})
    assert (await pack.alarm("badge-at-disabled-reader", READER)).severity == "medium"
    other = "urn:ngsi-ld:AccessPoint:pack-reader-2"
    await pack.broker.create_entity({"id": other, "type": "AccessPoint", "badgesEnabled": True})
    await pack.report(other, T0, lastAccess={"group": "staff", "result": "denied"})
    assert await pack.alarm("badge-at-disabled-reader", other) is None


async def test_a_device_not_following_its_command(pack: World):
    def command(state: str, diverged: bool) -> dict:
        return {
            "id": f"cmd-{state}",
            "entityId": LAMP,
            "entityType": "Streetlight",
            "command": "switch",
            "state": state,
            "diverged": diverged,
            "expected": {"illuminanceLevel": 0.0},
            "lastReported": {"illuminanceLevel": 1.0},
        }

    await pack.bus.publish("commands.changed", {"commands": [command("timed_out", False)]})
    await pack.rules.settle()
    assert await pack.alarm("streetlight-not-following-command", LAMP) is None
    await pack.bus.publish("commands.changed", {"commands": [command("timed_out", True)]})
    await pack.rules.settle()
    alarm = await pack.alarm("streetlight-not-following-command", LAMP)
    assert alarm.reading["value"]["lastReported"] == {"illuminanceLevel": 1.0}
    await pack.bus.publish("commands.changed", {"commands": [command("confirmed", False)]})
    await pack.rules.settle()
    assert alarm.state == "cleared-unacknowledged"
