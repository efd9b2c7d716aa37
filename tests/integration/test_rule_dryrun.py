"""The dry run over recorded history: what a rule would have raised, cleared and
commanded, with the times it would have done so; over HTTP, its bad input and the
405 at /api/v1/rules/test for other methods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from citypilot.broker import Broker
from citypilot.bus.memory import MemoryBus
from citypilot.engine.alarm_model import STATES
from citypilot.engine.rule_dryrun import dry_run
from citypilot.engine.rule_model import compile_rule
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.timeutil import format_instant
from citypilot.model.types import TypeRegistry
from citypilot.store.sqlite import SQLiteStore
from tests.conftest import ADMIN, OPERATOR, Server
from tests.integration.test_api_entities import problem, uid

T0 = 1_790_000_000.0
RIVER = "urn:ngsi-ld:WaterLevelSensor:dry-river"
BAY = "urn:ngsi-ld:DeliveryArea:dry-bay"
REGISTRY = TypeRegistry(BUILTIN_TYPES)
RIVER_RULE = {
    "id": "river",
    "owner": "water",
    "type": "WaterLevelSensor",
    "trigger": {"kind": "threshold", "attribute": "waterLevel", "above": 3.0, "clearBelow": 2.8},
    "actions": [
        {"kind": "alarm", "severity": "high", "message": "river at {value} m"},
        {"kind": "webhook", "url": "http://127.0.0.1:9/flood"},
    ],
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "city.db")
    await s.open()
    broker = Broker(REGISTRY, s, MemoryBus())
    for entity, kind in ((RIVER, "WaterLevelSensor"), (BAY, "DeliveryArea")):
        await broker.create_entity({"id": entity, "type": kind})
    levels = [2.5, 3.1, 2.9, 3.2, 2.7, 3.3]
    observations = [
        {
            "id": RIVER,
            "type": "WaterLevelSensor",
            "observedAt": format_instant(T0 + 600 * k),
            "attrs": {"waterLevel": level},
        }
        for k, level in enumerate(levels)
    ]
    for at, status in ((T0, "occupied"), (T0 + 1500, "free"), (T0 + 2000, "occupied")):
        observations.append(
            {
                "id": BAY,
                "type": "DeliveryArea",
                "observedAt": format_instant(at),
                "attrs": {"status": status},
            }
        )
    result = await broker.ingest(observations, "test")
    assert not result.errors
    yield s
    await s.close()


async def test_a_threshold_replayed_raises_and_clears_with_hysteresis(store: SQLiteStore):
    rule = compile_rule(RIVER_RULE, REGISTRY)
    found = await dry_run(store, rule, T0, T0 + 3600)
    got = [(o["action"], o["at"]) for o in found.outcomes]
    assert got == [
        ("raise", format_instant(T0 + 600)),
        ("webhook", format_instant(T0 + 600)),
        ("clear", format_instant(T0 + 2400)),  # 2.9 at +1200 and 3.2 at +1800 change nothing
        ("raise", format_instant(T0 + 3000)),
        ("webhook", format_instant(T0 + 3000)),
    ]
    assert found.outcomes[0]["message"] == "river at 3.1 m"
    assert dict(found.summary) == {"raise": 2, "clear": 1, "webhook": 2}
    assert found.reports == 6 and found.entities == 2 - 1  # the one WaterLevelSensor


async def test_the_window_starts_from_the_state_before_it(store: SQLiteStore):
    rule = compile_rule(RIVER_RULE, REGISTRY)
    # from +1900 on: the level was 3.2 (an active alarm already, unseen by this window),
    # so the replay starts with the threshold crossed only by the next rise
    found = await dry_run(store, rule, T0 + 1900, T0 + 3600)
    assert [o["action"] for o in found.outcomes] == ["raise", "webhook"]


async def test_a_held_duration_fires_when_it_fell_due(store: SQLiteStore):
    rule = compile_rule(
        {
            "id": "overstay",
            "owner": "parking",
            "type": "DeliveryArea",
            "condition": "change.attrs.status == 'occupied'",
            "attributes": ["status"],
            "trigger": {"kind": "held", "for": 1200},
            "actions": [{"kind": "alarm", "severity": "low", "message": "overstay"}],
        },
        REGISTRY,
    )
    found = await dry_run(store, rule, T0, T0 + 4000)
    assert [(o["action"], o["at"]) for o in found.outcomes] == [
        ("raise", format_instant(T0 + 1200)),
        ("clear", format_instant(T0 + 1500)),
        ("raise", format_instant(T0 + 3200)),  # occupied again from +2000, due at the end
    ]


async def test_cron_times_and_evaluation_errors_are_reported(store: SQLiteStore):
    cron = compile_rule(
        {
            "id": "hourly",
            "owner": "x",
            "trigger": {"kind": "cron", "schedule": "0 * * * *"},
            "actions": [{"kind": "webhook", "url": "http://127.0.0.1:9/"}],
        },
        REGISTRY,
    )
    assert (await dry_run(store, cron, T0, T0 + 3 * 3600)).summary["webhook"] == 3
    broken = compile_rule(
        {**RIVER_RULE, "condition": "entity.flow > 1.0", "trigger": {"kind": "change"}},
        REGISTRY,
    )
    found = await dry_run(store, broken, T0, T0 + 3600)
    assert found.errors == 6 and found.last_errors[0]["entity"] == RIVER
    assert "flow" in found.last_errors[0]["reason"]


def test_the_dry_run_over_http(server: Server):
    lamp = f"urn:ngsi-ld:Streetlight:{uid()}"
    with server.client(ADMIN) as c:
        assert (
            c.post("/ngsi-ld/v1/entities", json={"id": lamp, "type": "Streetlight"}).status_code
            == 201
        )
    with server.device() as d:
        for k, status in enumerate(("ok", "defectiveLamp", "ok")):
            r = d.post(
                "/api/v1/ingest",
                json=[
                    {
                        "id": lamp,
                        "type": "Streetlight",
                        "observedAt": format_instant(T0 + 60 * k),
                        "attrs": {"status": status},
                    }
                ],
            )
            assert r.status_code == 200, r.text
    rule = {
        "owner": "lighting",
        "type": "Streetlight",
        "attributes": ["status"],
        "condition": "change.attrs.status != 'ok'",
        "trigger": {"kind": "change"},
        "actions": [
            {"kind": "alarm", "severity": "medium", "message": "lamp {value}"},
            {"kind": "command", "command": "switch", "args": {"state": "off"}},
        ],
    }
    window = {"from": format_instant(T0 - 1), "to": format_instant(T0 + 600), "entities": [lamp]}
    with server.client(ADMIN) as c:
        r = c.post("/api/v1/rules/test", json={"rule": rule, **window})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [(o["action"], o["at"]) for o in body["outcomes"]] == [
            ("raise", format_instant(T0 + 60)),
            ("command", format_instant(T0 + 60)),
            ("clear", format_instant(T0 + 120)),
        ]
        assert body["outcomes"][1]["command"] == "switch" and body["rule"] == "dry-run"
        # nothing done: no alarm of the tried rule (the live rule pack may alarm on the lamp)
        every_state = ",".join(STATES)
        tried = {"entity": lamp, "rule": "dry-run", "state": every_state}
        assert c.get("/api/v1/alarms", params=tried).json()["total"] == 0
        # a saved rule by its id
        rule_id = uid("r")
        assert c.post("/api/v1/rules", json={**rule, "id": rule_id}).status_code == 201
        saved = c.post("/api/v1/rules/test", json={"id": rule_id, **window}).json()
        assert saved["summary"] == {"clear": 1, "command": 1, "raise": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, "rule"),
        ({"id": "nope", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, "id"),
        (
            {
                "rule": {
                    "owner": "x",
                    "type": "Streetlight",
                    "trigger": {"kind": "change"},
                    "condition": "entity.status ==",
                    "actions": [{"kind": "webhook", "url": "http://x/"}],
                },
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-01-02T00:00:00Z",
            },
            "rule.condition",
        ),
        ({"id": "x", "from": "yesterday", "to": "2026-01-02T00:00:00Z"}, "from"),
        ({"id": "x", "to": "2026-01-02T00:00:00Z"}, "from"),
        ({"id": "x", "from": "2026-01-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),
        ({"id": "x", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        (
            {
                "id": "x",
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-01-02T00:00:00Z",
                "entities": [],
            },
            "entities",
        ),
        (
            {"id": "x", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "extra": 1},
            "extra",
        ),
    ],
)
def test_bad_dry_runs_get_400_or_404_naming_the_field(server: Server, body: dict, field: str):
    with server.client(ADMIN) as c:
        if body.get("id") == "x":
            c.post(
                "/api/v1/rules",
                json={
                    "id": "x",
                    "owner": "o",
                    "type": "Streetlight",
                    "trigger": {"kind": "change"},
                    "actions": [{"kind": "webhook", "url": "http://127.0.0.1:9/"}],
                },
            )
        r = c.post("/api/v1/rules/test", json=body)
        if field == "id":
            problem(r, 404, "ResourceNotFound", field)
        else:
            problem(r, 400, "BadRequestData", field)


def test_other_methods_at_the_dry_run_are_405_allowing_post(server: Server):
    with server.client(ADMIN) as c:
        for method in ("GET", "PUT", "DELETE", "OPTIONS"):
            r = c.request(method, "/api/v1/rules/test")
            problem(r, 405, "OperationNotSupported")
            assert r.headers["allow"] == "POST"
        with server.client(OPERATOR) as op:
            problem(op.post("/api/v1/rules/test", json={}), 403, "Forbidden")
