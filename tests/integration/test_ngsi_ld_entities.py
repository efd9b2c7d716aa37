"""Conformance of entities and their attributes (ETSI GS CIM 009 v1.8: clause 4.5 the
representations, 4.6 the data model, 5.6.1-5.6.6 create, update, append, delete and
5.7.1-5.7.2 retrieve and query), written from the text of the specification with its
status codes and bodies; against a server on each store."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import quote

import pytest

from citypilot.bench.server import server_process
from tests.conftest import OPERATOR, VIEWER, Server, seed_accounts

NGSI = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def tag() -> str:
    """A fresh local id."""
    return uuid.uuid4().hex[:10]


def path(entity_id: str) -> str:
    """The path of an entity, its id percent-encoded as one segment (clause 6.5)."""
    return f"{NGSI}/entities/{quote(entity_id, safe='')}"


def refused(response, status: int, problem: str, field: str) -> dict:
    """A ProblemDetails answer (clause 5.5.2) of ``status`` and ``problem`` naming ``field``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == ERRORS + problem and body["status"] == status
    assert body["field"] == field, body
    return body


# -- 4.5.1 / 5.6.1: an entity id is a URI ------------------------------------------


@pytest.mark.parametrize(
    "entity_id",
    [
        "urn:ngsi-ld:Vehicle:{t}",  # another type's URN on a Building
        "https://example.org/buildings/{t}",
        "urn:epc:id:sgtin:0614141.{t}.1",
        "http://example.org/b/{t}?floor=2#east",
    ],
)
def test_any_absolute_uri_names_an_entity(city: Server, entity_id: str):
    eid = entity_id.format(t=tag())
    doc = {"id": eid, "type": "Building", "name": {"type": "Property", "value": "Town hall"}}
    with city.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/entities", json=doc)
        assert r.status_code == 201, r.text
        assert c.get(r.headers["location"]).json()["id"] == eid
        got = c.get(path(eid))
        assert got.status_code == 200 and got.json()["name"]["value"] == "Town hall"
        assert c.patch(f"{path(eid)}/attrs", json={"name": "City hall"}).status_code == 204
        found = c.get(f"{NGSI}/entities", params={"id": eid, "type": "Building"}).json()
        assert [e["id"] for e in found] == [eid]
        segment = quote(eid, safe="")
        history = c.get(f"/api/v1/history/{segment}", params={"attrs": "name"})
        assert history.status_code == 200 and history.json()["entityId"] == eid, history.text
        assert c.get(f"/api/v1/entities/{segment}/desired").status_code == 200
        assert c.delete(path(eid)).status_code == 204
        assert c.get(path(eid)).status_code == 404


@pytest.mark.parametrize(
    "entity_id", ["Building-7", "urn ngsi-ld:Building:7", "//example.org/b", "urn:x:a b", 7]
)
def test_an_id_that_is_not_an_absolute_uri_is_400_naming_id(city: Server, entity_id: object):
    with city.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/entities", json={"id": entity_id, "type": "Building"})
    refused(r, 400, "BadRequestData", "id")


# -- open world: a type nobody registered is plain NGSI-LD ------------------------


def vehicle(local: str) -> dict:
    """The Vehicle of the specification's examples (clause 4.2, annex C), a type this
    city never registered: properties and relationships of properties, observedAt."""
    return {
        "id": f"urn:ngsi-ld:Vehicle:{local}",
        "type": "Vehicle",
        "brandName": {"type": "Property", "value": "Mercedes"},
        "speed": {
            "type": "Property",
            "value": 80,
            "unitCode": "KMH",
            "observedAt": "2017-07-29T12:00:04.000Z",
            "measuredBy": {
                "type": "Relationship",
                "object": "urn:ngsi-ld:Radar:R1",
                "calibrated": {"type": "Property", "value": True},
            },
        },
        "isParked": {
            "type": "Relationship",
            "object": "urn:ngsi-ld:OffStreetParking:Downtown1",
            "observedAt": "2017-07-29T12:00:04.000Z",
            "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"},
        },
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.1, 47.3]}},
    }


def test_an_unregistered_type_is_stored_as_given(city: Server):
    doc = vehicle(tag())
    with city.client(OPERATOR) as c:
        assert c.post(f"{NGSI}/entities", json=doc).status_code == 201
        got = c.get(path(doc["id"])).json()
    assert got == doc


