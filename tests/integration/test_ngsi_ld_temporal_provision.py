"""Conformance of temporal provision (ETSI GS CIM 009 v1.8, clauses 5.6.11-5.6.16 and
6.18-6.22): create or add to an entity's temporal evolution, add attribute instances,
change and remove one instance (by its ``instanceId``), remove an attribute's and an
entity's temporal evolution; against a server on each store."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import OPERATOR, VIEWER, Server

NGSI = "/ngsi-ld/v1"
T = f"{NGSI}/temporal/entities"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def at(minute: int) -> str:
    """An instant on 1 November 2026, ``minute`` minutes past 10:00."""
    return f"2026-11-01T{10 + minute // 60:02d}:{minute % 60:02d}:00.000Z"


def watts(*pairs: tuple[int, float]) -> list[dict[str, Any]]:
    """powerConsumption instances, (minute, watts) each."""
    return [{"type": "Property", "value": w, "observedAt": at(m)} for m, w in pairs]


def lamp_past() -> dict[str, Any]:
    """A new streetlight's temporal entity: three power readings, two states."""
    return {
        "id": f"urn:ngsi-ld:Streetlight:tp-{uuid.uuid4().hex[:8]}",
        "type": "Streetlight",
        "powerConsumption": watts((0, 40.0), (15, 42.5), (30, 0.0)),
        "powerState": [
            {"type": "Property", "value": "on", "observedAt": at(0)},
            {"type": "Property", "value": "off", "observedAt": at(30)},
        ],
    }


def one(entity_id: str) -> str:
    """The temporal path of an entity."""
    return f"{T}/{quote(entity_id, safe='')}"


def evolution(city: Server, entity_id: str, attr: str) -> list[dict[str, Any]]:
    """The instances of one attribute, as the temporal API shows them."""
    with city.client(VIEWER) as c:
        r = c.get(one(entity_id), params={"attrs": attr})
    assert r.status_code == 200, r.text
    return r.json().get(attr, [])


def send(city: Server, method: str, path: str, body: Any = None) -> httpx.Response:
    """An operator's request."""
    with city.client(OPERATOR) as c:
        return c.request(method, path, json=body)


def test_creating_a_temporal_entity_writes_its_past_and_its_present(city: Server):
    doc = lamp_past()
    r = send(city, "POST", T, doc)
    assert r.status_code == 201, r.text
    with city.client(VIEWER) as c:
        assert c.get(r.headers["location"]).json()["id"] == doc["id"]  # where it now is
    shown = evolution(city, doc["id"], "powerConsumption")
    assert [(i["value"], i["observedAt"]) for i in shown] == [
        (40.0, at(0)),
        (42.5, at(15)),
        (0.0, at(30)),
    ]
    assert len({i["instanceId"] for i in shown}) == 3  # each instance named, none twice
    with city.client(VIEWER) as c:
        now = c.get(f"{NGSI}/entities/{doc['id']}", params={"options": "keyValues"}).json()
    assert (now["powerConsumption"], now["powerState"]) == (0.0, "off")  # the newest


def test_posting_again_adds_instances_and_an_older_one_leaves_the_state(city: Server):
    doc = lamp_past()
    assert send(city, "POST", T, doc).status_code == 201
    more = {"id": doc["id"], "type": "Streetlight", "powerConsumption": watts((20, 41.0))}
    assert send(city, "POST", T, more).status_code == 204
    attrs = {"powerConsumption": watts((45, 5.0))}
    assert send(city, "POST", f"{one(doc['id'])}/attrs", attrs).status_code == 204
    shown = evolution(city, doc["id"], "powerConsumption")
    assert [i["observedAt"] for i in shown] == [at(m) for m in (0, 15, 20, 30, 45)]
    with city.client(VIEWER) as c:
        now = c.get(f"{NGSI}/entities/{doc['id']}", params={"options": "keyValues"}).json()
    assert now["powerConsumption"] == 5.0  # minute 45 is the newest now


def test_one_instance_is_changed_and_removed_by_its_instance_id(city: Server):
    doc = lamp_past()
    assert send(city, "POST", T, doc).status_code == 201
    middle = evolution(city, doc["id"], "powerConsumption")[1]
    path = f"{one(doc['id'])}/attrs/powerConsumption/{quote(middle['instanceId'], safe='')}"
    assert send(city, "PATCH", path, {"type": "Property", "value": 44.0}).status_code == 204
    changed = evolution(city, doc["id"], "powerConsumption")[1]
    assert (changed["value"], changed["observedAt"]) == (44.0, at(15))
    moved = send(city, "PATCH", path, {"value": 1.0, "observedAt": at(16)})
    assert moved.status_code == 400 and moved.json()["field"] == "observedAt"
    assert send(city, "DELETE", path).status_code == 204
    assert [i["observedAt"] for i in evolution(city, doc["id"], "powerConsumption")] == [
        at(0),
        at(30),
    ]
    gone = send(city, "DELETE", path)
    assert gone.status_code == 404 and gone.json()["type"] == ERRORS + "ResourceNotFound"
    assert send(city, "PATCH", path, {"value": 1.0}).status_code == 404


def test_an_attributes_and_an_entitys_evolution_are_removed(city: Server):
    doc = lamp_past()
    assert send(city, "POST", T, doc).status_code == 201
    assert send(city, "DELETE", f"{one(doc['id'])}/attrs/powerState").status_code == 204
    assert evolution(city, doc["id"], "powerState") == []
    assert len(evolution(city, doc["id"], "powerConsumption")) == 3  # the other stays
    assert send(city, "DELETE", f"{one(doc['id'])}/attrs/powerState").status_code == 404
    assert send(city, "DELETE", one(doc["id"])).status_code == 204
    with city.client(VIEWER) as c:
        assert c.get(one(doc["id"])).status_code == 404
        assert c.get(f"{NGSI}/entities/{doc['id']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"powerConsumption": [{"type": "Property", "value": 1.0}]}, "powerConsumption[0]"),
        (
            {
                "powerState": [
                    {"value": "on", "observedAt": at(1)},
                    {"value": 3, "observedAt": at(2)},
                ]
            },
            "powerState[1].value",
        ),
        ({"powerConsumption": []}, "powerConsumption"),
        ({"type": "Bus"}, "type"),
        ({"id": "not a uri"}, "id"),
    ],
)
def test_a_bad_temporal_entity_names_the_instance_and_writes_nothing(
    city: Server, change: dict[str, Any], field: str
):
    doc = {**lamp_past(), **change}
    if field == "type":  # a type other than the existing entity's
        original = lamp_past()
        assert send(city, "POST", T, original).status_code == 201
        doc["id"] = original["id"]
    r = send(city, "POST", T, doc)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    if field not in ("type", "id"):
        with city.client(VIEWER) as c:
            assert c.get(one(doc["id"])).status_code == 404  # nothing half-written


def test_writing_the_past_needs_an_operator_of_the_entity(city: Server):
    with city.client(VIEWER) as c:
        assert c.post(T, json=lamp_past()).status_code == 403
    missing = f"{one('urn:ngsi-ld:Streetlight:tp-none')}/attrs"
    assert send(city, "POST", missing, {"powerConsumption": watts((0, 1.0))}).status_code == 404
