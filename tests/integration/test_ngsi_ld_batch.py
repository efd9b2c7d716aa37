"""Conformance of the batch entity operations (ETSI GS CIM 009 v1.8, clauses 5.6.7-5.6.10):
create, upsert with ``options=replace|update``, update with ``noOverwrite`` and delete,
with their statuses (201 with the created ids, 204, 207 with per-item errors, 400 for an
empty batch); against a server on each store."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR, Server

NGSI = "/ngsi-ld/v1"
OPS = f"{NGSI}/entityOperations"


def lamp(local: str, **attrs: Any) -> dict[str, Any]:
    """A streetlight document with the given properties."""
    doc: dict[str, Any] = {"id": f"urn:ngsi-ld:Streetlight:{local}", "type": "Streetlight"}
    doc.update({k: {"type": "Property", "value": v} for k, v in attrs.items()})
    return doc


def post(city: Server, op: str, body: Any, **params: str) -> httpx.Response:
    """An operator's batch request."""
    with city.client(OPERATOR) as c:
        return c.post(f"{OPS}/{op}", json=body, params=params or None)


def read(city: Server, doc: dict[str, Any]) -> dict[str, Any]:
    """The entity as stored now, concise."""
    with city.client(OPERATOR) as c:
        r = c.get(f"{NGSI}/entities/{doc['id']}", params={"options": "keyValues"})
    assert r.status_code == 200, r.text
    return r.json()


def test_upsert_answers_201_with_what_it_created_and_204_when_all_existed(city: Server):
    tag = uuid.uuid4().hex[:8]
    first, second = lamp(f"{tag}-1", powerState="on"), lamp(f"{tag}-2", powerState="on")
    r = post(city, "upsert", [first])
    assert (r.status_code, r.json()) == (201, [first["id"]])
    assert post(city, "upsert", [first]).status_code == 204
    r = post(city, "upsert", [first, second])
    assert (r.status_code, r.json()) == (201, [second["id"]])  # only the new one


def test_upsert_replaces_by_default_and_merges_with_update(city: Server):
    tag = uuid.uuid4().hex[:8]
    doc = lamp(tag, powerState="on", illuminanceLevel=0.8)
    assert post(city, "upsert", [doc]).status_code == 201
    assert post(city, "upsert", [lamp(tag, powerState="off")], options="update").status_code == 204
    assert {k: v for k, v in read(city, doc).items() if k not in ("id", "type")} == {
        "powerState": "off",
        "illuminanceLevel": 0.8,
    }
    assert post(city, "upsert", [lamp(tag, powerState="on")], options="replace").status_code == 204
    assert "illuminanceLevel" not in read(city, doc)  # replaced whole
    r = post(city, "upsert", [doc], options="update,replace")
    assert r.status_code == 400 and r.json()["field"] == "options"


def test_a_duplicate_id_is_an_item_error_beside_the_first(city: Server):
    tag = uuid.uuid4().hex[:8]
    r = post(city, "create", [lamp(tag, powerState="on"), lamp(tag, powerState="off")])
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["success"] == [f"urn:ngsi-ld:Streetlight:{tag}"]
    [error] = body["errors"]
    assert (error["index"], error["error"]["field"]) == (1, "[1].id")
    assert read(city, lamp(tag))["powerState"] == "on"


def test_no_overwrite_keeps_what_exists_and_says_so_per_item(city: Server):
    tag = uuid.uuid4().hex[:8]
    kept, fresh = lamp(f"{tag}-kept", powerState="on"), lamp(f"{tag}-fresh")
    assert post(city, "create", [kept, fresh]).status_code == 201
    change = [
        lamp(f"{tag}-kept", powerState="off", illuminanceLevel=0.5),
        lamp(f"{tag}-fresh", powerState="off"),
    ]
    r = post(city, "update", change, options="noOverwrite")
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["success"] == [fresh["id"]]
    [error] = body["errors"]
    assert error["entityId"] == kept["id"]
    assert error["error"]["type"].endswith("/AlreadyExists")
    assert error["error"]["field"] == "[0].powerState"
    stored = read(city, kept)
    assert (stored["powerState"], stored["illuminanceLevel"]) == ("on", 0.5)  # appended only


@pytest.mark.parametrize("op", ["create", "upsert", "update", "delete"])
def test_an_empty_batch_is_bad_request_data(city: Server, op: str):
    r = post(city, op, [])
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("/BadRequestData") and r.json()["field"] == "body"
