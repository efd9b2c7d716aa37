"""The mode API over real HTTP: enter, list, leave, roles, bad input, audit.

The shared test server has no simulator, so the mode's commands stay under way:
these tests look at what the API answers and keeps (the engine tests confirm and
restore with simulated devices). Each test works in a municipality of its own.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN, VIEWER, Server
from tests.integration.test_api_entities import NGSI, problem, uid

MODES = "/api/v1/modes"


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def town_with_school(server: Server) -> tuple[str, list[str]]:
    """A municipality of its own with a school and two badge readers on its doors."""
    muni = f"urn:ngsi-ld:Municipality:{uid()}"
    school = f"urn:ngsi-ld:Building:{uid()}"
    rel = {"type": "Relationship", "object": muni}
    docs: list[dict[str, Any]] = [
        {"id": muni, "type": "Municipality", "location": _point(5.0, 47.3)},
        {
            "id": school,
            "type": "Building",
            "location": _point(5.0, 47.3),
            "category": {"type": "Property", "value": "school"},
            "refMunicipality": rel,
        },
    ]
    doors = [f"urn:ngsi-ld:AccessPoint:{uid()}" for _ in range(2)]
    for door in doors:
        docs.append(
            {
                "id": door,
                "type": "AccessPoint",
                "location": _point(5.0, 47.3),
                "badgesEnabled": {"type": "Property", "value": True},
                "refBuilding": {"type": "Relationship", "object": school},
                "refMunicipality": rel,
            }
        )
    with server.client() as c:
        r = c.post(f"{NGSI}/entityOperations/upsert", json=docs)
        assert r.status_code in (201, 204), r.text
    return muni, doors


def test_enter_list_and_leave_a_mode_for_a_municipality(server: Server):
    muni, doors = town_with_school(server)
    scope = {"kind": "municipality", "municipality": muni}
    with server.client() as c:
        r = c.post(f"{MODES}/health-emergency/enter", json={"scope": scope, "reason": "drill"})
        assert r.status_code == 201, r.text
        on = r.json()
        assert on["state"] == "active" and on["enteredBy"] == "operator"
        assert on["scope"] == scope and on["level"] == 4
        assert on["progress"]["total"] == 4  # allowGroups and disable at each door
        listing = c.get(MODES).json()
        assert listing["level"] == 4 and listing["levelName"] == "alert"
        assert [a["name"] for a in listing["active"]] == ["health-emergency"]
        assert {m["name"] for m in listing["modes"]} >= {"health-emergency", "flood", "major-event"}
        detail = c.get(f"{MODES}/health-emergency").json()
        assert sorted({d["entity"] for d in detail["activation"]["devices"]}) == sorted(doors)
        cmd = c.get(f"/api/v1/commands/{detail['activation']['devices'][0]['command']}").json()
        assert cmd["requestedBy"] == "mode:health-emergency"
        again = c.post(f"{MODES}/health-emergency/enter", json={"scope": scope, "reason": "x"})
        problem(again, 409, "Conflict", "name")
        r = c.post(f"{MODES}/health-emergency/leave", json={"reason": "drill over"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "left" and r.json()["leftBy"] == "operator"
        after = c.get(MODES).json()
        assert after["active"] == [] and after["level"] == 1
        assert after["recent"][0]["id"] == on["id"] and after["recent"][0]["state"] == "left"
        problem(c.post(f"{MODES}/health-emergency/leave", json={"reason": "x"}), 409, "Conflict")
    with server.client(ADMIN) as c:
        entries = c.get("/api/v1/audit", params={"action": "mode"}).json()["items"]
    actions = [
        (e["action"], e["detail"]["reason"]) for e in entries if e["target"] == "health-emergency"
    ]
    assert ("mode.enter", "drill") in actions and ("mode.leave", "drill over") in actions


def test_bad_input_gets_a_precise_answer_and_nothing_is_sent(server: Server):
    muni, _ = town_with_school(server)
    with server.client() as c:
        before = c.get("/api/v1/commands").json()["total"]
        cases = [
            ("curfew", {"reason": "x"}, 404, "ResourceNotFound", "name"),
            ("health-emergency", {}, 400, "BadRequestData", "reason"),
            ("health-emergency", {"reason": "x", "colour": 1}, 400, "BadRequestData", "colour"),
            (
                "health-emergency",
                {"reason": "x", "scope": {"kind": "galaxy"}},
                400,
                "BadRequestData",
                "scope.kind",
            ),
            (
                "health-emergency",
                {"reason": "x", "scope": {"kind": "municipality", "municipality": "urn:x:y"}},
                400,
                "BadRequestData",
                "scope.municipality",
            ),
            (
                "flood",  # the new municipality has no flood zone and no bus
                {"reason": "x", "scope": {"kind": "municipality", "municipality": muni}},
                400,
                "BadRequestData",
                "scope",
            ),
        ]
        for name, body, status, kind, field in cases:
            problem(c.post(f"{MODES}/{name}/enter", json=body), status, kind, field)
        problem(c.post(f"{MODES}/flood/leave", json={"reason": "x"}), 409, "Conflict", "name")
        assert c.get("/api/v1/commands").json()["total"] == before
        assert c.get(MODES).json()["active"] == []


def test_a_viewer_reads_modes_but_cannot_enter_one(server: Server):
    with server.client(VIEWER) as c:
        assert c.get(MODES).status_code == 200
        r = c.post(f"{MODES}/health-emergency/enter", json={"reason": "x"})
        assert r.status_code == 403