def test_open_world_entities_answer_queries(city: Server):
    local = tag()
    slow, fast = vehicle(f"{local}-slow"), vehicle(f"{local}-fast")
    slow["speed"]["value"] = 20
    fast["location"]["value"]["coordinates"] = [5.2, 47.3]
    with city.client(VIEWER) as viewer, city.client(OPERATOR) as c:
        assert c.post(f"{NGSI}/entityOperations/create", json=[slow, fast]).status_code == 201

        def ids(**params: str) -> list[str]:
            r = viewer.get(f"{NGSI}/entities", params={"type": "Vehicle", **params})
            assert r.status_code == 200, r.text
            return sorted(e["id"] for e in r.json() if local in e["id"])

        assert ids() == sorted([slow["id"], fast["id"]])
        assert ids(q="speed>50") == [fast["id"]]
        assert ids(q='brandName=="Mercedes"') == sorted([slow["id"], fast["id"]])
        near = {"georel": "near;maxDistance==1000", "geometry": "Point"}
        assert ids(**near, coordinates="[5.1,47.3]") == [slow["id"]]
        assert viewer.get(f"{NGSI}/entities", params={"type": "Unicorn"}).json() == []


def test_open_world_attributes_are_appended_updated_and_kept_in_history(city: Server):
    doc = vehicle(tag())
    with city.client(OPERATOR) as c:
        c.post(f"{NGSI}/entities", json=doc)
        r = c.post(f"{path(doc['id'])}/attrs", json={"colour": "red", "doors": {"value": 5}})
        assert r.status_code == 204, r.text
        r = c.patch(
            f"{path(doc['id'])}/attrs",
            json={"speed": {"value": 95, "observedAt": "2017-07-29T12:05:00.000Z"}},
        )
        assert r.status_code == 204, r.text
        got = c.get(path(doc["id"]), params={"options": "keyValues"}).json()
        assert (got["colour"], got["doors"], got["speed"]) == ("red", 5, 95)
        history = c.get(
            f"{NGSI}/temporal/entities/{quote(doc['id'], safe='')}",
            params={"attrs": "speed", "options": "temporalValues"},
        )
        assert history.status_code == 200, history.text
        assert [v[0] for v in history.json()["speed"]["values"]] == [80, 95]


def test_the_console_map_and_device_ingest_stay_with_registered_types(city: Server):
    doc = vehicle(tag())
    with city.client(OPERATOR) as c:
        c.post(f"{NGSI}/entities", json=doc)
        refused(c.get("/api/v1/map/entities/Vehicle"), 400, "BadRequestData", "type_name")
        assert "Vehicle" in c.get(f"{NGSI}/types").json()["typeList"]
    observation = {"id": doc["id"], "type": "Vehicle", "observedAt": "2024-01-01T00:00:00Z"}
    with city.device() as device:
        r = device.post("/api/v1/ingest", json=[{**observation, "attrs": {"speed": 3}}])
    assert r.status_code in (207, 400), r.text
    assert "not a registered entity type" in r.text


def test_a_registered_type_keeps_its_checks(city: Server):
    lamp = {"id": f"urn:ngsi-ld:Streetlight:{tag()}", "type": "Streetlight", "wattage": 3}
    with city.client(OPERATOR) as c:
        refused(c.post(f"{NGSI}/entities", json=lamp), 400, "BadRequestData", "wattage")


def test_strict_types_refuses_unregistered_types(tmp_path_factory: pytest.TempPathFactory):

    data = tmp_path_factory.mktemp("strict-city")
    asyncio.run(seed_accounts(data))
    with server_process(data, {"CITYPILOT_STRICT_TYPES": "true"}) as url:
        server = Server(url, data)
        with server.client(OPERATOR) as c:
            r = c.post(f"{NGSI}/entities", json=vehicle(tag()))
            body = refused(r, 400, "BadRequestData", "type")
            assert "not a registered entity type" in body["detail"]
            refused(
                c.get(f"{NGSI}/entities", params={"type": "Vehicle"}), 400, "BadRequestData", "type"
            )
            lamp = {"id": f"urn:ngsi-ld:Streetlight:{tag()}", "type": "Streetlight"}
            assert c.post(f"{NGSI}/entities", json=lamp).status_code == 201


# -- 4.5, 4.6: every kind, multi-attributes, the three representations -------------


