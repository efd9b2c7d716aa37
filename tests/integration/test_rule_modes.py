"""A rule enters and leaves a city mode through the mode service (on its own server:
the mode it switches on is city-wide)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from citypilot.bench.server import server_process
from citypilot.model.timeutil import format_instant
from tests.conftest import ADMIN, Server, seed_accounts

BOUND_S = 30.0
GAUGE = "urn:ngsi-ld:WaterLevelSensor:rule-mode-gauge"


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("rule-mode-server")
    asyncio.run(seed_accounts(data))
    with server_process(data) as url:
        yield Server(url, data)


def _until(read: Any, what: str) -> Any:
    deadline = time.monotonic() + BOUND_S
    while True:
        value = read()
        if value:
            return value
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.05)


def test_a_rule_enters_a_mode_on_firing_and_leaves_it_on_reset(own_server: Server):
    rule = {
        "id": "river-event",
        "owner": "water",
        "type": "WaterLevelSensor",
        "attributes": ["waterLevel"],
        "trigger": {
            "kind": "threshold",
            "attribute": "waterLevel",
            "above": 4.0,
            "clearBelow": 3.0,
        },
        "actions": [
            {"kind": "mode", "enter": "major-event", "reason": "the river is very high"},
            {"kind": "mode", "leave": "major-event", "on": "reset", "reason": "back down"},
        ],
    }
    with own_server.client(ADMIN) as c:
        assert (
            c.post(
                "/ngsi-ld/v1/entities", json={"id": GAUGE, "type": "WaterLevelSensor"}
            ).status_code
            == 201
        )
        # the mode needs something to act on: a bus to send its message to
        bus = {"id": "urn:ngsi-ld:Bus:rule-mode-bus", "type": "Bus", "status": "inService"}
        assert c.post("/ngsi-ld/v1/entities", json=bus).status_code == 201
        assert c.post("/api/v1/rules", json=rule).status_code == 201

    def report(level: float) -> None:
        with own_server.device() as d:
            body = {
                "id": GAUGE,
                "type": "WaterLevelSensor",
                "observedAt": format_instant(time.time()),
                "attrs": {"waterLevel": level},
            }
            assert d.post("/api/v1/ingest", json=[body]).status_code == 200

    with own_server.client() as c:
        report(4.5)
        active = _until(
            lambda: c.get("/api/v1/modes").json()["active"],
            lambda: c.get("/api/v1/rules/river-event").json()["status"],
        )
        assert active[0]["name"] == "major-event" and active[0]["enteredBy"] == "rule:river-event"
        assert active[0]["reason"] == "the river is very high"
        report(2.5)
        _until(lambda: c.get("/api/v1/modes").json()["active"] == [], "the mode left")
        recent = c.get("/api/v1/modes").json()["recent"][0]
        assert recent["name"] == "major-event" and recent["leftBy"] == "rule:river-event"
        status = c.get("/api/v1/rules/river-event").json()["status"]
        assert status["firings"] == 2 and status["errors"] == 0, status
