"""Conformance of linked entity retrieval (ETSI GS CIM 009 v1.8, clause 4.5.23, the
``join`` and ``joinLevel`` parameters of retrieve and query): ``join=inline`` puts each
linked entity under its relationship (``entity``; ``entityList`` for a
ListRelationship), ``join=flat`` appends the linked entities to the answer, once each;
``joinLevel`` (default 1) says how many links deep. A linked entity the caller may not
see is not joined. Against each store."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import OPERATOR, VIEWER, Server

NGSI = "/ngsi-ld/v1"
BAD_REQUEST = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
CAR = "urn:ngsi-ld:Vehicle:A4567"
PARKING = "urn:ngsi-ld:CarPark:Downtown1"
OTHER_PARKING = "urn:ngsi-ld:CarPark:Downtown2"
COMPANY = "urn:ngsi-ld:Company:Parkers"
OFFICER = "urn:ngsi-ld:PoliceUnit:p1"  # police data: the viewer may not see it
STORE = "urn:ngsi-ld:Shop:store001"
SHELVES = ["urn:ngsi-ld:Shelf:1", "urn:ngsi-ld:Shelf:2"]
NO_SHELF = "urn:ngsi-ld:Shelf:none"
DRONE = "urn:ngsi-ld:Drone:d1"
RADAR = "urn:ngsi-ld:Device:radar1"
CALIBRATOR = "urn:ngsi-ld:Device:calibrator1"


def rel(target: Any) -> dict[str, Any]:
    """A Relationship to ``target`` (one id or several)."""
    return {"type": "Relationship", "object": target}


def name(text: str) -> dict[str, Any]:
    """A name Property."""
    return {"type": "Property", "value": text}


DOCS = [
    {
        "id": CAR,
        "type": "Vehicle",
        "speed": {"type": "Property", "value": 80},
        "isParked": rel(PARKING),
        "drivenBy": rel(OFFICER),
        "nearBy": rel([PARKING, OTHER_PARKING]),
    },
    {
        "id": PARKING,
        "type": "CarPark",
        "name": name("Downtown 1"),
        "operatedBy": rel(COMPANY),
    },
    {"id": OTHER_PARKING, "type": "CarPark", "name": name("Downtown 2")},
    {"id": COMPANY, "type": "Company", "name": name("Parkers"), "owns": rel(CAR)},
    {
        "id": OFFICER,
        "type": "PoliceUnit",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5, 47]}},
    },
    {
        "id": STORE,
        "type": "Shop",
        "furniture": {"type": "ListRelationship", "objectList": [*SHELVES, NO_SHELF]},
    },
    *({"id": s, "type": "Shelf", "name": name(s[-1])} for s in SHELVES),
    {
        "id": DRONE,
        "type": "Drone",
        # a relationship of a property, and one of that relationship
        "speed": {
            "type": "Property",
            "value": 12,
            "measuredBy": {**rel(RADAR), "calibratedBy": rel(CALIBRATOR)},
        },
    },
    {"id": RADAR, "type": "Device", "name": name("Radar 1")},
    {"id": CALIBRATOR, "type": "Device", "name": name("Calibrator 1")},
]


@pytest.fixture(scope="module")
def linked(city: Server) -> Server:
    """A car parked in a car park run by a company that owns the car, driven by a
    police unit; a shop whose furniture lists two shelves (and one that is not)."""
    with city.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/entityOperations/create", json=DOCS)
        assert r.status_code == 201, r.text
    return city


def plain(city: Server, entity_id: str, **params: str) -> dict[str, Any]:
    """An entity as it reads without join."""
    return read(city, entity_id, **params)


def read(city: Server, entity_id: str, who: tuple[str, str] = VIEWER, **params: str) -> Any:
    """``GET /entities/{id}`` with these parameters."""
    with city.client(who) as c:
        r = c.get(f"{NGSI}/entities/{quote(entity_id, safe='')}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def query(city: Server, who: tuple[str, str] = VIEWER, **params: str) -> list[dict[str, Any]]:
    """``GET /entities`` with these parameters."""
    with city.client(who) as c:
        r = c.get(f"{NGSI}/entities", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_inline_puts_each_linked_entity_under_its_relationship(linked: Server):
    car = read(linked, CAR, join="inline")
    assert car["isParked"] == {**rel(PARKING), "entity": plain(linked, PARKING)}
    assert car["nearBy"]["entity"] == [plain(linked, PARKING), plain(linked, OTHER_PARKING)]
    assert car["speed"] == {"type": "Property", "value": 80}
    # one level by default: the car park's own relationship is not followed
    assert "entity" not in car["isParked"]["entity"]["operatedBy"]


def test_a_linked_entity_the_caller_may_not_see_is_not_joined(linked: Server):
    assert read(linked, CAR, join="inline")["drivenBy"] == rel(OFFICER)
    seen = read(linked, CAR, OPERATOR, join="inline")["drivenBy"]
    assert seen["entity"] == read(linked, OFFICER, OPERATOR)
    flat = query(linked, type="Vehicle", join="flat")
    assert OFFICER not in {e["id"] for e in flat}


def test_join_level_follows_the_links_of_linked_entities(linked: Server):
    car = read(linked, CAR, join="inline", joinLevel="2")
    company = car["isParked"]["entity"]["operatedBy"]["entity"]
    assert company["name"] == name("Parkers")
    assert "entity" not in company["owns"]  # a third level was not asked for
    deeper = read(linked, CAR, join="inline", joinLevel="5")
    again = deeper["isParked"]["entity"]["operatedBy"]["entity"]["owns"]["entity"]
    # the car was met already: it is given, its links not followed a second time
    assert again == plain(linked, CAR)


def test_flat_appends_the_linked_entities_once_each(linked: Server):
    ids = [e["id"] for e in query(linked, type="Vehicle", join="flat")]
    assert ids == [CAR, PARKING, OTHER_PARKING]
    ids = [e["id"] for e in query(linked, type="Vehicle", join="flat", joinLevel="3")]
    assert ids == [CAR, PARKING, OTHER_PARKING, COMPANY]  # the car is not repeated
    both = query(linked, type="Vehicle,CarPark", join="flat")
    assert sorted(e["id"] for e in both) == sorted([CAR, PARKING, OTHER_PARKING, COMPANY])
    assert len(both) == 4
    assert read(linked, CAR, join="flat") == [
        plain(linked, CAR),
        *query(linked, id=f"{PARKING},{OTHER_PARKING}"),
    ]


def test_a_list_relationship_gets_an_entity_list(linked: Server):
    furniture = read(linked, STORE, join="inline")["furniture"]
    assert furniture["objectList"] == [*SHELVES, NO_SHELF]
    assert furniture["entityList"] == [plain(linked, s) for s in SHELVES]
    flat = read(linked, STORE, join="flat")
    assert [e["id"] for e in flat] == [STORE, *SHELVES]


def test_key_values_gives_the_linked_entity_for_its_uri(linked: Server):
    car = read(linked, CAR, join="inline", options="keyValues")
    assert car["isParked"] == plain(linked, PARKING, options="keyValues")
    assert car["nearBy"] == [
        plain(linked, PARKING, options="keyValues"),
        plain(linked, OTHER_PARKING, options="keyValues"),
    ]
    assert car["drivenBy"] == OFFICER and car["speed"] == 80
    furniture = read(linked, STORE, join="inline", options="keyValues")["furniture"]
    shelves = [plain(linked, s, options="keyValues") for s in SHELVES]
    assert furniture == {"entityList": [*shelves, NO_SHELF]}


def test_concise_keeps_the_object_beside_the_entity(linked: Server):
    parked = read(linked, CAR, join="inline", options="concise")["isParked"]
    assert parked == {"object": PARKING, "entity": plain(linked, PARKING, options="concise")}


def test_pick_and_attrs_shape_the_matched_entities_only(linked: Server):
    flat = query(linked, type="Vehicle", join="flat", pick="id,isParked")
    assert flat[0] == {"id": CAR, "isParked": rel(PARKING)}
    assert flat[1] == plain(linked, PARKING)
    [car] = query(linked, type="Vehicle", join="inline", attrs="isParked")
    assert set(car) == {"id", "type", "isParked"}
    assert car["isParked"]["entity"] == plain(linked, PARKING)


def test_a_query_document_takes_join(linked: Server):
    body = {"type": "Query", "entities": [{"type": "Shop"}]}
    with linked.client(VIEWER) as c:
        r = c.post(f"{NGSI}/entityOperations/query", params={"join": "flat"}, json=body)
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == [STORE, *SHELVES]


def test_join_none_is_the_plain_answer(linked: Server):
    assert read(linked, CAR, join="@none") == plain(linked, CAR)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"join": "nested"}, "join"),
        ({"join": "INLINE"}, "join"),
        ({"join": "inline", "joinLevel": "0"}, "joinLevel"),
        ({"join": "inline", "joinLevel": "6"}, "joinLevel"),
        ({"join": "flat", "joinLevel": "two"}, "joinLevel"),
    ],
)
def test_a_bad_join_is_400_naming_it(linked: Server, params: dict[str, str], field: str):
    with linked.client(VIEWER) as c:
        for path in (f"{NGSI}/entities", f"{NGSI}/entities/{quote(CAR, safe='')}"):
            r = c.get(path, params={"type": "Vehicle", **params})
            assert r.status_code == 400, r.text
            assert (r.json()["type"], r.json()["field"]) == (BAD_REQUEST, field)


def test_geojson_flat_appends_features_and_inline_fills_properties(linked: Server):
    with linked.client(VIEWER) as c:
        headers = {"Accept": "application/geo+json"}
        flat = c.get(
            f"{NGSI}/entities", params={"type": "Vehicle", "join": "flat"}, headers=headers
        )
        inline = c.get(
            f"{NGSI}/entities/{quote(CAR, safe='')}", params={"join": "inline"}, headers=headers
        )
    assert [f["id"] for f in flat.json()["features"]] == [CAR, PARKING, OTHER_PARKING]
    parked = inline.json()["properties"]["isParked"]
    assert parked["entity"] == plain(linked, PARKING)


def test_inline_entities_are_compacted_with_the_readers_context(linked: Server):
    default = "https://uri.etsi.org/ngsi-ld/default-context/"
    context = {"parkedIn": default + "isParked", "runBy": default + "operatedBy"}
    with linked.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/jsonldContexts", json={"@context": context})
        assert r.status_code == 201, r.text
        rel_ctx = "http://www.w3.org/ns/json-ld#context"
        header = {"Link": f'<{r.headers["location"]}>; rel="{rel_ctx}"; type="application/ld+json"'}
    with linked.client(VIEWER) as c:
        car = c.get(
            f"{NGSI}/entities/{quote(CAR, safe='')}", params={"join": "inline"}, headers=header
        )
    assert car.status_code == 200, car.text
    parking = car.json()["parkedIn"]["entity"]
    assert parking["runBy"] == rel(COMPANY) and "operatedBy" not in parking


def test_relationships_of_sub_attributes_are_joined_too(linked: Server):
    drone = read(linked, DRONE, join="inline")
    measured = drone["speed"]["measuredBy"]
    assert measured["object"] == RADAR and measured["entity"] == plain(linked, RADAR)
    assert measured["calibratedBy"]["entity"] == plain(linked, CALIBRATOR)
    assert drone["speed"]["value"] == 12
    flat = query(linked, type="Drone", join="flat")
    assert [e["id"] for e in flat] == [DRONE, RADAR, CALIBRATOR]
