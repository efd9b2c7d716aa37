"""The 311 desk through Open311 GeoReport v2, against a real server.

Responses are checked against JSON schemas written from the GeoReport v2 text,
read back with an existing Open311 client (``georeport``), and in XML as the spec
requires. Every refusal is the spec's error list, and leaves nothing behind.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jsonschema
import pytest
from georeport import GeoReport

from tests.conftest import ADMIN, DEVICE_KEY, OPERATOR, VIEWER, Server

#: Two municipalities of their own, so other tests' entities do not matter.
NORTH = "urn:ngsi-ld:Municipality:o311-north"
SOUTH = "urn:ngsi-ld:Municipality:o311-south"
IN_NORTH = (10.05, 50.05)
IN_SOUTH = (10.05, 49.95)
OUTSIDE = (12.0, 48.0)

_STRING_OR_NULL = {"type": ["string", "null"]}
SERVICE_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["service_code", "service_name", "metadata", "type"],
        "properties": {
            "service_code": {"type": "string"},
            "service_name": {"type": "string"},
            "description": _STRING_OR_NULL,
            "metadata": {"type": "boolean"},
            "type": {"enum": ["realtime", "batch", "blackbox"]},
            "keywords": _STRING_OR_NULL,
            "group": _STRING_OR_NULL,
        },
    },
}
DEFINITION_SCHEMA = {
    "type": "object",
    "required": ["service_code", "attributes"],
    "properties": {
        "service_code": {"type": "string"},
        "attributes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["variable", "code", "datatype", "required", "order", "description"],
                "properties": {
                    "variable": {"type": "boolean"},
                    "code": {"type": "string"},
                    "datatype": {
                        "enum": [
                            "string",
                            "number",
                            "datetime",
                            "text",
                            "singlevaluelist",
                            "multivaluelist",
                        ]
                    },
                    "required": {"type": "boolean"},
                    "order": {"type": "integer"},
                    "description": {"type": "string"},
                    "values": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["key", "name"],
                            "properties": {"key": {"type": "string"}, "name": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}
CREATED_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "maxItems": 1,
    "items": {
        "type": "object",
        "required": ["service_request_id"],
        "properties": {
            "service_request_id": {"type": "string"},
            "token": {"type": "string"},
            "service_notice": _STRING_OR_NULL,
            "account_id": _STRING_OR_NULL,
        },
    },
}
REQUESTS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["service_request_id", "status", "service_code", "requested_datetime"],
        "properties": {
            "service_request_id": {"type": "string"},
            "status": {"enum": ["open", "closed"]},
            "status_notes": _STRING_OR_NULL,
            "service_name": _STRING_OR_NULL,
            "service_code": {"type": "string"},
            "description": _STRING_OR_NULL,
            "agency_responsible": _STRING_OR_NULL,
            "service_notice": _STRING_OR_NULL,
            "requested_datetime": {"type": "string", "format": "date-time"},
            "updated_datetime": _STRING_OR_NULL,
            "expected_datetime": _STRING_OR_NULL,
            "address": _STRING_OR_NULL,
            "lat": {"type": ["number", "null"]},
            "long": {"type": ["number", "null"]},
            "media_url": _STRING_OR_NULL,
        },
    },
}
ERRORS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}


def _square(lon: float, lat: float) -> dict:
    ring = [[lon, lat], [lon + 0.1, lat], [lon + 0.1, lat + 0.1], [lon, lat + 0.1], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.fixture(scope="module")
def desk(server: Server) -> Iterator[Server]:
    """The shared server, with two municipalities of this module's own."""
    municipalities = [
        {
            "id": NORTH,
            "type": "Municipality",
            "name": "Nordheim",
            "code": "99001",
            "location": {"type": "GeoProperty", "value": _square(10.0, 50.0)},
        },
        {
            "id": SOUTH,
            "type": "Municipality",
            "name": "Sudheim",
            "code": "99002",
            "location": {"type": "GeoProperty", "value": _square(10.0, 49.9)},
        },
    ]
    with server.client(ADMIN) as admin:
        r = admin.post("/ngsi-ld/v1/entityOperations/upsert", json=municipalities)
        assert r.status_code in (201, 204), r.text
    yield server


def post(server: Server, fmt: str = "json", **fields: str) -> httpx.Response:
    """POST a service request as a citizen's app would (form-encoded)."""
    data = {"api_key": DEVICE_KEY, **fields}
    return httpx.post(f"{server.url}/open311/v2/requests.{fmt}", data=data, timeout=30)


