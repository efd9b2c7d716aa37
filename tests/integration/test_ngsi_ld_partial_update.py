"""Conformance of the partial attribute update (ETSI GS CIM 009 v1.8, clause 5.6.4,
``PATCH /entities/{id}/attrs/{attr}``): the members given change, the sub-attributes not
given stay (``urn:ngsi-ld:null`` deletes one), a ``datasetId`` updates that instance
only, an attribute the entity lacks is a 404. Against each store."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from tests.conftest import OPERATOR, VIEWER, Server

NGSI = "/ngsi-ld/v1"


def entity_path(entity_id: str) -> str:
    """The entity's path, its id one percent-encoded segment."""
    return f"{NGSI}/entities/{quote(entity_id, safe='')}"


def new_car(city: Server) -> str:
    """A car whose speed has two sub-attributes and a second instance from a camera."""
    car = f"urn:ngsi-ld:Car:{uuid.uuid4().hex[:8]}"
    doc: dict[str, Any] = {
        "id": car,
        "type": "Car",
        "speed": [
            {
                "type": "Property",
                "value": 40,
                "measuredBy": {"type": "Relationship", "object": "urn:ngsi-ld:Device:radar"},
                "accuracy": {"type": "Property", "value": 2},
            },
            {"type": "Property", "value": 44, "datasetId": "urn:ngsi-ld:Dataset:camera"},
        ],
        "colour": {
            "type": "Property",
            "value": "red",
            "measuredBy": {"type": "Relationship", "object": "urn:ngsi-ld:Device:eye"},
        },
    }
    with city.client(OPERATOR) as c:
        assert c.post(f"{NGSI}/entities", json=doc).status_code == 201
    return car


def read(city: Server, car: str) -> dict[str, Any]:
    """The car as stored."""
    with city.client(VIEWER) as c:
        r = c.get(entity_path(car))
    assert r.status_code == 200, r.text
    return r.json()


def patch(city: Server, car: str, attr: str, body: Any) -> int:
    """``PATCH /attrs/{attr}``'s status."""
    with city.client(OPERATOR) as c:
        return c.patch(f"{entity_path(car)}/attrs/{attr}", json=body).status_code


def test_sub_attributes_not_given_are_kept(city: Server):
    car = new_car(city)
    assert patch(city, car, "colour", {"type": "Property", "value": "blue"}) == 204
    colour = read(city, car)["colour"]
    assert colour["value"] == "blue"
    assert colour["measuredBy"]["object"] == "urn:ngsi-ld:Device:eye"


def test_a_sub_attribute_given_replaces_its_own_and_null_deletes_one(city: Server):
    car = new_car(city)
    body = {
        "value": "green",
        "measuredBy": {"type": "Relationship", "object": "urn:ngsi-ld:Device:camera"},
        "shade": {"type": "Property", "value": "dark"},
    }
    assert patch(city, car, "colour", body) == 204
    colour = read(city, car)["colour"]
    assert colour["measuredBy"]["object"] == "urn:ngsi-ld:Device:camera"
    assert colour["shade"]["value"] == "dark"
    nulled = {"value": "green", "shade": {"type": "Property", "value": "urn:ngsi-ld:null"}}
    assert patch(city, car, "colour", nulled) == 204
    assert "shade" not in read(city, car)["colour"]


def test_a_dataset_id_updates_that_instance_only(city: Server):
    car = new_car(city)
    body = {"type": "Property", "value": 47, "datasetId": "urn:ngsi-ld:Dataset:camera"}
    assert patch(city, car, "speed", body) == 204
    instances = {i.get("datasetId"): i for i in read(city, car)["speed"]}
    assert instances["urn:ngsi-ld:Dataset:camera"]["value"] == 47
    default = instances[None]
    assert default["value"] == 40 and default["accuracy"]["value"] == 2


def test_an_attribute_the_entity_lacks_is_not_found(city: Server):
    car = new_car(city)
    assert patch(city, car, "weight", {"type": "Property", "value": 900}) == 404
