"""The NGSI-LD data model (clauses 4.5, 4.6): kinds inferred from the concise form,
sub-attributes, multi-attributes, and the normalised, concise and simplified forms."""

from __future__ import annotations

import pytest

from citypilot.model.data_model import concise, parse_attribute_value, simplified
from citypilot.model.entity import parse_open_attributes
from citypilot.model.errors import BadRequestData

POINT = {"type": "Point", "coordinates": [5.0, 47.0]}


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        (21.5, {"type": "Property", "value": 21.5}),
        ({"value": 3, "unitCode": "CEL"}, {"type": "Property", "value": 3, "unitCode": "CEL"}),
        ({"street": "Rue X"}, {"type": "Property", "value": {"street": "Rue X"}}),
        (POINT, {"type": "GeoProperty", "value": POINT}),
        ({"value": POINT}, {"type": "GeoProperty", "value": POINT}),
        ({"object": "urn:ngsi-ld:Car:1"}, {"type": "Relationship", "object": "urn:ngsi-ld:Car:1"}),
        (
            {"languageMap": {"fr": "Gare"}},
            {"type": "LanguageProperty", "languageMap": {"fr": "Gare"}},
        ),
        ({"vocab": "Open"}, {"type": "VocabProperty", "vocab": "Open"}),
        ({"json": {"a": [1]}}, {"type": "JsonProperty", "json": {"a": [1]}}),
        ({"valueList": [1, 2]}, {"type": "ListProperty", "valueList": [1, 2]}),
        (
            {"objectList": ["urn:a:1", "urn:a:2"]},
            {"type": "ListRelationship", "objectList": ["urn:a:1", "urn:a:2"]},
        ),
        ([1, 2, 3], {"type": "Property", "value": [1, 2, 3]}),
    ],
)
def test_the_kind_is_inferred_from_the_concise_form(given, normalised):
    assert parse_attribute_value(given, "a") == normalised


def test_sub_attributes_nest_to_any_depth_and_come_back_concise():
    given = {
        "value": 50,
        "measuredBy": {"object": "urn:ngsi-ld:Radar:1", "calibratedAt": {"value": "2024-01-01"}},
    }
    normalised = parse_attribute_value(given, "speed")
    assert normalised["measuredBy"]["calibratedAt"] == {"type": "Property", "value": "2024-01-01"}
    assert normalised["measuredBy"]["type"] == "Relationship"
    assert concise(normalised) == {
        "value": 50,
        "measuredBy": {"object": "urn:ngsi-ld:Radar:1", "calibratedAt": "2024-01-01"},
    }
    assert simplified(normalised) == 50


def test_multi_attribute_instances_need_distinct_dataset_ids():
    instances = [{"value": 1}, {"value": 2, "datasetId": "urn:ds:gps"}]
    normalised = parse_attribute_value(instances, "speed")
    assert simplified(normalised) == {"dataset": {"@none": 1, "urn:ds:gps": 2}}
    with pytest.raises(BadRequestData) as info:
        parse_attribute_value([{"value": 1}, {"value": 2}], "speed")
    assert info.value.field == "speed[1].datasetId"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"type": "Relationship", "value": "urn:a:1"}, "a.object"),
        ({"type": "Relationship", "object": "not a uri"}, "a.object"),
        ({"type": "Property"}, "a.value"),
        ({"type": "Thing", "value": 1}, "a.type"),
        ({"languageMap": {"not a tag": "x"}}, "a.languageMap"),
        ({"value": 1, "observedAt": "yesterday"}, "a.observedAt"),
        ({"value": 1, "datasetId": "ds 1"}, "a.datasetId"),
        ({"value": 1, "bad name": 2}, "a.bad name"),
        (None, "a"),
    ],
)
def test_what_the_data_model_refuses_is_named(given, field):
    with pytest.raises(BadRequestData) as info:
        parse_attribute_value(given, "a")
    assert info.value.field == field


def test_location_of_an_open_world_entity_is_a_geoproperty():
    with pytest.raises(BadRequestData) as info:
        parse_open_attributes({"location": "kitchen"})
    assert info.value.field == "location"
    attrs = parse_open_attributes({"location": POINT, "speed": {"value": 3, "unitCode": "KMH"}})
    assert attrs["location"].kind == "GeoProperty" and attrs["speed"].unit_code == "KMH"
