"""Conformance of discovery (ETSI GS CIM 009 v1.8, clauses 5.7.5-5.7.10: retrieve
available entity types, their details and information, available attributes and
their details) and of collection paths given with a trailing slash, as many NGSI-LD
clients send them; against a server on each store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import OPERATOR, VIEWER, Server
from tests.integration.two_stores import server_on_store

NGSI = "/ngsi-ld/v1"
NOT_FOUND = "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"


def _point(lon: float) -> dict:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 47.3]}}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A fresh city of two streetlights and a bus, on each store."""
    with server_on_store(request, tmp_path_factory) as server:
        lamps = [
            {
                "id": f"urn:ngsi-ld:Streetlight:disc-{i}",
                "type": "Streetlight",
                "location": _point(5.0 + i / 100),
                "powerState": {"type": "Property", "value": "on"},
            }
            for i in range(2)
        ]
        bus = {"id": "urn:ngsi-ld:Bus:disc-1", "type": "Bus", "location": _point(5.1)}
        with server.client(OPERATOR) as c:
            r = c.post(f"{NGSI}/entityOperations/create", json=[*lamps, bus])
            assert r.status_code == 201, r.text
        yield server


def get(city: Server, path: str, **params: str) -> dict | list:
    """A viewer's GET, expected to succeed."""
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}{path}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_available_types_are_the_types_of_the_entities_there_are(city: Server):
    body = get(city, "/types")
    assert body["type"] == "EntityTypeList"
    assert body["id"].startswith("urn:ngsi-ld:EntityTypeList:")
    assert body["typeList"] == ["Bus", "Streetlight"]


def test_type_details_name_their_attributes(city: Server):
    assert get(city, "/types", details="true") == [
        {"id": "Bus", "type": "EntityType", "typeName": "Bus", "attributeNames": ["location"]},
        {
            "id": "Streetlight",
            "type": "EntityType",
            "typeName": "Streetlight",
            "attributeNames": ["location", "powerState"],
        },
    ]


def test_type_information_counts_entities_and_gives_attribute_kinds(city: Server):
    assert get(city, "/types/Streetlight") == {
        "id": "Streetlight",
        "type": "EntityTypeInfo",
        "typeName": "Streetlight",
        "entityCount": 2,
        "attributeDetails": [
            {
                "id": "location",
                "type": "Attribute",
                "attributeName": "location",
                "attributeTypes": ["GeoProperty"],
            },
            {
                "id": "powerState",
                "type": "Attribute",
                "attributeName": "powerState",
                "attributeTypes": ["Property"],
            },
        ],
    }


def test_available_attributes_and_their_details(city: Server):
    body = get(city, "/attributes")
    assert body["type"] == "AttributeList" and body["id"].startswith("urn:ngsi-ld:AttributeList:")
    assert body["attributeList"] == ["location", "powerState"]
    location = {
        "id": "location",
        "type": "Attribute",
        "attributeName": "location",
        "attributeCount": 3,
        "attributeTypes": ["GeoProperty"],
        "typeNames": ["Bus", "Streetlight"],
    }
    assert get(city, "/attributes", details="true")[0] == location
    assert get(city, "/attributes/location") == location


@pytest.mark.parametrize("path", ["/types/Tram", "/attributes/speedOfLight"])
def test_what_no_entity_has_is_not_found(city: Server, path: str):
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}{path}")
    assert r.status_code == 404 and r.json()["type"] == NOT_FOUND


def test_discovery_needs_a_credential(city: Server):
    with city.client(None) as anonymous:
        assert anonymous.get(f"{NGSI}/types").status_code == 401


def test_collections_answer_with_a_trailing_slash(city: Server):
    lamp = {"id": "urn:ngsi-ld:Streetlight:disc-slash", "type": "Streetlight"}
    with city.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/entities/", json=lamp)
        assert r.status_code == 201, r.text
        listed = c.get(f"{NGSI}/entities/", params={"type": "Streetlight", "limit": 100})
        assert listed.status_code == 200
        assert lamp["id"] in [e["id"] for e in listed.json()]
        assert c.get(f"{NGSI}/entities/{lamp['id']}/").json()["id"] == lamp["id"]
        assert c.post(f"{NGSI}/entityOperations/upsert/", json=[lamp]).status_code in (201, 204)
        for path in ("/types/", "/attributes/", "/subscriptions/", "/temporal/entities/"):
            assert c.get(f"{NGSI}{path}").status_code == 200, path
        assert c.delete(f"{NGSI}/entities/{lamp['id']}/").status_code == 204