def every_kind(local: str) -> dict:
    """An entity holding one attribute of each kind of clause 4.5, in concise form."""
    return {
        "id": f"urn:ngsi-ld:Place:{local}",
        "type": "Place",
        "name": {"languageMap": {"fr": "Gare", "en": "Station", "@none": "Gare"}},
        "category": {"vocab": "TrainStation"},
        "timetable": {"json": {"weekdays": ["06:00", "23:00"], "holidays": None}},
        "platforms": {"valueList": [1, 2, "2a"]},
        "servedBy": {"objectList": ["urn:ngsi-ld:Line:A", "urn:ngsi-ld:Line:B"]},
        "operator": {"object": "urn:ngsi-ld:Company:SNCF", "objectType": "Company"},
        "location": {"type": "Point", "coordinates": [5.05, 47.31]},
        "capacity": {"value": 1200, "unitCode": "C62"},
        "open": True,
        "speed": [
            {"value": 30, "datasetId": "urn:ngsi-ld:Dataset:gps"},
            {"value": 28, "datasetId": "urn:ngsi-ld:Dataset:radar"},
            {"value": 29},
        ],
    }


def test_every_kind_comes_back_normalised_concise_and_simplified(city: Server):
    doc = every_kind(tag())
    with city.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/entities", json=doc)
        assert r.status_code == 201, r.text
        normalised = c.get(path(doc["id"])).json()
        concise = c.get(path(doc["id"]), params={"options": "concise"}).json()
        simple = c.get(path(doc["id"]), params={"options": "keyValues"}).json()
    assert normalised["name"] == {"type": "LanguageProperty", **doc["name"]}
    assert normalised["category"] == {"type": "VocabProperty", "vocab": "TrainStation"}
    assert normalised["timetable"] == {"type": "JsonProperty", **doc["timetable"]}
    assert normalised["platforms"] == {"type": "ListProperty", "valueList": [1, 2, "2a"]}
    assert normalised["servedBy"] == {"type": "ListRelationship", **doc["servedBy"]}
    assert normalised["operator"] == {"type": "Relationship", **doc["operator"]}
    assert normalised["location"] == {"type": "GeoProperty", "value": doc["location"]}
    assert normalised["capacity"] == {"type": "Property", "value": 1200, "unitCode": "C62"}
    assert normalised["open"] == {"type": "Property", "value": True}
    assert sorted(normalised["speed"], key=lambda i: i["value"]) == [
        {"type": "Property", "value": 28, "datasetId": "urn:ngsi-ld:Dataset:radar"},
        {"type": "Property", "value": 29},
        {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:Dataset:gps"},
    ]
    # concise (4.5.3) is lossless: the document as it was sent
    assert {k: v for k, v in concise.items() if k != "speed"} == {
        k: v for k, v in doc.items() if k != "speed"
    }
    assert sorted(concise["speed"], key=lambda i: i["value"]) == sorted(
        doc["speed"], key=lambda i: i["value"]
    )
    # simplified (4.5.4)
    assert simple["name"] == {"languageMap": doc["name"]["languageMap"]}
    assert simple["operator"] == "urn:ngsi-ld:Company:SNCF"
    assert simple["capacity"] == 1200 and simple["location"] == doc["location"]
    assert simple["speed"] == {
        "dataset": {"@none": 29, "urn:ngsi-ld:Dataset:gps": 30, "urn:ngsi-ld:Dataset:radar": 28}
    }


def test_a_multi_attribute_needs_distinct_dataset_ids(city: Server):
    doc = {"id": f"urn:ngsi-ld:Place:{tag()}", "type": "Place"}
    doc["speed"] = [{"value": 1, "datasetId": "urn:ds:1"}, {"value": 2, "datasetId": "urn:ds:1"}]
    with city.client(OPERATOR) as c:
        refused(c.post(f"{NGSI}/entities", json=doc), 400, "BadRequestData", "speed[1].datasetId")


@pytest.mark.parametrize(
    ("attribute", "field"),
    [
        ({"type": "Relationship", "value": "urn:a:1"}, "a.object"),
        ({"type": "Relationship", "object": "no uri"}, "a.object"),
        ({"type": "Property"}, "a.value"),
        ({"type": "Propertee", "value": 1}, "a.type"),
        ({"languageMap": {"en": 7}}, "a.languageMap.en"),
        ({"value": 1, "observedAt": "at noon"}, "a.observedAt"),
        ({"value": 1, "sub": {"type": "Relationship", "object": 3}}, "a.sub.object"),
        (None, "a"),
    ],
)
def test_what_breaks_the_data_model_is_400_naming_it(city: Server, attribute, field: str):
    doc = {"id": f"urn:ngsi-ld:Place:{tag()}", "type": "Place", "a": attribute}
    with city.client(OPERATOR) as c:
        refused(c.post(f"{NGSI}/entities", json=doc), 400, "BadRequestData", field)


def test_sys_attrs_give_when_the_entity_and_each_attribute_were_created_and_changed(
    city: Server,
):
    doc = vehicle(tag())
    with city.client(OPERATOR) as c:
        c.post(f"{NGSI}/entities", json=doc)
        first = c.get(path(doc["id"]), params={"options": "sysAttrs"}).json()
        c.patch(f"{path(doc['id'])}/attrs", json={"brandName": "Daimler"})
        then = c.get(path(doc["id"]), params={"options": "sysAttrs"}).json()
        plain = c.get(path(doc["id"])).json()
    assert "createdAt" not in plain and "createdAt" not in plain["brandName"]
    assert first["createdAt"] == then["createdAt"] <= then["modifiedAt"]
    assert then["brandName"]["createdAt"] == first["brandName"]["createdAt"]
    assert then["brandName"]["modifiedAt"] > first["brandName"]["modifiedAt"]
    assert then["isParked"]["modifiedAt"] == first["isParked"]["modifiedAt"]


# -- 5.6.17-5.6.21: merge, replace, purge ------------------------------------------


def test_merge_entity_keeps_what_it_does_not_name_and_deletes_null(city: Server):
    doc = vehicle(tag())
    with city.client(OPERATOR) as c:
        c.post(f"{NGSI}/entities", json=doc)
        merge = {
            "speed": {"value": 60, "reliability": {"value": 0.9}},
            "colour": "blue",
            "brandName": "urn:ngsi-ld:null",
        }
        assert c.patch(path(doc["id"]), json=merge).status_code == 204
        got = c.get(path(doc["id"])).json()
        refused(
            c.patch(path(f"urn:ngsi-ld:Vehicle:{tag()}"), json=merge), 404, "ResourceNotFound", "id"
        )
        refused(
            c.patch(path(doc["id"]), json={"type": "Bus", "x": 1}), 400, "BadRequestData", "type"
        )
    assert got["speed"]["value"] == 60
    assert got["speed"]["measuredBy"] == doc["speed"]["measuredBy"]  # kept
    assert got["speed"]["reliability"] == {"type": "Property", "value": 0.9}
    assert got["colour"] == {"type": "Property", "value": "blue"}
    assert "brandName" not in got and got["isParked"] == doc["isParked"]


def test_replace_entity_and_replace_attribute(city: Server):
    doc = vehicle(tag())
    with city.client(OPERATOR) as c:
        c.post(f"{NGSI}/entities", json=doc)
        r = c.put(f"{path(doc['id'])}/attrs/speed", json={"value": 10, "unitCode": "KMH"})
        assert r.status_code == 204, r.text
        assert c.get(path(doc["id"])).json()["speed"] == {
            "type": "Property",
            "value": 10,
            "unitCode": "KMH",
        }
        r = c.put(f"{path(doc['id'])}/attrs/wheels", json={"value": 4})
        refused(r, 404, "ResourceNotFound", "wheels")
        assert c.put(path(doc["id"]), json={"type": "Vehicle", "wheels": 4}).status_code == 204
        got = c.get(path(doc["id"])).json()
        refused(c.put(path(doc["id"]), json={"type": "Car"}), 400, "BadRequestData", "type")
        r = c.put(path(f"urn:ngsi-ld:Vehicle:{tag()}"), json={"wheels": 4})
        refused(r, 404, "ResourceNotFound", "id")
    assert got == {
        "id": doc["id"],
        "type": "Vehicle",
        "wheels": {"type": "Property", "value": 4},
    }


def test_batch_merge_answers_per_entity(city: Server):
    one, two = vehicle(tag()), vehicle(tag())
    missing = f"urn:ngsi-ld:Vehicle:{tag()}"
    with city.client(OPERATOR) as c:
        c.post(f"{NGSI}/entityOperations/create", json=[one, two])
        both = [{"id": e["id"], "type": "Vehicle", "colour": "green"} for e in (one, two)]
        assert c.post(f"{NGSI}/entityOperations/merge", json=both).status_code == 204
        r = c.post(
            f"{NGSI}/entityOperations/merge",
            json=[
                {"id": one["id"], "type": "Vehicle", "colour": "red"},
                {"id": missing, "type": "Vehicle", "colour": "red"},
            ],
        )
        assert r.status_code == 207, r.text
        body = r.json()
        assert body["success"] == [one["id"]]
        assert [(e["entityId"], e["error"]["status"]) for e in body["errors"]] == [(missing, 404)]
        refused(c.post(f"{NGSI}/entityOperations/merge", json=[]), 400, "BadRequestData", "body")
        colours = [c.get(path(e["id"])).json()["colour"]["value"] for e in (one, two)]
    assert colours == ["red", "green"]


def test_purge_deletes_the_entities_of_a_type(city: Server):
    kind = f"Scooter{tag()}"
    docs = [{"id": f"urn:ngsi-ld:{kind}:{i}", "type": kind, "battery": i} for i in range(5)]
    with city.client(OPERATOR) as c:
        assert c.post(f"{NGSI}/entityOperations/create", json=docs).status_code == 201
        assert (
            c.delete(f"{NGSI}/entities", params={"type": kind, "q": "battery<2"}).status_code == 204
        )
        left = c.get(f"{NGSI}/entities", params={"type": kind}).json()
        assert sorted(e["battery"]["value"] for e in left) == [2, 3, 4]
        assert c.delete(f"{NGSI}/entities", params={"type": kind}).status_code == 204
        assert c.get(f"{NGSI}/entities", params={"type": kind}).json() == []
        refused(c.delete(f"{NGSI}/entities"), 400, "BadRequestData", "type")
    with city.client(VIEWER) as viewer:
        assert viewer.delete(f"{NGSI}/entities", params={"type": kind}).status_code == 403


def test_an_instance_written_replaces_only_the_one_of_its_dataset_id(city: Server):
    doc = {"id": f"urn:ngsi-ld:Place:{tag()}", "type": "Place"}
    doc["speed"] = [{"value": 29}, {"value": 30, "datasetId": "urn:ngsi-ld:Dataset:gps"}]
    with city.client(OPERATOR) as c:
        c.post(f"{NGSI}/entities", json=doc)
        gps = {"speed": {"value": 31, "datasetId": "urn:ngsi-ld:Dataset:gps"}}
        assert c.patch(f"{path(doc['id'])}/attrs", json=gps).status_code == 204
        radar = {"speed": {"value": 27, "datasetId": "urn:ngsi-ld:Dataset:radar"}}
        assert c.post(f"{path(doc['id'])}/attrs", json=radar).status_code == 204
        assert c.patch(f"{path(doc['id'])}/attrs/speed", json={"value": 28}).status_code == 204
        got = c.get(path(doc["id"]), params={"options": "keyValues"}).json()
        history = c.get(
            f"{NGSI}/temporal/entities/{quote(doc['id'], safe='')}",
            params={"attrs": "speed", "options": "temporalValues"},
        ).json()
    assert got["speed"] == {
        "dataset": {"@none": 28, "urn:ngsi-ld:Dataset:gps": 31, "urn:ngsi-ld:Dataset:radar": 27}
    }
    # history keeps each instance's own values, only those each write gave
    assert {h.get("datasetId"): [v[0] for v in h["values"]] for h in history["speed"]} == {
        None: [29, 28],
        "urn:ngsi-ld:Dataset:gps": [30, 31],
        "urn:ngsi-ld:Dataset:radar": [27],
    }


def test_deleting_an_attribute_takes_its_default_instance_or_the_one_named(city: Server):
    doc = {"id": f"urn:ngsi-ld:Place:{tag()}", "type": "Place"}
    doc["speed"] = [
        {"value": 29},
        {"value": 30, "datasetId": "urn:ngsi-ld:Dataset:gps"},
        {"value": 27, "datasetId": "urn:ngsi-ld:Dataset:radar"},
    ]
    attr = f"{path(doc['id'])}/attrs/speed"
    with city.client(OPERATOR) as c:
        c.post(f"{NGSI}/entities", json=doc)

        def speed() -> object:
            return c.get(path(doc["id"]), params={"options": "keyValues"}).json().get("speed")

        assert c.delete(attr, params={"datasetId": "urn:ngsi-ld:Dataset:gps"}).status_code == 204
        assert speed() == {"dataset": {"@none": 29, "urn:ngsi-ld:Dataset:radar": 27}}
        r = c.delete(attr, params={"datasetId": "urn:ngsi-ld:Dataset:none"})
        refused(r, 404, "ResourceNotFound", "datasetId")
        assert c.delete(attr).status_code == 204  # the default instance
        assert speed() == 27
        c.post(f"{path(doc['id'])}/attrs", json={"speed": {"value": 5}})
        assert c.delete(attr, params={"deleteAll": "true"}).status_code == 204
        assert speed() is None