def report(server: Server, where: tuple[float, float] = IN_NORTH, **fields: str) -> dict:
    """A request that must be accepted; its creation answer."""
    base = {
        "service_code": "pothole",
        "long": str(where[0]),
        "lat": str(where[1]),
        "description": "A deep hole by the bakery",
    }
    r = post(server, **{**base, **fields})
    assert r.status_code == 201, r.text
    jsonschema.validate(r.json(), CREATED_SCHEMA)
    return r.json()[0]


def count_requests(server: Server) -> int:
    """How many ServiceRequest entities the city keeps."""
    with server.client(VIEWER) as viewer:
        r = viewer.get("/ngsi-ld/v1/entities", params={"type": "ServiceRequest", "count": "true"})
        return int(r.headers["NGSILD-Results-Count"])


def test_discovery_names_the_v2_endpoint_in_both_formats(desk: Server):
    doc = httpx.get(f"{desk.url}/open311/discovery.json").json()
    endpoint = doc["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"].endswith("/open311/v2")
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    xml = httpx.get(f"{desk.url}/open311/discovery.xml")
    assert xml.headers["content-type"].startswith("text/xml")
    assert xml.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml.content)
    formats = [f.text for f in root.iter("format")]
    assert root.tag == "discovery" and "text/xml" in formats


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_client_library_lists_services_and_reads_a_definition(desk: Server, fmt: str):
    client = GeoReport(f"{desk.url}/open311/v2", jurisdiction=NORTH, output_format=fmt)
    services = client.get_service_list()
    codes = {s["service_code"] for s in services}
    assert {"streetlight-out", "pothole", "fire-smoke"} <= codes
    definition = client.get_service_definition("streetlight-out")
    assert definition["service_code"] == "streetlight-out"
    if fmt == "json":
        jsonschema.validate(services, SERVICE_SCHEMA)
        jsonschema.validate(definition, DEFINITION_SCHEMA)
        keys = [v["key"] for v in definition["attributes"][0]["values"]]
    else:
        attribute = definition["attributes"]["attribute"]
        keys = [v["key"] for v in attribute["values"]["value"]]
        assert attribute["required"] == "true"
    assert keys == ["dark", "flickering", "day"]


def test_a_posted_request_is_an_entity_of_its_municipality_and_department(desk: Server):
    created = report(desk, service_code="streetlight-out", **{"attribute[condition]": "dark"})
    request_id = created["service_request_id"]
    with desk.client(VIEWER) as viewer:
        entity = viewer.get(
            f"/ngsi-ld/v1/entities/urn:ngsi-ld:ServiceRequest:{request_id}",
            params={"options": "keyValues"},
        ).json()
    assert entity["refMunicipality"] == NORTH
    assert entity["department"] == "lighting"
    assert entity["answers"] == {"condition": "dark"}
    assert entity["status"] == "open"
    assert entity["location"]["coordinates"] == list(IN_NORTH)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_the_citizen_follows_a_request_by_id_and_by_token(desk: Server, fmt: str):
    created = report(desk, description="Bins burnt out at the corner")
    client = GeoReport(f"{desk.url}/open311/v2", output_format=fmt)
    found = client.get_service_request(created["service_request_id"])
    assert found["service_request_id"] == created["service_request_id"]
    assert found["description"] == "Bins burnt out at the corner"
    assert found["status"] == "open"
    token = httpx.get(f"{desk.url}/open311/v2/tokens/{created['token']}.json").json()
    assert token == [
        {"service_request_id": created["service_request_id"], "token": created["token"]}
    ]
    if fmt == "json":
        jsonschema.validate([found], REQUESTS_SCHEMA)


def test_the_operators_answer_flows_back_to_the_citizen(desk: Server):
    created = report(desk)
    request_id = created["service_request_id"]
    answer = {
        "status": "closed",
        "notes": "Filled this morning",
        "expectedAt": "2027-01-05T08:00:00Z",
    }
    path = f"/api/v1/service-requests/{request_id}/answer"
    with desk.client(VIEWER) as viewer:
        assert viewer.post(path, json=answer).status_code == 403
    with desk.client(OPERATOR) as operator:
        r = operator.post(path, json=answer)
        assert r.status_code == 200, r.text
        assert operator.post(path, json={"status": "done"}).status_code == 400
    found = httpx.get(f"{desk.url}/open311/v2/requests/{request_id}.json").json()[0]
    assert found["status"] == "closed"
    assert found["status_notes"] == "Filled this morning"
    assert found["expected_datetime"] == "2027-01-05T08:00:00.000Z"
    assert found["updated_datetime"] >= found["requested_datetime"]


