"""The rule API over real HTTP: create, read, replace (version), enable, delete; admins
only for changes; a rule that does not compile is a 400 with the field and position;
a rule fires on a real change and its alarm shows in the alarm API."""

from __future__ import annotations

import time

from tests.conftest import ADMIN, OPERATOR, Server
from tests.integration.test_api_commands import BOUND_S, new_light, now_iso
from tests.integration.test_api_entities import problem, uid


def lamp_rule(rule_id: str, **more) -> dict:
    """A rule alarming on a defective streetlight."""
    return {
        "id": rule_id,
        "owner": "lighting",
        "type": "Streetlight",
        "attributes": ["status"],
        "condition": "change.attrs.status != 'ok'",
        "trigger": {"kind": "change"},
        "actions": [{"kind": "alarm", "severity": "medium", "message": "lamp {value}"}],
        **more,
    }


def test_admins_create_read_replace_and_delete_a_rule(server: Server):
    rule_id = uid("r")
    with server.client(ADMIN) as c:
        r = c.post("/api/v1/rules", json=lamp_rule(rule_id))
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/api/v1/rules/{rule_id}"
        assert r.json()["version"] == 1 and r.json()["enabled"] is True
        problem(c.post("/api/v1/rules", json=lamp_rule(rule_id)), 409, "AlreadyExists", "id")
        r = c.put(f"/api/v1/rules/{rule_id}", json=lamp_rule(rule_id, description="v2"))
        assert r.status_code == 200 and r.json()["version"] == 2
        assert c.post(f"/api/v1/rules/{rule_id}/disable").json()["enabled"] is False
        assert c.post(f"/api/v1/rules/{rule_id}/enable").json()["enabled"] is True
        listed = c.get("/api/v1/rules").json()
        assert rule_id in [x["id"] for x in listed["rules"]] and listed["loadErrors"] == []
        assert c.delete(f"/api/v1/rules/{rule_id}").status_code == 204
        problem(c.get(f"/api/v1/rules/{rule_id}"), 404, "ResourceNotFound")


def test_operators_read_rules_but_do_not_change_them(server: Server):
    with server.client(OPERATOR) as c:
        assert c.get("/api/v1/rules").status_code == 200
        problem(c.post("/api/v1/rules", json=lamp_rule(uid("r"))), 403, "Forbidden")


def test_a_rule_that_does_not_compile_is_a_400_with_its_position(server: Server):
    with server.client(ADMIN) as c:
        r = c.post(
            "/api/v1/rules",
            json=lamp_rule(uid("r"), condition="change.attrs.status != 'ok' &&"),
        )
        body = problem(r, 400, "BadRequestData", "condition")
        assert body["position"] == {"line": 1, "column": 31}
        r = c.post("/api/v1/rules", json=lamp_rule(uid("r"), condition="entity.colour == 1"))
        body = problem(r, 400, "BadRequestData", "condition")
        assert "colour" in body["detail"] and body["position"] == {"line": 1, "column": 8}
        bad_cron = {
            "id": uid("r"),
            "owner": "x",
            "trigger": {"kind": "cron", "schedule": "61 * * * *"},
            "actions": [{"kind": "webhook", "url": "http://127.0.0.1:9/"}],
        }
        problem(c.post("/api/v1/rules", json=bad_cron), 400, "BadRequestData", "trigger.schedule")
        problem(
            c.post("/api/v1/rules", content=b"[1]", headers={"content-type": "application/json"}),
            400,
            "BadRequestData",
        )
        rule_id = uid("r")
        assert c.post("/api/v1/rules", json=lamp_rule(rule_id)).status_code == 201
        r = c.put(f"/api/v1/rules/{rule_id}", json=lamp_rule(rule_id, trigger={"kind": "nope"}))
        problem(r, 400, "BadRequestData", "trigger.kind")
        assert c.get(f"/api/v1/rules/{rule_id}").json()["version"] == 1  # nothing half-applied


def test_a_rule_raises_an_alarm_on_a_real_report(server: Server):
    rule_id = uid("r")
    lamp = new_light(server)
    with server.client(ADMIN) as c:
        assert c.post("/api/v1/rules", json=lamp_rule(rule_id)).status_code == 201
    with server.device() as d:
        r = d.post(
            "/api/v1/ingest",
            json=[
                {
                    "id": lamp,
                    "type": "Streetlight",
                    "observedAt": now_iso(),
                    "attrs": {"status": "defectiveLamp"},
                }
            ],
        )
        assert r.status_code in (200, 202), r.text
    deadline = time.monotonic() + BOUND_S
    with server.client() as c:
        while True:
            page = c.get("/api/v1/alarms", params={"rule": rule_id}).json()
            if page["total"]:
                break
            assert time.monotonic() < deadline, c.get(f"/api/v1/rules/{rule_id}").json()
            time.sleep(0.05)
        assert page["alarms"][0]["entity"] == lamp
        assert page["alarms"][0]["message"] == "lamp defectiveLamp"
        status = c.get(f"/api/v1/rules/{rule_id}").json()["status"]
        assert status["firings"] == 1 and status["errors"] == 0
