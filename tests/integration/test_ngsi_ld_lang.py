"""Conformance of the language filter (ETSI GS CIM 009 v1.8, clause 4.15, the ``lang``
parameter of retrieve and query): a LanguageProperty is answered as a Property with the
``value`` of the language chosen and its ``lang``; ``lang=*`` keeps the languageMap;
normalised, concise and keyValues alike. Against each store."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import OPERATOR, VIEWER, Server

NGSI = "/ngsi-ld/v1"
PARK = f"urn:ngsi-ld:Park:{uuid.uuid4().hex[:8]}"
NAMES = {"fr": "Jardin Darcy", "en": "Darcy Garden", "@none": "Darcy"}


@pytest.fixture(scope="module")
def park(city: Server) -> Server:
    """A park whose name is a LanguageProperty observed at a time."""
    with city.client(OPERATOR) as c:
        r = c.post(
            f"{NGSI}/entities",
            json={
                "id": PARK,
                "type": "Park",
                "name": {
                    "type": "LanguageProperty",
                    "languageMap": NAMES,
                    "observedAt": "2026-11-20T10:00:00.000Z",
                },
                "area": {"type": "Property", "value": 3.2},
            },
        )
        assert r.status_code == 201, r.text
    return city


def read(city: Server, **params: Any) -> dict[str, Any]:
    """The park as a viewer reads it."""
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities/{quote(PARK, safe='')}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    ("lang", "value", "tag"),
    [
        ("fr", "Jardin Darcy", "fr"),
        ("en,fr", "Darcy Garden", "en"),
        ("de,fr", "Jardin Darcy", "fr"),
        ("fr;q=0.5,en", "Darcy Garden", "en"),
        ("EN", "Darcy Garden", "en"),
        ("de", "Darcy", "@none"),
    ],
)
def test_one_language_makes_a_property_with_value_and_lang(
    park: Server, lang: str, value: str, tag: str
):
    name = read(park, lang=lang)["name"]
    assert name == {
        "type": "Property",
        "value": value,
        "lang": tag,
        "observedAt": "2026-11-20T10:00:00.000Z",
    }
    assert read(park, lang=lang, options="keyValues")["name"] == value
    concise = read(park, lang=lang, options="concise")["name"]
    assert concise["value"] == value and concise["lang"] == tag and "type" not in concise


def test_every_language_keeps_the_language_map(park: Server):
    assert read(park, lang="*")["name"] == read(park)["name"]
    assert read(park, lang="*")["name"]["languageMap"] == NAMES
    assert read(park, lang="*", options="keyValues")["name"] == {"languageMap": NAMES}


def test_a_query_answers_in_the_language_asked(park: Server):
    with park.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities", params={"type": "Park", "lang": "en"})
    assert r.status_code == 200, r.text
    (doc,) = r.json()
    assert doc["name"]["value"] == "Darcy Garden" and doc["area"]["value"] == 3.2


@pytest.mark.parametrize("lang", ["fr;x", "f r", "", "fr,,en", "fr;q=2"])
def test_a_bad_language_list_names_lang(park: Server, lang: str):
    with park.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities/{quote(PARK, safe='')}", params={"lang": lang})
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("/BadRequestData") and r.json()["field"] == "lang"
