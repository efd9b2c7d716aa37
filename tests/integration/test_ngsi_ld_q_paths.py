"""Conformance of q-language attribute paths (ETSI GS CIM 009 v1.8, clause 4.9): ``a.b``
names a sub-attribute (a property or relationship of a property), ``a[b]`` a key inside
a structured value, nested (``a[b][c]``, ``a.b[c]``), with every operator; in
``GET /entities``, ``POST /entityOperations/query``, subscriptions and the temporal API;
a malformed path is a 400 BadRequestData naming its position. Against each store."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR, VIEWER, Server

NGSI = "/ngsi-ld/v1"
TAG = uuid.uuid4().hex[:8]
CAR = f"urn:ngsi-ld:Car:{TAG}-a"
VAN = f"urn:ngsi-ld:Car:{TAG}-b"
SENSOR = "urn:ngsi-ld:Device:radar-1"


def car(entity_id: str, speed: float, locality: str, by: str, floors: int) -> dict[str, Any]:
    """A car whose speed was measured by a device (with a confidence) and whose address
    is a structured value."""
    return {
        "id": entity_id,
        "type": "Car",
        "speed": {
            "type": "Property",
            "value": speed,
            "measuredBy": {
                "type": "Relationship",
                "object": by,
                "confidence": {"type": "Property", "value": floors / 10},
            },
            "accuracy": {"type": "Property", "value": {"metres": floors, "unit": "m"}},
        },
        "address": {
            "type": "Property",
            "value": {
                "addressLocality": locality,
                "building": {"floors": floors, "listed": floors > 3},
            },
        },
        "observedAt": {"type": "Property", "value": "2026-11-20T10:00:00Z"},
    }


@pytest.fixture(scope="module")
def cars(city: Server) -> Server:
    """Two cars in the module's empty city."""
    with city.client(OPERATOR) as c:
        r = c.post(
            f"{NGSI}/entityOperations/create",
            json=[
                car(CAR, 42.0, "Dijon", SENSOR, 5),
                car(VAN, 61.0, "Beaune", "urn:ngsi-ld:Device:camera-2", 2),
            ],
        )
        assert r.status_code == 201, r.text
    return city


def ids(response: httpx.Response) -> set[str]:
    """The ids of the entities an answer gives."""
    assert response.status_code == 200, response.text
    return {e["id"] for e in response.json()}


def query(city: Server, q: str) -> httpx.Response:
    """``GET /entities?type=Car&q=...`` as a viewer."""
    with city.client(VIEWER) as c:
        return c.get(f"{NGSI}/entities", params={"type": "Car", "q": q, "limit": 100})


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (f'speed.measuredBy=="{SENSOR}"', {CAR}),
        (f"speed.measuredBy=={SENSOR}", {CAR}),  # a bare URI
        (f'speed.measuredBy!="{SENSOR}"', {VAN}),
        ("speed.measuredBy.confidence>0.3", {CAR}),
        ("speed.measuredBy.confidence==0.1..0.3", {VAN}),
        ("speed.accuracy[metres]<=2", {VAN}),
        ('address[addressLocality]=="Dijon"', {CAR}),
        ('address[addressLocality]=="Dijon","Beaune"', {CAR, VAN}),
        ('address[addressLocality]~="^Bea"', {VAN}),
        ('address[addressLocality]!~="^Bea"', {CAR}),
        ("address[building][floors]>=3", {CAR}),
        ("address[building][listed]==true", {CAR}),
        ("address[building][floors]", {CAR, VAN}),
        ("address[postalCode]", set()),
        ("speed.measuredBy", {CAR, VAN}),
        ("speed.unknown", set()),
        ('address[building][floors]=="5"', set()),  # a number is not the string "5"
        ("address[addressLocality]>3", set()),  # nor a string a number
        ("address[nowhere]!=3", set()),  # != needs something to differ
        ('speed>50|address[addressLocality]=="Dijon"', {CAR, VAN}),
        ('speed>50;address[addressLocality]=="Dijon"', set()),
        ("(speed.measuredBy.confidence>0.3;speed<50)|address[building][floors]==2", {CAR, VAN}),
    ],
)
def test_a_path_selects_by_sub_attribute_or_key(cars: Server, q: str, expected: set[str]):
    assert ids(query(cars, q)) == expected


@pytest.mark.parametrize(
    ("q", "position"),
    [
        ("speed..measuredBy>1", 6),
        ("address[addressLocality==1", 23),
        ("address[]==1", 8),
        ("address[city].x==1", 13),
        ("speed.>1", 6),
        ("(speed>1;address[a][b]c==1)", 22),
    ],
)
def test_a_malformed_path_is_refused_naming_its_position(cars: Server, q: str, position: int):
    r = query(cars, q)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"].endswith("/BadRequestData") and body["field"] == "q"
    assert f"position {position}" in body["detail"]


def test_the_query_operation_takes_paths(cars: Server):
    with cars.client(VIEWER) as c:
        r = c.post(
            f"{NGSI}/entityOperations/query",
            json={
                "type": "Query",
                "entities": [{"type": "Car"}],
                "q": 'address[addressLocality]=="Beaune";speed.measuredBy.confidence<0.5',
            },
        )
    assert ids(r) == {VAN}


def test_the_temporal_api_selects_with_paths(cars: Server):
    with cars.client(VIEWER) as c:
        r = c.get(
            f"{NGSI}/temporal/entities",
            params={"type": "Car", "q": "address[building][floors]>3", "attrs": "speed"},
        )
    assert ids(r) == {CAR}


def test_a_subscription_takes_a_path_and_refuses_a_bad_one(cars: Server):
    base = {
        "type": "Subscription",
        "entities": [{"type": "Car"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/none"}},
    }
    with cars.client(OPERATOR) as c:
        ok = c.post(f"{NGSI}/subscriptions", json={**base, "q": "address[city]==1"})
        assert ok.status_code == 201, ok.text
        c.delete(ok.headers["location"])
        bad = c.post(f"{NGSI}/subscriptions", json={**base, "q": "speed.[x]==1"})
    assert bad.status_code == 400, bad.text
    assert bad.json()["field"] == "q" and "position 6" in bad.json()["detail"]
