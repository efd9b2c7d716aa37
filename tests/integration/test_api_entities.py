"""The NGSI-LD entity API over real HTTP: create, read, query, update, batches, errors."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import VIEWER, Server

NGSI = "/ngsi-ld/v1"


def uid(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def light(local: str, lon: float = 5.04, lat: float = 47.32, **attrs: object) -> dict:
    """A streetlight document at a position."""
    return {
        "id": f"urn:ngsi-ld:Streetlight:{local}",
        "type": "Streetlight",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        **attrs,
    }


def problem(response, status: int, problem_type: str, field: str | None = None) -> dict:
    """Check a ProblemDetails answer and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/" + problem_type)
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return body


def test_create_then_read_an_entity(server: Server):
    local = uid()
    with server.client() as c:
        r = c.post(
            f"{NGSI}/entities", json=light(local, powerState={"type": "Property", "value": "on"})
        )
        assert r.status_code == 201
        assert r.headers["location"] == f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{local}"
        got = c.get(r.headers["location"]).json()
    assert got["type"] == "Streetlight"
    assert got["powerState"] == {"type": "Property", "value": "on"}
    assert got["location"]["value"]["coordinates"] == [5.04, 47.32]


def test_json_ld_content_type_is_accepted_and_others_refused(server: Server):
    doc = light(uid())
    doc["@context"] = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    with server.client() as c:
        r = c.post(f"{NGSI}/entities", json=doc, headers={"Content-Type": "application/ld+json"})
        assert r.status_code == 201
        r = c.post(f"{NGSI}/entities", content=b"id=1", headers={"Content-Type": "text/plain"})
        problem(r, 415, "UnsupportedMediaType", "Content-Type")


def test_duplicate_create_is_409_already_exists(server: Server):
    doc = light(uid())
    with server.client() as c:
        assert c.post(f"{NGSI}/entities", json=doc).status_code == 201
        problem(c.post(f"{NGSI}/entities", json=doc), 409, "AlreadyExists", "id")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "Streetlight-1", "type": "Streetlight"}, "id"),
        ({"id": "urn:ngsi-ld:Unicorn:1", "type": "Uni corn"}, "type"),
        (
            {
                "id": "urn:ngsi-ld:Streetlight:x",
                "type": "Streetlight",
                "powerConsumption": {"type": "Property", "value": -3},
            },
            "powerConsumption.value",
        ),
        ({"id": "urn:ngsi-ld:Streetlight:x", "type": "Streetlight", "wattage": 3}, "wattage"),
        (
            {
                "id": "urn:ngsi-ld:Streetlight:x",
                "type": "Streetlight",
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [5, 91]},
                },
            },
            "location.value.coordinates",
        ),
    ],
)
def test_bad_entities_get_precise_errors(server: Server, body: dict, field: str):
    with server.client() as c:
        problem(c.post(f"{NGSI}/entities", json=body), 400, "BadRequestData", field)


def test_malformed_json_is_invalid_request(server: Server):
    with server.client() as c:
        r = c.post(
            f"{NGSI}/entities", content=b'{"id": ', headers={"Content-Type": "application/json"}
        )
        problem(r, 400, "InvalidRequest", "body")


def test_missing_entity_is_404(server: Server):
    with server.client() as c:
        problem(c.get(f"{NGSI}/entities/urn:ngsi-ld:Streetlight:nope"), 404, "ResourceNotFound")


