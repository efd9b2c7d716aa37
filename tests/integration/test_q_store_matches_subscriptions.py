"""One query language, one meaning: an entity a store returns for ``q`` in
``GET /entities`` is exactly an entity a subscription with that ``q`` is notified of
(``notify.matching``), on each store — including values of another type than the
query's (``speed!=5`` holds for a speed given as text: the value is not 5)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from citypilot.model.entity import Entity, parse_open_attributes
from citypilot.notify.matching import meets_q
from citypilot.store.base import EntityQuery, Store
from citypilot.store.query import parse_q

CARS = {
    "fast": {"speed": 80, "colour": "red", "tags": {"owner": "city", "seats": 4}},
    "slow": {"speed": 5, "colour": "blue", "tags": {"owner": "taxi", "seats": 2}},
    "text": {"speed": "unknown", "colour": "red", "tags": {"owner": 7}},
    "flag": {"speed": True, "colour": 3},
    "bare": {"colour": "green"},
}

QUERIES = (
    "speed==5",
    "speed!=5",
    "speed!=5,80",
    "speed!=1..10",
    "speed>10",
    "speed<=5",
    'speed!="unknown"',
    'speed=="unknown"',
    "speed==true",
    "speed!=true",
    'colour!="red"',
    "colour!=3",
    "speed",
    'colour~="^r"',
    'colour!~="^r"',
    "tags[owner]!=7",
    'tags[owner]!="city"',
    "tags[seats]>2",
    'speed!=5;colour=="red"',
    'speed!=5|colour=="green"',
)


def car(name: str, values: dict[str, object]) -> Entity:
    """A car of the fleet, its values as plain Properties."""
    doc = {k: {"type": "Property", "value": v} for k, v in values.items()}
    return Entity(f"urn:ngsi-ld:Car:{name}", "Car", parse_open_attributes(doc))


@pytest.fixture
async def fleet(store_factory: Callable[[], Store]):
    """The cars, stored."""
    store = store_factory()
    await store.open()
    cars = [car(name, values) for name, values in CARS.items()]
    await store.upsert_entities(cars, time.time(), replace=True)
    yield store, cars
    await store.close()


async def test_the_store_and_the_subscription_matcher_agree_on_every_query(fleet):
    store, cars = fleet
    disagreements = []
    for q in QUERIES:
        node = parse_q(q)
        found, _ = await store.query_entities(EntityQuery(types=("Car",), q=node, limit=100))
        stored = sorted(e.id.rsplit(":", 1)[1] for e in found)
        matched = sorted(e.id.rsplit(":", 1)[1] for e in cars if meets_q(node, e))
        if stored != matched:
            disagreements.append((q, stored, matched))
    assert disagreements == []
