"""The types API over HTTP: versions, 409 with what breaks, force, delete."""

from __future__ import annotations

import uuid

from tests.conftest import ADMIN, VIEWER, Server

NGSI = "/ngsi-ld/v1"


def test_replacing_a_built_in_type_is_refused_with_what_breaks(server: Server):
    light_id = f"urn:ngsi-ld:Streetlight:types-{uuid.uuid4().hex[:8]}"
    with server.client(ADMIN) as admin:
        r = admin.post(f"{NGSI}/entities", json={"id": light_id, "type": "Streetlight"})
        assert r.status_code == 201
        r = admin.post(f"{NGSI}/entities/{light_id}/attrs", json={"powerState": "on"})
        assert r.status_code == 204
        empty = {"name": "Streetlight", "department": "lighting", "attributes": {}}
        for params in ({}, {"force": "true"}):
            r = admin.post("/api/v1/types", json=empty, params=params)
            assert r.status_code == 409, r.text
            assert r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert "built-in" in problem["detail"]
            power = next(b for b in problem["breaks"] if b["attribute"] == "powerState")
            assert power["change"] == "removed" and power["count"] >= 1
            assert light_id in power["entities"] or len(power["entities"]) == 20
        # still the built-in type: readings keep being accepted
        assert admin.get("/api/v1/types/Streetlight").json()["version"] == 1
    with server.device() as device:
        reading = {
            "id": light_id,
            "type": "Streetlight",
            "observedAt": "2026-11-20T10:00:00Z",
            "attrs": {"powerState": "off"},
        }
        assert device.post("/api/v1/ingest", json=[reading]).status_code == 200


def test_a_run_time_type_has_versions_and_can_be_deleted(server: Server):
    name = "Kiosk" + uuid.uuid4().hex[:6].upper()
    entity_id = f"urn:ngsi-ld:{name}:1"
    declaration = {
        "name": name,
        "department": "economy",
        "attributes": {"visitors": {"value": "integer", "minimum": 0, "maximum": 1000}},
    }
    narrowed = {**declaration, "attributes": {"visitors": {"value": "integer", "maximum": 5}}}
    with server.client(ADMIN) as admin:
        r = admin.post("/api/v1/types", json=declaration)
        assert r.status_code == 201 and r.json()["version"] == 1
        assert admin.post("/api/v1/types", json=declaration).status_code == 200
        r = admin.post(f"{NGSI}/entities", json={"id": entity_id, "type": name, "visitors": 12})
        assert r.status_code == 201
        r = admin.post("/api/v1/types", json=narrowed)
        assert r.status_code == 409
        assert r.json()["breaks"] == [
            {
                "attribute": "visitors",
                "change": "range",
                "detail": "range 0..1000 -> None..5",
                "count": 1,
                "entities": [entity_id],
            }
        ]
        r = admin.post("/api/v1/types", json=narrowed, params={"force": "true"})
        assert r.status_code == 200 and r.json()["version"] == 2
        versions = admin.get(f"/api/v1/types/{name}/versions").json()["versions"]
        assert [(v["version"], v["forced"], v["registeredBy"]) for v in versions] == [
            (1, False, "admin"),
            (2, True, "admin"),
        ]
        with server.client(VIEWER) as viewer:
            assert viewer.delete(f"/api/v1/types/{name}").status_code == 403
        r = admin.delete(f"/api/v1/types/{name}")
        assert r.status_code == 409 and r.json()["count"] == 1
        assert r.json()["entities"] == [entity_id]
        assert admin.delete(f"{NGSI}/entities/{entity_id}").status_code == 204
        assert admin.delete(f"/api/v1/types/{name}").status_code == 204
        assert admin.get(f"/api/v1/types/{name}").status_code == 404
        assert admin.delete(f"/api/v1/types/{name}").status_code == 404
        assert admin.delete("/api/v1/types/Streetlight").status_code == 409
        # the history outlives the type
        assert len(admin.get(f"/api/v1/types/{name}/versions").json()["versions"]) == 2


def test_a_type_may_not_name_an_attribute_after_an_entity_member(server: Server):
    name = "Booth" + uuid.uuid4().hex[:6].upper()
    with server.client(ADMIN) as admin:
        for member in ("scope", "createdAt"):
            attributes = {member: {"value": "string"}, "label": {"value": "string"}}
            declaration = {"name": name, "department": "economy", "attributes": attributes}
            r = admin.post("/api/v1/types", json=declaration)
            assert r.status_code == 400, r.text
            assert r.json()["field"] == f"body.attributes.{member}"
        assert admin.get(f"/api/v1/types/{name}").status_code == 404