def test_query_by_type_q_and_geo(server: Server):
    tag = uid("q")
    docs = [
        light(f"{tag}a", 5.0000, 47.0000, powerConsumption=10.0, powerState="on"),
        light(f"{tag}b", 5.0010, 47.0000, powerConsumption=60.0, powerState="off"),
        light(f"{tag}c", 5.0500, 47.0000, powerConsumption=90.0, powerState="on"),
    ]
    with server.client() as c:
        assert c.post(f"{NGSI}/entityOperations/create", json=docs).status_code == 201
        base = {"type": "Streetlight", "idPattern": tag, "options": "keyValues"}

        def ids(**params: str) -> list[str]:
            r = c.get(f"{NGSI}/entities", params={**base, **params})
            assert r.status_code == 200, r.text
            return sorted(e["id"].rsplit(":", 1)[1] for e in r.json())

        assert ids() == [f"{tag}a", f"{tag}b", f"{tag}c"]
        assert ids(q="powerConsumption>50") == [f"{tag}b", f"{tag}c"]
        assert ids(q='powerConsumption>50;powerState=="on"') == [f"{tag}c"]
        assert ids(q='powerConsumption<20|powerState=="off"') == [f"{tag}a", f"{tag}b"]
        assert ids(q="powerConsumption==50..95") == [f"{tag}b", f"{tag}c"]
        near = {
            "georel": "near;maxDistance==200",
            "geometry": "Point",
            "coordinates": "[5.0, 47.0]",
        }
        assert ids(**near) == [f"{tag}a", f"{tag}b"]
        within = {
            "georel": "within",
            "geometry": "Polygon",
            "coordinates": "[[[5.04,46.99],[5.06,46.99],[5.06,47.01],[5.04,47.01],[5.04,46.99]]]",
        }
        assert ids(**within) == [f"{tag}c"]
        assert ids(bbox="4.999,46.999,5.002,47.001") == [f"{tag}a", f"{tag}b"]
        r = c.get(f"{NGSI}/entities", params={**base, "count": "true", "limit": "1"})
        assert r.headers["NGSILD-Results-Count"] == "3" and len(r.json()) == 1
        geo = c.get(
            f"{NGSI}/entities", params=base, headers={"Accept": "application/geo+json"}
        ).json()
        assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "powerConsumption>>1"}, "q"),
        ({"type": "Uni(corn)"}, "type"),
        ({"georel": "near", "geometry": "Point", "coordinates": "[5,47]"}, "georel"),
        (
            {
                "georel": "within",
                "geometry": "Polygon",
                "coordinates": "[[[0,0],[1,1],[1,0],[0,1],[0,0]]]",
            },
            "coordinates",
        ),
        (
            {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[5,"},
            "coordinates",
        ),
        *(
            ({"georel": rel, "geometry": "Point", "coordinates": "[5,47]"}, "georel")
            for rel in (
                "near;minDistance==-1",
                "near;maxDistance==10;minDistance==20",
                "near;maxDistance==10;maxDistance==20",
                "disjoint;maxDistance==10",
                "touches",
            )
        ),
        ({"bbox": "1,2,3"}, "bbox"),
        ({"limit": "5000"}, "limit"),
    ],
)
def test_bad_queries_name_the_parameter(server: Server, params: dict, field: str):
    with server.client() as c:
        r = c.get(f"{NGSI}/entities", params=params)
        assert r.status_code == 400 and r.json()["field"] == field, r.text


def test_attribute_updates_and_deletes(server: Server):
    local = uid()
    eid = f"urn:ngsi-ld:Streetlight:{local}"
    with server.client() as c:
        c.post(f"{NGSI}/entities", json=light(local, powerState="off"))
        assert c.patch(f"{NGSI}/entities/{eid}/attrs", json={"powerState": "on"}).status_code == 204
        r = c.patch(f"{NGSI}/entities/{eid}/attrs", json={"powerConsumption": 5.0})
        assert r.status_code == 207
        assert r.json()["notUpdated"][0]["attributeName"] == "powerConsumption"
        assert (
            c.post(f"{NGSI}/entities/{eid}/attrs", json={"powerConsumption": 5.0}).status_code
            == 204
        )
        r = c.post(
            f"{NGSI}/entities/{eid}/attrs",
            params={"options": "noOverwrite"},
            json={"powerConsumption": 6.0},
        )
        assert r.status_code == 207
        assert (
            c.patch(
                f"{NGSI}/entities/{eid}/attrs/powerConsumption",
                json={"type": "Property", "value": 7.5},
            ).status_code
            == 204
        )
        got = c.get(f"{NGSI}/entities/{eid}", params={"options": "keyValues"}).json()
        assert got["powerState"] == "on" and got["powerConsumption"] == 7.5
        assert c.get(f"{NGSI}/entities/{eid}").json()["powerConsumption"]["value"] == 7.5
        assert c.delete(f"{NGSI}/entities/{eid}/attrs/powerConsumption").status_code == 204
        assert "powerConsumption" not in c.get(f"{NGSI}/entities/{eid}").json()
        problem(c.delete(f"{NGSI}/entities/{eid}/attrs/powerConsumption"), 404, "ResourceNotFound")
        assert c.delete(f"{NGSI}/entities/{eid}").status_code == 204
        problem(c.get(f"{NGSI}/entities/{eid}"), 404, "ResourceNotFound")


