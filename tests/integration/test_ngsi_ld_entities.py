"""Conformance of entities and their attributes (ETSI GS CIM 009 v1.8: clause 4.5 the
representations, 4.6 the data model, 5.6.1-5.6.6 create, update, append, delete and
5.7.1-5.7.2 retrieve and query), written from the text of the specification with its
status codes and bodies; against a server on each store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.conftest import OPERATOR, Server
from tests.integration.two_stores import server_on_store

NGSI = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on each store."""
    with server_on_store(request, tmp_path_factory) as server:
        yield server


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
        assert c.delete(path(eid)).status_code == 204
        assert c.get(path(eid)).status_code == 404


@pytest.mark.parametrize(
    "entity_id", ["Building-7", "urn ngsi-ld:Building:7", "//example.org/b", "urn:x:a b", 7]
)
def test_an_id_that_is_not_an_absolute_uri_is_400_naming_id(city: Server, entity_id: object):
    with city.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/entities", json={"id": entity_id, "type": "Building"})
    refused(r, 400, "BadRequestData", "id")
