"""A subscription's ``q`` with attribute paths, evaluated on the entity after a change
(``notify.matching``) as the stores evaluate it in ``GET /entities``."""

from __future__ import annotations

import pytest

from citypilot.model.entity import Entity, parse_open_attributes
from citypilot.notify.matching import meets_q
from citypilot.store.query import parse_q

CAR = Entity(
    "urn:ngsi-ld:Car:1",
    "Car",
    parse_open_attributes(
        {
            "speed": {
                "type": "Property",
                "value": 42,
                "measuredBy": {
                    "type": "Relationship",
                    "object": "urn:ngsi-ld:Device:radar-1",
                    "confidence": {"type": "Property", "value": 0.5},
                },
            },
            "address": {"addressLocality": "Dijon", "building": {"floors": 5, "listed": True}},
        }
    ),
)


@pytest.mark.parametrize(
    ("q", "meets"),
    [
        ('speed.measuredBy=="urn:ngsi-ld:Device:radar-1"', True),
        ("speed.measuredBy==urn:ngsi-ld:Device:camera-2", False),
        ("speed.measuredBy.confidence>=0.5", True),
        ("speed.measuredBy.confidence==0.1..0.3", False),
        ('address[addressLocality]=="Dijon"', True),
        ('address[addressLocality]~="^Bea"', False),
        ("address[building][floors]>3", True),
        ("address[building][listed]==true", True),
        ("address[postalCode]", False),
        ("address[postalCode]!=3", False),
        ("address[addressLocality]!=3", True),
        ("speed.unknown", False),
    ],
)
def test_a_path_is_followed_into_sub_attributes_and_values(q: str, meets: bool):
    assert meets_q(parse_q(q), CAR) is meets
