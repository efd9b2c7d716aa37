"""JSON-LD terms: stored names relative to the core context, a user context's terms
expanded and compacted through PyLD, and the renaming of NGSI-LD shapes and queries."""

from __future__ import annotations

import pytest

from citypilot.api.ldterms import (
    rename_entity,
    rename_q,
    rename_subscription,
    rename_type_selector,
)
from citypilot.model.errors import BadRequestData
from citypilot.model.ldcontext import CORE, DEFAULT_VOCAB, ContextCache, MissingDocument

EX = "https://example.org/"
USER = {"speed": EX + "speed", "Car": EX + "Vehicle", "ex": EX, "lamp": DEFAULT_VOCAB + "Lamp"}


@pytest.fixture
def terms():
    return ContextCache().process(USER, "@context")


def test_core_names_are_stored_short_and_other_iris_in_full():
    assert CORE.stored("BikeStation") == "BikeStation"
    assert CORE.stored(DEFAULT_VOCAB + "BikeStation") == "BikeStation"
    assert CORE.stored("https://uri.etsi.org/ngsi-ld/location") == "location"
    assert CORE.stored(EX + "speed") == EX + "speed"
    # a default-context IRI whose name is a core term is not that term
    assert CORE.stored(DEFAULT_VOCAB + "location") == DEFAULT_VOCAB + "location"


def test_a_user_context_expands_to_stored_names_and_compacts_back(terms):
    assert terms.stored("speed") == EX + "speed"
    assert terms.stored("ex:colour") == EX + "colour"
    assert terms.stored("lamp") == "Lamp"
    assert terms.stored("location") == "location"  # the core's protected term
    assert terms.stored("brandName") == "brandName"  # under the core @vocab
    assert terms.shown(EX + "speed") == "speed"
    assert terms.shown(EX + "Vehicle") == "Car"
    assert terms.shown(EX + "colour") == "ex:colour"
    assert terms.shown("Lamp") == "lamp"
    assert CORE.shown(EX + "speed") == EX + "speed"


def test_a_context_is_processed_once():
    cache = ContextCache()
    assert cache.process(USER, "@context") is cache.process(dict(USER), "@context")


def test_an_unknown_url_is_asked_for_and_an_invalid_context_refused():
    cache = ContextCache()
    with pytest.raises(MissingDocument) as missing:
        cache.process("https://contexts.example.org/city.jsonld", "Link")
    assert missing.value.url == "https://contexts.example.org/city.jsonld"
    cache.documents[missing.value.url] = {"@context": USER}
    assert cache.process(missing.value.url, "Link").stored("speed") == EX + "speed"
    with pytest.raises(BadRequestData) as bad:
        cache.process({"speed": {"@id": 5}}, "@context")
    assert bad.value.field == "@context"


def test_an_entity_is_renamed_at_every_depth_but_not_in_its_values(terms):
    doc = {
        "id": "urn:ngsi-ld:Car:1",
        "type": "Car",
        "speed": {
            "type": "Property",
            "value": {"speed": 3},
            "ex:measuredBy": {"type": "Relationship", "object": "urn:x"},
        },
        "ex:tags": ["speed"],
    }
    assert rename_entity(doc, terms.stored) == {
        "id": "urn:ngsi-ld:Car:1",
        "type": EX + "Vehicle",
        EX + "speed": {
            "type": "Property",
            "value": {"speed": 3},
            EX + "measuredBy": {"type": "Relationship", "object": "urn:x"},
        },
        EX + "tags": ["speed"],
    }


def test_q_attribute_paths_are_renamed_and_values_kept(terms):
    q = 'speed>50;(ex:colour=="speed"|speed.ex:unit==urn:ngsi-ld:x);address[city]'
    assert rename_q(q, terms.stored) == (
        f'{EX}speed>50;({EX}colour=="speed"|{EX}speed.{EX}unit==urn:ngsi-ld:x);address[city]'
    )
    assert rename_q(f"{EX}speed.a.b>1", CORE.stored) == f"{EX}speed.a.b>1"


def test_type_selectors_and_subscriptions_are_renamed(terms):
    assert rename_type_selector("(Car;lamp)|Bus", terms.stored) == f"({EX}Vehicle;Lamp)|Bus"
    sub = {
        "entities": [{"type": "Car"}],
        "watchedAttributes": ["speed"],
        "q": "speed>1",
        "notification": {"attributes": ["speed"], "endpoint": {"uri": "http://x"}},
    }
    out = rename_subscription(sub, terms.stored)
    assert out["entities"] == [{"type": EX + "Vehicle"}]
    assert out["watchedAttributes"] == [EX + "speed"]
    assert out["q"] == f"{EX}speed>1"
    assert out["notification"]["attributes"] == [EX + "speed"]


def test_q_names_an_attribute_by_its_full_iri_once_expanded(terms):
    from citypilot.store.query import And, Term, parse_q

    node = parse_q(rename_q('speed>50;brandName=="x"', terms.stored))
    assert node == And((Term(EX + "speed", ">", (50.0,)), Term("brandName", "==", ("x",))))


def test_a_path_of_full_iris_is_renamed_name_by_name_and_then_read_as_a_path(terms):
    path = f"{EX}speed.{EX}measuredBy[city]"
    assert (
        rename_q(f"{path}==1", lambda n: n.upper())
        == f"{EX.upper()}SPEED.{EX.upper()}MEASUREDBY[city]==1"
    )
    from citypilot.store.query import Term, parse_q

    dotted = "https://smartdatamodels.org/dataModel.Transportation/speed"
    assert parse_q(rename_q("speed.ex:measuredBy>1", terms.stored)) == Term(
        EX + "speed", ">", (1.0,), sub=(EX + "measuredBy",)
    )
    assert parse_q(f"{dotted}.unit>1") == Term(dotted, ">", (1.0,), sub=("unit",))
    assert parse_q("http://x.org:8080/speed.q") == Term("http://x.org:8080/speed", sub=("q",))
