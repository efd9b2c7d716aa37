"""Conformance of the temporal API for multi-attributes (ETSI GS CIM 009 v1.8, clauses
4.5.5 and 4.5.9-4.5.19 temporal representations, 5.6.11-5.6.16 temporal provision,
5.7.3-5.7.4 temporal queries): each instance of an attribute (its ``datasetId``) has
its own evolution, written, read, aggregated and removed apart; against a server on
each store.

A vehicle's ``speed`` comes from two sources, a GPS tracker and a radar; its default
instance is what the driver's display shows.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx

from tests.conftest import OPERATOR, VIEWER, Server

NGSI = "/ngsi-ld/v1"
T = f"{NGSI}/temporal/entities"
GPS = "urn:ngsi-ld:Dataset:gps"
RADAR = "urn:ngsi-ld:Dataset:radar"


def at(minute: int) -> str:
    """An instant on 2 November 2026, ``minute`` minutes past 08:00."""
    return f"2026-11-02T{8 + minute // 60:02d}:{minute % 60:02d}:00.000Z"


def speed(value: float, minute: int, dataset: str | None = None) -> dict[str, Any]:
    """One instance of ``speed``."""
    out: dict[str, Any] = {"type": "Property", "value": value, "observedAt": at(minute)}
    if dataset is not None:
        out["datasetId"] = dataset
    return out


def new_id() -> str:
    return f"urn:ngsi-ld:Vehicle:ds-{uuid.uuid4().hex[:8]}"


def send(city: Server, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
    """An operator's request."""
    with city.client(OPERATOR) as c:
        return c.request(method, path, json=body, params=params)


def temporal(city: Server, entity_id: str, **params: Any) -> httpx.Response:
    """A viewer's temporal GET of one entity."""
    with city.client(VIEWER) as c:
        return c.get(f"{T}/{quote(entity_id, safe='')}", params=params)


def values(body: dict[str, Any], attr: str = "speed") -> dict[str | None, list[Any]]:
    """Per datasetId (None: the default instance), the values of the instances shown."""
    out: dict[str | None, list[Any]] = {}
    for instance in body.get(attr, []):
        out.setdefault(instance.get("datasetId"), []).append(instance["value"])
    return out


def tracked_vehicle(city: Server) -> str:
    """A vehicle created with a GPS and a radar speed, then updated by each (and by the
    display): GPS 50 -> 54 -> 58, radar 48 -> 53, display 49."""
    entity_id = new_id()
    doc = {"id": entity_id, "type": "Vehicle", "speed": [speed(50, 0, GPS), speed(48, 0, RADAR)]}
    assert send(city, "POST", f"{NGSI}/entities", doc).status_code == 201
    attrs = f"{NGSI}/entities/{quote(entity_id, safe='')}/attrs"
    for body in (
        {"speed": speed(54, 1, GPS)},
        {"speed": [speed(53, 1, RADAR), speed(49, 1)]},
        {"speed": speed(58, 2, GPS)},
    ):
        r = send(city, "POST", attrs, body)
        assert r.status_code == 204, r.text
    return entity_id


def test_each_instance_keeps_its_own_evolution_with_its_dataset_id(city: Server):
    entity_id = tracked_vehicle(city)
    r = temporal(city, entity_id, attrs="speed")
    assert r.status_code == 200, r.text
    body = r.json()
    assert values(body) == {None: [49], GPS: [50, 54, 58], RADAR: [48, 53]}
    gps = [i for i in body["speed"] if i.get("datasetId") == GPS]
    assert [i["observedAt"] for i in gps] == [at(0), at(1), at(2)]
    ids = [i["instanceId"] for i in body["speed"]]
    assert len(set(ids)) == len(ids)  # two datasets at one instant: two instances
    # current state holds the newest of each
    with city.client(VIEWER) as c:
        now = c.get(f"{NGSI}/entities/{quote(entity_id, safe='')}", params={"options": "keyValues"})
    assert now.json()["speed"] == {"dataset": {"@none": 49, GPS: 58, RADAR: 53}}


def test_an_update_of_one_instance_adds_nothing_to_the_others(city: Server):
    entity_id = tracked_vehicle(city)
    path = f"{NGSI}/entities/{quote(entity_id, safe='')}/attrs/speed"
    assert send(city, "PATCH", path, {"value": 60, "datasetId": GPS}).status_code == 204
    got = values(temporal(city, entity_id, attrs="speed").json())
    assert got[RADAR] == [48, 53] and got[None] == [49]
    assert got[GPS][:3] == [50, 54, 58] and got[GPS][3:] == [60]


def test_last_n_is_counted_per_dataset(city: Server):
    entity_id = tracked_vehicle(city)
    body = temporal(city, entity_id, attrs="speed", lastN=1).json()
    assert values(body) == {None: [49], GPS: [58], RADAR: [53]}


def test_aggregation_is_per_dataset(city: Server):
    entity_id = tracked_vehicle(city)
    r = temporal(city, entity_id, attrs="speed", aggrMethods="avg,totalCount,max")
    assert r.status_code == 200, r.text
    parts = {p.get("datasetId"): p for p in r.json()["speed"]}
    assert set(parts) == {None, GPS, RADAR}
    assert [v[0] for v in parts[GPS]["avg"]] == [54.0]
    assert [v[0] for v in parts[GPS]["totalCount"]] == [3]
    assert [v[0] for v in parts[RADAR]["max"]] == [53.0]
    assert [v[0] for v in parts[None]["totalCount"]] == [1]
    assert all(p["type"] == "Property" for p in parts.values())


