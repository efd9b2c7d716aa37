"""Conformance of entity queries (ETSI GS CIM 009 v1.8, clause 5.7.2 Query Entities and
the query entity operation via POST): pagination ``Link`` headers with ``rel="next"``
and ``rel="prev"``, ``NGSILD-Results-Count``, ``pick`` and ``omit``, and
``POST /entityOperations/query`` with a ``Query`` body; against a server on each store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR, VIEWER, Server
from tests.integration.two_stores import server_on_store

NGSI = "/ngsi-ld/v1"
LAMPS = [f"urn:ngsi-ld:Streetlight:page-{i}" for i in range(5)]
BUS = "urn:ngsi-ld:Bus:page-1"
MINE = "urn:ngsi-ld:(Streetlight|Bus):page-.*"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Five streetlights (two of them off) and a bus, on each store."""
    with server_on_store(request, tmp_path_factory) as server:
        lamps = [
            {
                "id": lamp,
                "type": "Streetlight",
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [5.0 + i / 1000, 47.3]},
                },
                "powerState": {"type": "Property", "value": "off" if i < 2 else "on"},
            }
            for i, lamp in enumerate(LAMPS)
        ]
        bus = {"id": BUS, "type": "Bus"}
        with server.client(OPERATOR) as c:
            r = c.post(f"{NGSI}/entityOperations/create", json=[*lamps, bus])
            assert r.status_code == 201, r.text
        yield server


def viewer_get(city: Server, path: str, **params: Any) -> httpx.Response:
    """A viewer's GET."""
    with city.client(VIEWER) as c:
        return c.get(path, params=params or None)  # {} would drop the query of a link


def page_links(response: httpx.Response) -> dict[str, str]:
    """The pagination links of an answer, by relation (the JSON-LD context link aside)."""
    found = re.findall(r'<([^>]*)>;\s*rel="(next|prev)"', response.headers.get("link", ""))
    return {rel: target for target, rel in found}


def test_following_next_links_walks_every_page_once(city: Server):
    seen: list[str] = []
    r = viewer_get(city, f"{NGSI}/entities", idPattern=MINE, limit=2)
    pages = 0
    while True:
        assert r.status_code == 200, r.text
        seen += [e["id"] for e in r.json()]
        pages += 1
        links = page_links(r)
        if pages > 1:
            assert "prev" in links  # every page after the first links back
        if "next" not in links:
            break
        r = viewer_get(city, links["next"])
    assert sorted(seen) == sorted([*LAMPS, BUS])  # none twice, none left out
    assert pages == 3
    # the context link is still there beside the page links
    assert "json-ld#context" in r.headers["link"]


def test_a_counted_last_page_has_no_next_and_its_prev_goes_back_one_page(city: Server):
    r = viewer_get(city, f"{NGSI}/entities", idPattern=MINE, limit=3, offset=3, count="true")
    assert r.status_code == 200 and r.headers["ngsild-results-count"] == "6"
    links = page_links(r)
    assert "next" not in links
    back = viewer_get(city, links["prev"])
    assert [e["id"] for e in back.json()] == [*LAMPS, BUS][:3]  # in the order of creation
    first = viewer_get(city, f"{NGSI}/entities", idPattern=MINE, limit=3, count="true")
    assert "prev" not in page_links(first) and "next" in page_links(first)


def test_pick_keeps_and_omit_drops_members(city: Server):
    picked = viewer_get(city, f"{NGSI}/entities", type="Streetlight", pick="id,powerState")
    assert picked.status_code == 200, picked.text
    assert picked.json() and all(set(e) == {"id", "powerState"} for e in picked.json())
    omitted = viewer_get(city, f"{NGSI}/entities/{LAMPS[0]}", omit="location,type")
    assert omitted.status_code == 200, omitted.text
    assert omitted.json() == {
        "id": LAMPS[0],
        "powerState": {"type": "Property", "value": "off"},
    }
    with city.client(VIEWER) as c:
        geo = c.get(
            f"{NGSI}/entities/{LAMPS[1]}",
            params={"pick": "powerState"},
            headers={"Accept": "application/geo+json"},
        )
    assert geo.status_code == 200 and geo.json()["properties"] == {
        "powerState": {"type": "Property", "value": "off"}
    }
    assert geo.json()["geometry"]["type"] == "Point"  # the feature keeps its geometry


@pytest.mark.parametrize(
    ("params", "field"),
    [({"pick": "id", "omit": "type"}, "omit"), ({"pick": ""}, "pick"), ({"omit": "a b"}, "omit")],
)
def test_a_bad_projection_names_its_parameter(city: Server, params: dict, field: str):
    r = viewer_get(city, f"{NGSI}/entities", type="Streetlight", **params)
    assert r.status_code == 400 and r.json()["field"] == field, r.text


def post_query(city: Server, body: Any, **params: Any) -> httpx.Response:
    """A viewer's query entity operation."""
    with city.client(VIEWER) as c:
        return c.post(f"{NGSI}/entityOperations/query", json=body, params=params)


def test_query_by_document_selects_as_get_does(city: Server):
    body = {
        "type": "Query",
        "entities": [{"type": "Streetlight", "idPattern": MINE}],
        "q": 'powerState=="off"',
        "attrs": ["powerState"],
    }
    r = post_query(city, body, count="true")
    assert r.status_code == 200, r.text
    assert r.headers["ngsild-results-count"] == "2"
    assert r.json() == [
        {"id": lamp, "type": "Streetlight", "powerState": {"type": "Property", "value": "off"}}
        for lamp in LAMPS[:2]
    ]


def test_query_by_document_takes_several_types_and_a_geo_query(city: Server):
    both = post_query(
        city,
        {"type": "Query", "entities": [{"type": "Bus"}, {"type": "Streetlight"}]},
        limit=100,
    )
    assert {e["id"] for e in both.json()} >= {BUS, *LAMPS}
    near = post_query(
        city,
        {
            "type": "Query",
            "entities": [{"type": "Streetlight", "idPattern": MINE}],
            "geoQ": {
                "georel": "near;maxDistance==100",
                "geometry": "Point",
                "coordinates": [5, 47.3],
            },
        },
    )
    assert [e["id"] for e in near.json()] == LAMPS[:2]  # 0 and 76 m away; the next is 152 m


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"entities": [{"type": "Bus"}]}, "type"),
        ({"type": "Query"}, "entities"),
        ({"type": "Query", "entities": []}, "entities"),
        ({"type": "Query", "entities": [{"kind": "Bus"}]}, "entities[0]"),
        ({"type": "Query", "entities": [{"type": "Bus"}, {"id": BUS}]}, "entities"),
        ({"type": "Query", "q": "powerState=="}, "q"),
        ({"type": "Query", "attrs": "powerState"}, "attrs"),
        ({"type": "Query", "geoQ": {"georel": "near"}}, "geoQ.georel"),
        ({"type": "Query", "q": "a", "sort": "id"}, "sort"),
    ],
)
def test_a_bad_query_document_names_its_member(city: Server, body: Any, field: str):
    r = post_query(city, body)
    assert r.status_code == 400 and r.json()["field"] == field, r.text
