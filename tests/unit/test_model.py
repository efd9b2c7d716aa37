"""The city model: ids, geometry, types, entities and observations refuse bad input precisely."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.entity import parse_entity
from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import validate_geometry
from citypilot.model.ids import check_device_id, check_entity_id
from citypilot.model.observation import parse_observation
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.model.types import TypeRegistry, entity_type_from_json

REGISTRY = TypeRegistry(BUILTIN_TYPES)
LATEST = time.time() + 300


def light(**attrs: object) -> dict:
    """A valid streetlight document with extra attributes."""
    doc = {
        "id": "urn:ngsi-ld:Streetlight:42",
        "type": "Streetlight",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5, 47]}},
    }
    doc.update(attrs)
    return doc


def refusal(fn, *args) -> BadRequestData:
    with pytest.raises(BadRequestData) as info:
        fn(*args)
    return info.value


def test_registry_has_the_city_types_with_units_and_commands():
    for name in (
        "Streetlight",
        "TrafficSignal",
        "Camera",
        "Tram",
        "Bus",
        "BikeStation",
        "ParkingSpot",
        "DeliveryArea",
        "AirQualityObserved",
        "WaterLevelSensor",
        "Building",
        "AccessPoint",
        "PoliceUnit",
        "TechnicalVehicle",
        "Zone",
        "Municipality",
    ):
        assert name in REGISTRY
    light_type = REGISTRY.get("Streetlight")
    assert light_type.attributes["powerConsumption"].unit == "WTT"
    assert "setDimming" in light_type.commands
    assert light_type.commands["setDimming"].confirms["illuminanceLevel"].scale == 0.01


@pytest.mark.parametrize(
    "bad", ["Streetlight-1", "urn:ngsi-ld:Streetlight:a b", "//host/x", "", 42, None, "x:" * 150]
)
def test_ids_that_are_not_absolute_uris_are_refused(bad):
    assert refusal(check_entity_id, bad).field == "id"


@pytest.mark.parametrize(
    "good", ["urn:ngsi-ld:Bus:1", "https://example.org/a/b?c=d#e", "urn:epc:id:sgtin:1.2.3"]
)
def test_any_absolute_uri_is_an_id(good):
    assert check_entity_id(good) == good


@pytest.mark.parametrize(
    "bad", ["Streetlight:1", "urn:ngsi-ld:1", "urn:ngsi-ld:Streetlight:", "urn:ngsi-ld:Bus:1"]
)
def test_device_ids_are_canonical_urns_of_their_type(bad):
    assert refusal(check_device_id, bad, "id", "Streetlight").field == "id"


def test_an_entity_may_carry_another_types_urn():
    assert parse_entity(light(id="urn:ngsi-ld:Bus:1"), REGISTRY).id == "urn:ngsi-ld:Bus:1"


def test_a_valid_entity_is_accepted_with_units_filled_in():
    entity = parse_entity(
        light(
            powerConsumption={"type": "Property", "value": 40, "observedAt": "2026-11-20T10:00:00Z"}
        ),
        REGISTRY,
    )
    attr = entity.attrs["powerConsumption"]
    assert attr.unit_code == "WTT" and attr.num == 40.0 and attr.observed_at is not None
    assert entity.to_ngsi(key_values=True)["powerConsumption"] == 40


@pytest.mark.parametrize(
    ("attrs", "field"),
    [
        ({"powerConsumption": {"type": "Property", "value": "lots"}}, "powerConsumption.value"),
        ({"powerConsumption": {"type": "Property", "value": 5000}}, "powerConsumption.value"),
        ({"powerState": {"type": "Property", "value": "dazzling"}}, "powerState.value"),
        ({"colour": {"type": "Property", "value": "red"}}, "colour"),
        (
            {"powerConsumption": {"type": "Relationship", "object": "urn:x:y"}},
            "powerConsumption.type",
        ),
        (
            {"powerConsumption": {"type": "Property", "value": 1, "unitCode": "KWT"}},
            "powerConsumption.unitCode",
        ),
        (
            {"powerConsumption": {"type": "Property", "value": 1, "observedAt": "yesterday"}},
            "powerConsumption.observedAt",
        ),
        (
            {"refMunicipality": {"type": "Relationship", "object": "not a uri"}},
            "refMunicipality.object",
        ),
    ],
)
def test_bad_attributes_are_refused_naming_the_field(attrs, field):
    assert refusal(parse_entity, light(**attrs), REGISTRY).field == field


def test_an_unregistered_type_is_open_world_unless_the_city_is_strict():
    doc = {"id": "urn:ngsi-ld:Dragon:1", "type": "Dragon", "wings": 2}
    assert parse_entity(doc, REGISTRY).attrs["wings"].value == 2
    err = refusal(parse_entity, doc, REGISTRY, "", True)
    assert err.field == "type" and "not a registered" in err.detail


def test_a_registered_type_accepts_sub_attributes_but_keeps_its_checks():
    entity = parse_entity(
        light(
            powerConsumption={
                "type": "Property",
                "value": 40,
                "measuredBy": {"type": "Relationship", "object": "urn:ngsi-ld:Meter:1"},
            }
        ),
        REGISTRY,
    )
    shown = entity.to_ngsi()["powerConsumption"]
    assert shown["measuredBy"] == {"type": "Relationship", "object": "urn:ngsi-ld:Meter:1"}
    bad = light(powerConsumption=[{"value": 4}, {"value": -1, "datasetId": "urn:x:d"}])
    assert refusal(parse_entity, bad, REGISTRY).field == "powerConsumption[1].value"


def test_a_registered_custom_type_is_then_accepted():
    registry = TypeRegistry(BUILTIN_TYPES)
    registry.register(
        entity_type_from_json(
            {
                "name": "NoiseSensor",
                "department": "environment",
                "attributes": {
                    "level": {"value": "number", "unit": "2N", "minimum": 0, "maximum": 200}
                },
            }
        )
    )
    parse_entity({"id": "urn:ngsi-ld:NoiseSensor:1", "type": "NoiseSensor", "level": 55}, registry)
    assert (
        refusal(
            parse_entity,
            {"id": "urn:ngsi-ld:NoiseSensor:1", "type": "NoiseSensor", "level": 500},
            registry,
        ).field
        == "level"
    )


@pytest.mark.parametrize(
    ("geometry", "fragment"),
    [
        ({"type": "Point", "coordinates": [190, 10]}, "longitude"),
        ({"type": "Point", "coordinates": [10, 95]}, "latitude"),
        ({"type": "Point", "coordinates": ["a", 1]}, "pair of numbers"),
        ({"type": "Circle", "coordinates": [1, 1]}, "type must be"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}, "linear ring"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            "Self-intersection",
        ),
        ({"type": "LineString", "coordinates": [[0, 0]]}, "2 positions"),
    ],
)
def test_bad_geometries_are_refused(geometry, fragment):
    err = refusal(validate_geometry, geometry)
    assert fragment in err.detail and err.field.startswith("location")


def test_geometry_bounds():
    poly = {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 1], [0, 1], [0, 0]]]}
    assert validate_geometry(poly) == (0, 0, 2, 1)


def test_observation_becomes_readings():
    readings = parse_observation(
        {
            "id": "urn:ngsi-ld:Streetlight:42",
            "type": "Streetlight",
            "observedAt": "2026-11-20T10:00:00Z",
            "attrs": {"powerConsumption": 41.5, "powerState": "on"},
        },
        REGISTRY,
        "[0]",
        LATEST,
    )
    assert [(r.name, r.num, r.value) for r in readings] == [
        ("powerConsumption", 41.5, "41.5"),
        ("powerState", None, '"on"'),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"observedAt": "2999-01-01T00:00:00Z"}, "[0].observedAt"),
        ({"observedAt": "2026-11-20T10:00:00"}, "[0].observedAt"),
        ({"observedAt": None}, "[0].observedAt"),
        ({"attrs": {}}, "[0].attrs"),
        ({"attrs": {"powerConsumption": -1}}, "[0].attrs.powerConsumption"),
        ({"attrs": {"powerConsumption": float("nan")}}, "[0].attrs.powerConsumption"),
        ({"attrs": {"powerConsumption": True}}, "[0].attrs.powerConsumption"),
        ({"attrs": {"refMunicipality": "urn:x"}}, "[0].attrs.refMunicipality"),
        (
            {"attrs": {"location": {"type": "Point", "coordinates": [0, 100]}}},
            "[0].attrs.location.coordinates",
        ),
        ({"id": "urn:ngsi-ld:Bus:1"}, "[0].id"),
        ({"type": "Unicorn"}, "[0].type"),
        ({"extra": 1}, "[0].extra"),
    ],
)
def test_bad_observations_are_refused_naming_the_field(change, field):
    obs = {
        "id": "urn:ngsi-ld:Streetlight:42",
        "type": "Streetlight",
        "observedAt": "2026-11-20T10:00:00Z",
        "attrs": {"powerConsumption": 1.0},
    }
    obs.update(change)
    assert refusal(parse_observation, obs, REGISTRY, "[0]", LATEST).field == field


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_instants_round_trip_to_the_millisecond(instant):
    assert abs(parse_instant(format_instant(instant), "t") - instant) < 0.001


@given(st.text(max_size=40))
def test_parse_instant_never_crashes(text):
    try:
        parse_instant(text, "t")
    except BadRequestData as err:
        assert err.field == "t"


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_observation_parser_refuses_garbage_with_a_field(garbage):
    try:
        parse_observation(garbage, REGISTRY, "[0]", LATEST)
    except BadRequestData as err:
        assert err.field and err.field.startswith("[0]")