def test_temporal_values_give_one_series_per_dataset(city: Server):
    entity_id = tracked_vehicle(city)
    body = temporal(city, entity_id, attrs="speed", options="temporalValues").json()
    series = {p.get("datasetId"): [v[0] for v in p["values"]] for p in body["speed"]}
    assert series == {None: [49], GPS: [50, 54, 58], RADAR: [48, 53]}


def test_the_dataset_id_parameter_chooses_instances(city: Server):
    entity_id = tracked_vehicle(city)
    assert values(temporal(city, entity_id, datasetId=RADAR).json()) == {RADAR: [48, 53]}
    only_default = temporal(city, entity_id, datasetId="@none", options="temporalValues")
    assert only_default.json()["speed"] == {"type": "Property", "values": [[49, at(1)]]}
    r = temporal(city, entity_id, datasetId=",")
    assert r.status_code == 400 and r.json()["title"]
    assert "datasetId" in r.text


def test_temporal_provision_writes_each_datasets_past_and_present(city: Server):
    entity_id = new_id()
    doc = {
        "id": entity_id,
        "type": "Vehicle",
        "speed": [speed(30, 0, GPS), speed(35, 5, GPS), speed(31, 0, RADAR), speed(33, 2)],
    }
    assert send(city, "POST", T, doc).status_code == 201
    assert values(temporal(city, entity_id).json()) == {None: [33], GPS: [30, 35], RADAR: [31]}
    with city.client(VIEWER) as c:
        now = c.get(f"{NGSI}/entities/{quote(entity_id, safe='')}", params={"options": "keyValues"})
    assert now.json()["speed"] == {"dataset": {"@none": 33, GPS: 35, RADAR: 31}}
    # an older radar instance goes to history only; a newer one becomes the radar's state
    more = {"speed": [speed(29, 1, RADAR), speed(28, 7, RADAR)]}
    r = send(city, "POST", f"{T}/{quote(entity_id, safe='')}/attrs", more)
    assert r.status_code == 204, r.text
    assert values(temporal(city, entity_id).json())[RADAR] == [31, 29, 28]
    with city.client(VIEWER) as c:
        now = c.get(f"{NGSI}/entities/{quote(entity_id, safe='')}", params={"options": "keyValues"})
    assert now.json()["speed"] == {"dataset": {"@none": 33, GPS: 35, RADAR: 28}}
    # sent again (a client retrying): the same instances, not twice as many
    assert send(city, "POST", T, doc).status_code == 204
    assert values(temporal(city, entity_id).json())[GPS] == [30, 35]


def test_one_instance_of_a_dataset_is_changed_and_removed_by_its_instance_id(city: Server):
    entity_id = tracked_vehicle(city)
    [second] = [i for i in temporal(city, entity_id).json()["speed"] if i.get("datasetId") == GPS][
        1:2
    ]
    path = f"{T}/{quote(entity_id, safe='')}/attrs/speed/{quote(second['instanceId'], safe='')}"
    r = send(city, "PATCH", path, {"type": "Property", "value": 55, "datasetId": RADAR})
    assert r.status_code == 400 and "datasetId" in r.text  # an instance keeps its dataset
    assert send(city, "PATCH", path, {"type": "Property", "value": 55}).status_code == 204
    got = values(temporal(city, entity_id).json())
    assert got[GPS] == [50, 55, 58] and got[RADAR] == [48, 53]
    assert send(city, "DELETE", path).status_code == 204
    got = values(temporal(city, entity_id).json())
    assert got[GPS] == [50, 58] and got[RADAR] == [48, 53]
    assert send(city, "DELETE", path).status_code == 404


def test_deleting_one_datasets_evolution_leaves_the_others(city: Server):
    entity_id = tracked_vehicle(city)
    path = f"{T}/{quote(entity_id, safe='')}/attrs/speed"
    assert send(city, "DELETE", path, datasetId=RADAR).status_code == 204
    assert values(temporal(city, entity_id).json()) == {None: [49], GPS: [50, 54, 58]}
    gone = send(city, "DELETE", path, datasetId=RADAR)
    assert gone.status_code == 404 and "datasetId" in gone.text
    # without datasetId: the default instance's evolution only
    assert send(city, "DELETE", path).status_code == 204
    assert values(temporal(city, entity_id).json()) == {GPS: [50, 54, 58]}
    both = send(city, "DELETE", path, datasetId=GPS, deleteAll="true")
    assert both.status_code == 400 and "deleteAll" in both.text
    assert send(city, "DELETE", path, deleteAll="true").status_code == 204
    assert "speed" not in temporal(city, entity_id).json()
    # current state is not history: the instances are still there
    with city.client(VIEWER) as c:
        now = c.get(f"{NGSI}/entities/{quote(entity_id, safe='')}", params={"options": "keyValues"})
    assert now.json()["speed"] == {"dataset": {"@none": 49, GPS: 58, RADAR: 53}}


def test_an_attribute_without_datasets_is_shown_as_before(city: Server):
    entity_id = new_id()
    doc = {"id": entity_id, "type": "Vehicle", "speed": [speed(40, 0), speed(42, 3)]}
    assert send(city, "POST", T, doc).status_code == 201
    body = temporal(city, entity_id).json()
    assert [i["value"] for i in body["speed"]] == [40, 42]
    assert not any("datasetId" in i for i in body["speed"])
    simplified = temporal(city, entity_id, options="temporalValues").json()["speed"]
    assert simplified == {"type": "Property", "values": [[40, at(0)], [42, at(3)]]}
    average = temporal(city, entity_id, aggrMethods="avg").json()["speed"]
    assert average["type"] == "Property" and average["avg"][0][0] == 41.0