def test_search_filters_by_service_status_jurisdiction_and_dates(desk: Server):
    mine = report(desk, where=IN_SOUTH, service_code="graffiti")["service_request_id"]
    url = f"{desk.url}/open311/v2/requests.json"
    by_code = httpx.get(url, params={"service_code": "graffiti"}).json()
    jsonschema.validate(by_code, REQUESTS_SCHEMA)
    assert mine in {r["service_request_id"] for r in by_code}
    assert {r["service_code"] for r in by_code} == {"graffiti"}
    north = httpx.get(url, params={"jurisdiction_id": "99001", "service_code": "graffiti"}).json()
    assert mine not in {r["service_request_id"] for r in north}
    closed = httpx.get(url, params={"status": "closed"}).json()
    assert mine not in {r["service_request_id"] for r in closed}
    past = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = httpx.get(url, params={"end_date": past}).json()
    assert mine not in {r["service_request_id"] for r in before}
    both = httpx.get(url, params={"service_request_id": f"{mine},nonexistent"}).json()
    assert [r["service_request_id"] for r in both] == [mine]


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"service_code": "no-such-service"}, 404, "service_code"),
        ({"lat": None, "long": None}, 400, "location"),
        ({"long": None}, 400, "long"),
        ({"description": "x" * 4001}, 400, "4000"),
        ({"api_key": "cpd_wrong"}, 403, "api_key"),
        ({"api_key": None}, 403, "api_key"),
        ({"jurisdiction_id": "urn:ngsi-ld:Municipality:nowhere"}, 404, "jurisdiction_id"),
        ({"jurisdiction_id": SOUTH}, 400, "outside the jurisdiction"),
        ({"long": str(OUTSIDE[0]), "lat": str(OUTSIDE[1])}, 400, "outside every municipality"),
        ({"lat": "north"}, 400, "lat"),
        ({"service_code": "streetlight-out"}, 400, "attribute[condition]"),
        ({"service_code": "streetlight-out", "attribute[condition]": "broken"}, 400, "condition"),
        ({"attribute[colour]": "red"}, 400, "attribute[colour]"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
    ],
)
def test_a_refused_request_is_an_error_list_and_leaves_nothing(
    desk: Server, fields: dict, status: int, words: str
):
    base = {
        "api_key": DEVICE_KEY,
        "service_code": "pothole",
        "long": str(IN_NORTH[0]),
        "lat": str(IN_NORTH[1]),
        "description": "A hole",
    }
    data = {k: v for k, v in {**base, **fields}.items() if v is not None}
    before = count_requests(desk)
    r = httpx.post(f"{desk.url}/open311/v2/requests.json", data=data)
    assert r.status_code == status, r.text
    jsonschema.validate(r.json(), ERRORS_SCHEMA)
    assert r.json()[0]["code"] == status
    assert words in r.json()[0]["description"]
    assert count_requests(desk) == before


def test_errors_come_in_xml_for_xml_clients(desk: Server):
    r = post(desk, "xml", service_code="no-such-service", lat="50.05", long="10.05")
    assert r.status_code == 404
    root = ET.fromstring(r.content)
    assert root.tag == "errors"
    assert root.find("error/code").text == "404"
    assert "service_code" in root.find("error/description").text


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/open311/v2/services.yaml", {}, 404),
        ("/open311/v2/services.json", {"jurisdiction_id": "atlantis"}, 404),
        ("/open311/v2/services/no-such-service.json", {}, 404),
        ("/open311/v2/requests/NOPE-0000.json", {}, 404),
        ("/open311/v2/tokens/not-a-token.json", {}, 404),
        ("/open311/v2/requests.json", {"status": "pending"}, 400),
        ("/open311/v2/requests.json", {"start_date": "yesterday"}, 400),
        (
            "/open311/v2/requests.json",
            {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
            400,
        ),
        (
            "/open311/v2/requests.json",
            {"start_date": "2026-06-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"},
            400,
        ),
    ],
)
def test_bad_reads_are_error_lists(desk: Server, path: str, params: dict, status: int):
    r = httpx.get(desk.url + path, params=params)
    assert r.status_code == status, r.text
    jsonschema.validate(r.json(), ERRORS_SCHEMA)


def test_a_form_that_is_not_urlencoded_is_refused(desk: Server):
    r = httpx.post(
        f"{desk.url}/open311/v2/requests.json",
        files={"media": ("x.jpg", b"\xff\xd8", "image/jpeg")},
        data={"api_key": DEVICE_KEY},
    )
    assert r.status_code == 415
    assert "media_url" in r.json()[0]["description"]
