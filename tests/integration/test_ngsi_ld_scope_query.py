"""Conformance of entity scopes (ETSI GS CIM 009 v1.8, clause 4.18) and the scope query
language (clause 4.19, ``scopeQ``): an entity's ``scope`` is kept and returned as given
(one scope or several), and ``scopeQ`` chooses entities by them on ``GET /entities``,
``POST /entityOperations/query`` and the temporal API. Against each store."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import OPERATOR, VIEWER, Server

NGSI = "/ngsi-ld/v1"
BAD_REQUEST = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
TYPE = "Garden"
#: entity suffix -> its scope (None: it has none)
SCOPES: dict[str, Any] = {
    "north": "/Madrid/Gardens/ParqueNorte",
    "south": ["/Madrid/Gardens/ParqueSur", "/CompanyA/OrgB"],
    "madrid": "/Madrid",
    "retiro": "/Madrid/Retiro/Park",
    "port": "Valencia/Port",
    "none": None,
}


def urn(name: str) -> str:
    """The id of one of the gardens."""
    return f"urn:ngsi-ld:{TYPE}:{name}"


@pytest.fixture(scope="module")
def gardens(city: Server) -> Server:
    """One garden per entry of SCOPES."""
    with city.client(OPERATOR) as c:
        for name, scope in SCOPES.items():
            doc: dict[str, Any] = {
                "id": urn(name),
                "type": TYPE,
                "area": {"type": "Property", "value": 1.5},
            }
            if scope is not None:
                doc["scope"] = scope
            r = c.post(f"{NGSI}/entities", json=doc)
            assert r.status_code == 201, r.text
    return city


def chosen(city: Server, scope_q: str) -> set[str]:
    """The gardens ``GET /entities`` answers for a scopeQ (their names)."""
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities", params={"type": TYPE, "scopeQ": scope_q, "limit": 100})
    assert r.status_code == 200, r.text
    return {e["id"].rsplit(":", 1)[1] for e in r.json()}


@pytest.mark.parametrize(
    ("scope_q", "names"),
    [
        ("/Madrid/Gardens/ParqueNorte", {"north"}),
        ("/Madrid", {"madrid"}),
        ("/Madrid/#", {"north", "south", "madrid", "retiro"}),
        ("/Madrid/Gardens/#", {"north", "south"}),
        ("/#", {"north", "south", "madrid", "retiro", "port"}),
        ("/Madrid/+/Park", {"retiro"}),
        ("/Madrid/+", set()),
        ("/Madrid/Gardens/+", {"north", "south"}),
        ("/CompanyA/OrgB;/Madrid/Gardens/ParqueSur", {"south"}),
        ("/CompanyA/OrgB;/Madrid/Gardens/ParqueNorte", set()),
        ("/Madrid,/Valencia/Port", {"madrid", "port"}),
        ("/Madrid|/Valencia/Port", {"madrid", "port"}),
        ("(/Madrid/Gardens/#;/CompanyA/#),/Madrid", {"south", "madrid"}),
        ("/CompanyA/#;(/Madrid/Retiro/#,/Madrid/Gardens/#)", {"south"}),
        ("Valencia/Port", {"port"}),
        ("/Mad", set()),
    ],
)
def test_scope_q_chooses_the_entities_of_matching_scopes(
    gardens: Server, scope_q: str, names: set[str]
):
    assert chosen(gardens, scope_q) == names


def read(city: Server, name: str, **params: str) -> dict[str, Any]:
    """One garden as a viewer reads it."""
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities/{quote(urn(name), safe='')}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_scope_is_returned_as_given_in_every_representation(gardens: Server):
    for options in ("normalized", "keyValues", "concise"):
        assert read(gardens, "north", options=options)["scope"] == SCOPES["north"]
        assert read(gardens, "south", options=options)["scope"] == SCOPES["south"]
        assert "scope" not in read(gardens, "none", options=options)
    assert read(gardens, "north", attrs="area")["scope"] == SCOPES["north"]
    assert "scope" not in read(gardens, "north", omit="scope")


def test_the_scope_is_no_attribute_in_discovery(gardens: Server):
    with gardens.client(VIEWER) as c:
        names = c.get(f"{NGSI}/attributes").json()["attributeList"]
        kinds = c.get(f"{NGSI}/types/{TYPE}").json()["attributeDetails"]
    assert "area" in names and "scope" not in names
    assert [a["attributeName"] for a in kinds] == ["area"]


def test_a_merge_replaces_and_deletes_the_scope(city: Server):
    entity_id = urn("moving")
    path = f"{NGSI}/entities/{quote(entity_id, safe='')}"
    with city.client(OPERATOR) as c:
        doc = {"id": entity_id, "type": TYPE, "scope": "/Sevilla/Old"}
        assert c.post(f"{NGSI}/entities", json=doc).status_code == 201
        assert c.patch(path, json={"scope": ["/Sevilla/New", "/Cadiz"]}).status_code == 204
        assert c.get(path).json()["scope"] == ["/Sevilla/New", "/Cadiz"]
        assert chosen(city, "/Sevilla/#") == {"moving"}
        assert c.patch(path, json={"scope": "urn:ngsi-ld:null"}).status_code == 204
        assert "scope" not in c.get(path).json()
        assert chosen(city, "/Sevilla/#") == set()


@pytest.mark.parametrize(
    ("scope", "field"),
    [
        ("Madrid Gardens", "scope"),
        ("/Madrid//Gardens", "scope"),
        ("/Madrid/#", "scope"),
        (5, "scope"),
        ([], "scope"),
        (["/Madrid", 3], "scope[1]"),
    ],
)
def test_a_bad_scope_is_400_naming_it(city: Server, scope: Any, field: str):
    doc = {"id": urn("bad"), "type": TYPE, "scope": scope}
    with city.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/entities", json=doc)
    assert r.status_code == 400, r.text
    assert (r.json()["type"], r.json()["field"]) == (BAD_REQUEST, field)


@pytest.mark.parametrize(
    ("scope_q", "position"),
    [
        ("/Madrid/#/Gardens", 0),
        ("/Madrid;", 8),
        ("(/Madrid,/Sevilla", 17),
        ("/Madrid)", 7),
        ("/Madrid;;/Sevilla", 8),
        ("/Madrid,/Sev illa", 13),
    ],
)
def test_a_bad_scope_q_is_400_naming_it_with_the_position(
    city: Server, scope_q: str, position: int
):
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities", params={"type": TYPE, "scopeQ": scope_q})
    assert r.status_code == 400, r.text
    assert (r.json()["type"], r.json()["field"]) == (BAD_REQUEST, "scopeQ")
    assert f"position {position}" in r.json()["detail"]


def test_an_empty_scope_q_is_400(city: Server):
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities", params={"type": TYPE, "scopeQ": ""})
    assert r.status_code == 400 and r.json()["field"] == "scopeQ"


def test_a_query_document_takes_scope_q(gardens: Server):
    body = {"type": "Query", "entities": [{"type": TYPE}], "scopeQ": "/Madrid/Gardens/#"}
    with gardens.client(VIEWER) as c:
        r = c.post(f"{NGSI}/entityOperations/query", json=body)
        assert r.status_code == 200, r.text
        assert {e["id"] for e in r.json()} == {urn("north"), urn("south")}
        alone = c.post(f"{NGSI}/entityOperations/query", json={"type": "Query", "scopeQ": "/#"})
        assert {e["id"] for e in alone.json()} >= {urn(n) for n in SCOPES if SCOPES[n]}
        for bad in ("/Madrid/#/x", 7):
            r = c.post(f"{NGSI}/entityOperations/query", json={**body, "scopeQ": bad})
            assert r.status_code == 400 and r.json()["field"] == "scopeQ", r.text


def test_the_temporal_api_chooses_by_scope_and_shows_it(gardens: Server):
    with gardens.client(VIEWER) as c:
        r = c.get(f"{NGSI}/temporal/entities", params={"type": TYPE, "scopeQ": "/Madrid/+/Park"})
        assert r.status_code == 200, r.text
        [retiro] = r.json()
        assert retiro["id"] == urn("retiro") and retiro["scope"] == SCOPES["retiro"]
        assert [i["value"] for i in retiro["area"]] == [1.5]
        one = c.get(f"{NGSI}/temporal/entities/{quote(urn('south'), safe='')}").json()
        assert one["scope"] == SCOPES["south"] and set(one) == {"id", "type", "scope", "area"}


def test_a_city_type_takes_a_scope_and_replace_and_upsert_set_it(city: Server):
    light = "urn:ngsi-ld:Streetlight:scoped-1"
    path = f"{NGSI}/entities/{quote(light, safe='')}"
    with city.client(OPERATOR) as c:
        doc = {"id": light, "type": "Streetlight", "scope": "/Dijon/Centre"}
        assert c.post(f"{NGSI}/entities", json=doc).status_code == 201
        assert c.get(path).json()["scope"] == "/Dijon/Centre"
        assert c.put(path, json={"type": "Streetlight", "powerState": "on"}).status_code == 204
        assert "scope" not in c.get(path).json()  # replaced whole
        upsert = [{**doc, "scope": ["/Dijon/Nord", "/Lighting"]}]
        r = c.post(f"{NGSI}/entityOperations/upsert", json=upsert, params={"options": "update"})
        assert r.status_code == 204, r.text
        assert c.get(path).json()["scope"] == ["/Dijon/Nord", "/Lighting"]
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities", params={"type": "Streetlight", "scopeQ": "/Lighting"})
    assert [e["id"] for e in r.json()] == [light]