def test_batch_with_good_and_bad_items_is_207_and_applies_only_the_good(server: Server):
    tag = uid("b")
    docs = [
        light(f"{tag}1"),
        {"id": "bad", "type": "Streetlight"},
        light(f"{tag}2"),
        light(f"{tag}1"),
    ]
    with server.client() as c:
        r = c.post(f"{NGSI}/entityOperations/create", json=docs)
        assert r.status_code == 207
        body = r.json()
        assert body["success"] == [
            f"urn:ngsi-ld:Streetlight:{tag}1",
            f"urn:ngsi-ld:Streetlight:{tag}2",
        ]
        assert [(e["index"], e["error"]["field"]) for e in body["errors"]] == [
            (1, "[1].id"),
            (3, "[3].id"),
        ]
        upsert = [light(f"{tag}1", powerState="on"), light(f"{tag}3")]
        assert c.post(f"{NGSI}/entityOperations/upsert", json=upsert).status_code == 201
        got = c.get(f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{tag}1").json()
        assert got["powerState"]["value"] == "on"
        r = c.post(
            f"{NGSI}/entityOperations/delete",
            json=[f"urn:ngsi-ld:Streetlight:{tag}3", f"urn:ngsi-ld:Streetlight:{tag}9"],
        )
        assert r.status_code == 207 and r.json()["errors"][0]["index"] == 1


def test_credentials_and_roles(server: Server):
    with server.client(None) as anonymous:
        problem(anonymous.get(f"{NGSI}/entities"), 401, "Unauthorized")
        r = anonymous.get(f"{NGSI}/entities", headers={"Authorization": "Bearer forged"})
        problem(r, 401, "Unauthorized")
        r = anonymous.post("/api/v1/auth/token", data={"username": "viewer", "password": "wrong"})
        problem(r, 401, "Unauthorized")
        assert anonymous.get("/api/v1/health").status_code == 200
    with server.client(VIEWER) as viewer:
        assert viewer.get(f"{NGSI}/entities", params={"type": "Streetlight"}).status_code == 200
        problem(viewer.post(f"{NGSI}/entities", json=light(uid())), 403, "Forbidden")
        problem(viewer.post("/api/v1/types", json={}), 403, "Forbidden")
    with server.device() as device:
        problem(device.get(f"{NGSI}/entities"), 401, "Unauthorized")


def test_register_a_new_type_then_use_it(server: Server):
    from tests.conftest import ADMIN

    name = "Noise" + uuid.uuid4().hex[:6].upper()
    declaration = {
        "name": name,
        "department": "environment",
        "attributes": {"laeq": {"value": "number", "unit": "2N", "minimum": 0, "maximum": 200}},
    }
    with server.client(ADMIN) as admin:
        # unregistered: open-world NGSI-LD, any attribute
        loose = {"id": f"urn:ngsi-ld:{name}:0", "type": name, "laeq": 500, "colour": "red"}
        assert admin.post(f"{NGSI}/entities", json=loose).status_code == 201
        # a first declaration that stored entities do not fit is refused, naming them
        body = problem(
            admin.post("/api/v1/types", json=declaration), 409, "Conflict", "body.attributes"
        )
        (broken,) = body["breaks"]  # its first misfit: the undeclared colour, or laeq's range
        assert broken["attribute"] in ("colour", "laeq") and broken["entities"] == [loose["id"]]
        assert admin.delete(f"{NGSI}/entities/{loose['id']}").status_code == 204
        assert admin.post("/api/v1/types", json=declaration).status_code == 201
        r = admin.post(
            f"{NGSI}/entities", json={"id": f"urn:ngsi-ld:{name}:1", "type": name, "laeq": 61.5}
        )
        assert r.status_code == 201
        # registered: the type's checks apply
        loose["id"] = f"urn:ngsi-ld:{name}:2"
        problem(admin.post(f"{NGSI}/entities", json=loose), 400, "BadRequestData", "laeq")
        assert name in admin.get(f"{NGSI}/types").json()["typeList"]
        problem(
            admin.post("/api/v1/types", json={"name": "lower"}), 400, "BadRequestData", "body.name"
        )


def test_oversized_body_is_413(server: Server):
    with server.device() as device:
        r = device.post(
            "/api/v1/ingest",
            content=b"[" + b" " * (33 * 1024 * 1024) + b"]",
            headers={"Content-Type": "application/json"},
        )
        problem(r, 413, "RequestEntityTooLarge")
        assert device.get("/api/v1/health").status_code == 200


def test_openapi_documents_every_write_body(server: Server):
    spec = server.client(None).get("/openapi.json").json()
    missing = [
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method in ("post", "patch", "put") and "requestBody" not in op
    ]
    assert not missing, missing
