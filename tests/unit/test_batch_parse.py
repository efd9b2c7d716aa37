"""The batch parser (column checks) accepts exactly what the item-by-item parser accepts,
with the same readings; a batch with anything wrong in it is left to the item-by-item
parser, which names the field."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.observation import parse_batch, parse_observation
from citypilot.model.types import AttributeSpec, EntityType, TypeRegistry

REGISTRY = TypeRegistry(BUILTIN_TYPES)
LATEST = time.time() + 300

VALUES = (
    st.floats()
    | st.integers(-(2**70), 2**70)
    | st.booleans()
    | st.sampled_from(["on", "off", "low", "dim", "x" * 2000])
    | st.none()
    | st.lists(st.integers(), max_size=2)
)
ATTRS = st.dictionaries(
    st.sampled_from(["powerConsumption", "powerState", "dimLevel", "status", "name", "bogus"]),
    VALUES,
    max_size=3,
)
GOOD_POINT = {"type": "Point", "coordinates": [5.0, 47.3]}
OBSERVATION = st.fixed_dictionaries(
    {
        "id": st.sampled_from(
            ["urn:ngsi-ld:Streetlight:1", "urn:ngsi-ld:Streetlight:2", "urn:ngsi-ld:Bus:1", 7]
        ),
        "type": st.sampled_from(["Streetlight", "Streetlight", "Unicorn"]),
        "observedAt": st.sampled_from(
            ["2026-11-20T10:00:00Z", "2026-11-20T10:00:01+01:00", "2999-01-01T00:00:00Z", "x"]
        ),
        "attrs": ATTRS
        | st.just({"location": GOOD_POINT})
        | st.just({"location": {"type": "Point", "coordinates": [0, 100]}}),
    }
)


def item_by_item(items: list) -> list | None:
    """The readings of every item, or None if any item is refused."""
    readings = []
    for i, raw in enumerate(items):
        try:
            readings.extend(parse_observation(raw, REGISTRY, f"[{i}]", LATEST))
        except Exception:
            return None
    return readings


@settings(max_examples=400, deadline=None)
@given(st.lists(OBSERVATION, min_size=1, max_size=6))
def test_the_batch_parser_accepts_what_each_item_would_with_the_same_readings(items):
    expected = item_by_item(items)
    got = parse_batch(items, REGISTRY, LATEST)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        readings, ids = got
        assert sorted(readings) == sorted(expected)
        assert ids == {r.entity_id for r in expected}


#: One thing wrong with one observation (``None`` as a value: the key is dropped).
FLAWS = st.sampled_from(
    [
        ("attrs", {"powerConsumption": -1}),
        ("attrs", {"powerConsumption": float("nan")}),
        ("attrs", {"powerConsumption": float("inf")}),
        ("attrs", {"powerConsumption": True}),
        ("attrs", {"powerConsumption": "12"}),
        ("attrs", {"powerConsumption": 2**70}),
        ("attrs", {"powerConsumption": 10**400}),
        ("attrs", {"powerState": "dim"}),
        ("attrs", {"powerState": 1}),
        ("attrs", {"dimLevel": 50.5}),
        ("attrs", {"dimLevel": 50.0}),
        ("attrs", {"bogus": 1}),
        ("attrs", {"name": "x" * 2000}),
        ("attrs", {"name": "lamp 12"}),
        ("attrs", {"location": {"type": "Point", "coordinates": [0, 100]}}),
        ("attrs", {"location": GOOD_POINT}),
        ("attrs", {}),
        ("attrs", None),
        ("id", "urn:ngsi-ld:Bus:1"),
        ("id", None),
        ("type", "Unicorn"),
        ("observedAt", "2999-01-01T00:00:00Z"),
        ("observedAt", "2026-11-20T10:00:00"),
        ("observedAt", 12),
        ("extra", 1),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, 1000), min_size=1, max_size=8),
    st.integers(0, 7),
    FLAWS,
)
def test_one_flaw_anywhere_in_a_batch_is_found_or_accepted_alike(powers, where, flaw):
    items = [
        {
            "id": f"urn:ngsi-ld:Streetlight:{i}",
            "type": "Streetlight",
            "observedAt": "2026-11-20T10:00:00Z",
            "attrs": {"powerConsumption": p, "powerState": "on"},
        }
        for i, p in enumerate(powers)
    ]
    key, value = flaw
    item = items[where % len(items)]
    if key == "attrs" and value:
        item["attrs"].update(value)
    elif value is None:
        del item[key]
    else:
        item[key] = value
    expected = item_by_item(items)
    got = parse_batch(items, REGISTRY, LATEST)
    assert (got is None) == (expected is None)
    if got is not None:
        assert sorted(got[0]) == sorted(expected)


def test_a_plainly_valid_batch_becomes_readings_column_by_column():
    items = [
        {
            "id": f"urn:ngsi-ld:Streetlight:{i}",
            "type": "Streetlight",
            "observedAt": "2026-11-20T10:00:00Z",
            "attrs": {"powerConsumption": 40 + i / 2, "powerState": "on"},
        }
        for i in range(3)
    ]
    readings, ids = parse_batch(items, REGISTRY, LATEST)
    assert [(r.entity_id[-1], r.name, r.value, r.num) for r in readings] == [
        ("0", "powerConsumption", "40.0", 40.0),
        ("1", "powerConsumption", "40.5", 40.5),
        ("2", "powerConsumption", "41.0", 41.0),
        ("0", "powerState", '"on"', None),
        ("1", "powerState", '"on"', None),
        ("2", "powerState", '"on"', None),
    ]
    assert ids == {f"urn:ngsi-ld:Streetlight:{i}" for i in range(3)}


def test_one_value_out_of_range_leaves_the_batch_to_the_item_by_item_parser():
    items = [
        {
            "id": f"urn:ngsi-ld:Streetlight:{i}",
            "type": "Streetlight",
            "observedAt": "2026-11-20T10:00:00Z",
            "attrs": {"powerConsumption": -1 if i == 2 else 40},
        }
        for i in range(4)
    ]
    assert parse_batch(items, REGISTRY, LATEST) is None


def test_personal_values_are_pseudonymised_in_a_batch_too():
    registry = TypeRegistry(
        [
            *BUILTIN_TYPES,
            EntityType(
                "Turnstile",
                "transport",
                attributes={"badge": AttributeSpec("badge", value="string", personal=())},
            ),
        ],
        pseudonymise=lambda v: f"pseudo:{len(v)}",
    )
    item = {
        "id": "urn:ngsi-ld:Turnstile:1",
        "type": "Turnstile",
        "observedAt": "2026-11-20T10:00:00Z",
        "attrs": {"badge": "badge-0042"},
    }
    readings, _ = parse_batch([item], registry, LATEST)
    assert readings == parse_observation(item, registry, "[0]", LATEST)
    assert (readings[0].data, readings[0].value) == ("pseudo:10", '"pseudo:10"')
