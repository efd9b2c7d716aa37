"""The store contract: one suite, run against the embedded SQLite store and PostgreSQL + PostGIS.

Data is built the way the platform builds it: entities through ``parse_entity`` and
device readings through ``parse_observation``, checked against the built-in types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import psycopg
import pytest

from citypilot.api.selection import parse_geo
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.entity import Attribute, Entity, parse_attributes, parse_entity
from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import degrees_box_around, validate_geometry
from citypilot.model.observation import Reading, parse_observation
from citypilot.model.timeutil import parse_instant
from citypilot.model.types import TypeRegistry
from citypilot.security.devices import Device, DeviceBinding
from citypilot.security.scopes import Grant
from citypilot.store.base import (
    Account,
    DeadLetter,
    EntityQuery,
    GeoQuery,
    HistoryQuery,
    Session,
    Store,
    TemporalBucket,
    TemporalQuery,
)
from citypilot.store.postgres import PostgresStore
from citypilot.store.query import parse_q

REGISTRY = TypeRegistry(BUILTIN_TYPES)
T0 = parse_instant("2024-05-01T10:00:00Z", "T0")
NOW = T0 + 86_400.0  # the store's clock for API writes
LON, LAT = 2.35, 48.85
SQUARE = {  # about 150 m x 220 m around (LON, LAT)
    "type": "Polygon",
    "coordinates": [
        [
            [LON - 0.001, LAT - 0.001],
            [LON + 0.001, LAT - 0.001],
            [LON + 0.001, LAT + 0.001],
            [LON - 0.001, LAT + 0.001],
            [LON - 0.001, LAT - 0.001],
        ]
    ],
}
EAST_HALF = {  # from the square's middle eastward: it cuts the square in two
    "type": "Polygon",
    "coordinates": [
        [
            [LON, LAT - 0.01],
            [LON + 0.01, LAT - 0.01],
            [LON + 0.01, LAT + 0.01],
            [LON, LAT + 0.01],
            [LON, LAT - 0.01],
        ]
    ],
}


def iso(instant: float) -> str:
    """ISO 8601 form of an epoch instant."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(instant)) + "Z"


def make(doc: dict[str, Any]) -> Entity:
    """An entity, checked like the API checks it."""
    return parse_entity(doc, REGISTRY)


def light(n: int, lon: float = LON, lat: float = LAT, **attrs: Any) -> Entity:
    """Streetlight ``n`` at a point, with extra attributes."""
    doc = {"id": f"urn:ngsi-ld:Streetlight:{n:03d}", "type": "Streetlight"}
    doc["location"] = {"type": "Point", "coordinates": [lon, lat]}
    return make({**doc, **attrs})


def observe(entity_id: str, at: float, **attrs: Any) -> list[Reading]:
    """The readings of one compact device observation."""
    raw = {"id": entity_id, "type": entity_id.split(":")[2], "observedAt": iso(at), "attrs": attrs}
    return parse_observation(raw, REGISTRY, "[0]", time.time() + 300)


def fragment(entity_type: str, doc: dict[str, Any]) -> dict[str, Attribute]:
    """Attributes of an entity API fragment."""
    return parse_attributes(REGISTRY.get(entity_type), REGISTRY, doc)


def ids(entities: list[Entity]) -> list[str]:
    """The ids of entities, in order."""
    return [e.id for e in entities]


def lid(n: int) -> str:
    """Id of streetlight ``n``."""
    return f"urn:ngsi-ld:Streetlight:{n:03d}"


@pytest.fixture
async def store(store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
    """An opened store on a fresh database."""
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()


async def query(store: Store, **kwargs: Any) -> list[str]:
    """Ids of the entities a query returns."""
    entities, _ = await store.query_entities(EntityQuery(**kwargs))
    return ids(entities)


# -- entities ---------------------------------------------------------------


async def test_create_get_lookup_and_refuse_duplicates(store: Store) -> None:
    entity = light(
        1,
        status="ok",
        powerState="on",
        powerConsumption={"type": "Property", "value": 42.5, "observedAt": iso(T0)},
        lanternHeight=8,
        refStreetlightControlCabinet="urn:ngsi-ld:StreetlightControlCabinet:7",
    )
    assert await store.create_entities([entity, light(2)], NOW) == []
    got = await store.get_entity(lid(1))
    assert got is not None
    assert (got.id, got.type, got.created_at) == (lid(1), "Streetlight", NOW)
    assert got.to_ngsi() == entity.to_ngsi()
    assert list(got.attrs) == sorted(got.attrs)
    assert got.attrs["powerConsumption"].observed_at == T0
    assert got.attrs["powerConsumption"].unit_code == "WTT"
    assert got.attrs["lanternHeight"].value == 8
    assert await store.get_entity(lid(9)) is None

    # an existing id is refused, a repeated one too; the rest is created
    refused = await store.create_entities(
        [light(1, status="defectiveLamp"), light(3), light(3)], NOW
    )
    assert refused == [lid(1), lid(3)]
    assert (await store.get_entity(lid(1))).attrs["status"].value == "ok"

    refs = await store.lookup([lid(1), lid(3), lid(9)])
    assert set(refs) == {lid(1), lid(3)}
    assert refs[lid(1)] == ("Streetlight", LON, LAT)


async def test_state_survives_a_restart(store_factory: Callable[[], Store]) -> None:
    first = store_factory()
    await first.open()
    entity = light(1, status="ok")
    try:
        await first.create_entities([entity, light(2)], NOW)
        await first.apply_readings(observe(lid(2), T0, powerConsumption=5), NOW)
    finally:
        await first.close()
    again = store_factory()
    await again.open()
    try:
        assert (await again.get_entity(lid(1))).to_ngsi() == entity.to_ngsi()
        assert set(await again.lookup([lid(1), lid(2), lid(3)])) == {lid(1), lid(2)}
        assert await again.create_entities([light(1)], NOW) == [lid(1)]
        series = await again.history(HistoryQuery(lid(2), attrs=("powerConsumption",)))
        assert series == {"powerConsumption": [(T0, 5)]}
    finally:
        await again.close()


async def test_query_types_ids_pattern_paging_and_count(store: Store) -> None:
    created = [light(n, status="ok") for n in (5, 2, 9, 1, 7, 3)]
    sensors = [
        make({"id": f"urn:ngsi-ld:AirQualityObserved:aq{n}", "type": "AirQualityObserved"})
        for n in range(3)
    ]
    await store.create_entities(created + sensors, NOW)
    order = ids(created)  # creation order, not id order

    assert await query(store, types=("Streetlight",), limit=100) == order
    assert await query(store, types=("AirQualityObserved", "Streetlight"), limit=100) == ids(
        created + sensors
    )
    assert await query(store, types=("Tram",)) == []
    assert await query(store, ids=(lid(9), lid(1), "urn:ngsi-ld:Streetlight:nope")) == [
        lid(9),
        lid(1),
    ]
    assert await query(store, id_pattern=r"Streetlight:00[1-3]$") == [lid(2), lid(1), lid(3)]
    assert await query(store, id_pattern="^urn:ngsi-ld:Air", limit=2) == ids(sensors[:2])

    pages = []
    for offset in range(0, 6, 4):
        page, total = await store.query_entities(
            EntityQuery(types=("Streetlight",), limit=4, offset=offset, count=True)
        )
        assert total == 6
        pages += ids(page)
    assert pages == order
    page, total = await store.query_entities(EntityQuery(limit=2, offset=100, count=True))
    assert (page, total) == ([], 9)
    _, total = await store.query_entities(EntityQuery(limit=2))
    assert total is None


async def test_a_query_may_load_only_some_attributes_and_still_filters_on_all(
    store: Store,
) -> None:
    await store.create_entities(
        [light(1, status="ok", powerConsumption=10), light(2, status="defectiveLamp")], NOW
    )
    found, _ = await store.query_entities(
        EntityQuery(
            ids=(lid(1), lid(2)),
            q=parse_q('status=="ok"'),
            attrs=("powerConsumption", "department"),
        )
    )
    assert [(e.id, sorted(e.attrs)) for e in found] == [(lid(1), ["powerConsumption"])]
    assert found[0].attrs["powerConsumption"].value == 10
    everything, _ = await store.query_entities(EntityQuery(ids=(lid(1),)))
    assert sorted(everything[0].attrs) == ["location", "powerConsumption", "status"]


async def test_q_language(store: Store) -> None:
    docs = [
        (1, {"status": "ok", "powerConsumption": 10, "illuminanceLevel": 0.5}),
        (
            2,
            {
                "status": "defectiveLamp",
                "powerConsumption": 55.5,
                "dateLastLampChange": "2023-06-01T00:00:00Z",
            },
        ),
        (
            3,
            {"status": "ok", "powerConsumption": 120, "dateLastLampChange": "2024-02-01T00:00:00Z"},
        ),
        (
            4,
            {
                "status": "brokenLantern",
                "lampTechnology": "LED",
                "refStreetlightControlCabinet": "urn:ngsi-ld:StreetlightControlCabinet:7",
            },
        ),
    ]
    await store.create_entities([light(n, **doc) for n, doc in docs], NOW)
    await store.create_entities(
        [
            make({"id": "urn:ngsi-ld:DeliveryArea:d1", "type": "DeliveryArea", "overstay": True}),
            make({"id": "urn:ngsi-ld:DeliveryArea:d2", "type": "DeliveryArea", "overstay": False}),
        ],
        NOW,
    )

    async def q(text: str, types: tuple[str, ...] = ("Streetlight",)) -> list[str]:
        return await query(store, types=types, q=parse_q(text), limit=100)

    assert await q("powerConsumption>50") == [lid(2), lid(3)]
    assert await q("powerConsumption<=55.5") == [lid(1), lid(2)]
    assert await q("powerConsumption==120") == [lid(3)]
    assert await q("powerConsumption!=120") == [lid(1), lid(2)]
    assert await q("powerConsumption==10..60") == [lid(1), lid(2)]
    assert await q('status=="ok"') == [lid(1), lid(3)]
    assert await q('status!="ok"') == [lid(2), lid(4)]
    assert await q('status=="defectiveLamp","brokenLantern"') == [lid(2), lid(4)]
    assert await q("lampTechnology") == [lid(4)]
    # a relationship's object, given as a bare URI
    assert await q("refStreetlightControlCabinet==urn:ngsi-ld:StreetlightControlCabinet:7") == [
        lid(4)
    ]
    assert await q("refStreetlightControlCabinet!=urn:ngsi-ld:StreetlightControlCabinet:8") == [
        lid(4)
    ]
    assert await q('status=="ok";powerConsumption>50') == [lid(3)]
    assert await q('status=="defectiveLamp"|powerConsumption<20') == [lid(1), lid(2)]
    assert await q('(status=="ok"|status=="defectiveLamp");powerConsumption>=55.5') == [
        lid(2),
        lid(3),
    ]
    assert await q('status~="^broken"') == [lid(4)]
    assert await q('status!~="o"') == [lid(2)]
    assert await q('lampTechnology~="^L.D$"') == [lid(4)]
    assert await q("dateLastLampChange>2024-01-01T00:00:00Z") == [lid(3)]
    assert await q("dateLastLampChange<2024-01-01T00:00:00Z") == [lid(2)]
    areas = ("DeliveryArea",)
    assert await q("overstay==true", areas) == ["urn:ngsi-ld:DeliveryArea:d1"]
    assert await q("overstay==false", areas) == ["urn:ngsi-ld:DeliveryArea:d2"]
    _, total = await store.query_entities(
        EntityQuery(q=parse_q("powerConsumption>0"), limit=1, count=True)
    )
    assert total == 3


def near(lon: float, lat: float, metres: float) -> GeoQuery:
    """A near query as the API builds it."""
    point = {"type": "Point", "coordinates": [lon, lat]}
    return GeoQuery("near", point, degrees_box_around(lon, lat, metres), metres)


def shape_query(georel: str, geometry: dict[str, Any]) -> GeoQuery:
    """A within or intersects query as the API builds it."""
    return GeoQuery(georel, geometry, validate_geometry(geometry))  # type: ignore[arg-type]


async def test_geo_queries_points_and_polygons(store: Store) -> None:
    # lights every ~73 m eastward from the square's centre
    lights = [light(n, LON + n * 0.001, LAT) for n in range(6)]
    zone = make(
        {
            "id": "urn:ngsi-ld:Zone:square",
            "type": "Zone",
            "location": SQUARE,
            "population": 1200,
        }
    )
    unlocated = make({"id": "urn:ngsi-ld:Zone:nowhere", "type": "Zone"})
    await store.create_entities([*lights, zone, unlocated], NOW)

    assert await query(store, geo=near(LON, LAT, 100), types=("Streetlight",)) == [lid(0), lid(1)]
    assert await query(store, geo=near(LON, LAT, 160), limit=100) == [
        lid(0),
        lid(1),
        lid(2),
        "urn:ngsi-ld:Zone:square",
    ]
    # a point 100 m east of the square's edge is near it, though far from its centre
    east = LON + 0.001 + 100 / 73_300
    assert await query(store, geo=near(east, LAT, 120), types=("Zone",)) == [
        "urn:ngsi-ld:Zone:square"
    ]
    assert await query(store, geo=near(east + 0.003, LAT, 120), types=("Zone",)) == []

    # within: the square holds light 0 and light 1 (on its edge); a big box holds all
    assert await query(store, geo=shape_query("within", SQUARE), limit=100) == [
        lid(0),
        lid(1),
        "urn:ngsi-ld:Zone:square",
    ]
    within_half = await query(store, geo=shape_query("within", EAST_HALF), limit=100)
    assert within_half == ids(lights)  # the square straddles the half's edge
    intersecting = await query(
        store, geo=shape_query("intersects", EAST_HALF), limit=100, count=True
    )
    assert intersecting == [*ids(lights), "urn:ngsi-ld:Zone:square"]
    page, total = await store.query_entities(
        EntityQuery(geo=shape_query("intersects", EAST_HALF), limit=2, offset=2, count=True)
    )
    assert (ids(page), total) == ([lid(2), lid(3)], 7)
    far = {"type": "Point", "coordinates": [LON + 1, LAT + 1]}
    assert await query(store, geo=shape_query("intersects", far)) == []
    # a point query geometry inside the square intersects the zone only
    inside = {"type": "Point", "coordinates": [LON - 0.0005, LAT + 0.0005]}
    assert await query(store, geo=shape_query("intersects", inside)) == ["urn:ngsi-ld:Zone:square"]


def georel(rel: str, geometry: dict[str, Any]) -> GeoQuery:
    """A geo-query parsed from its parameters as the API receives them."""
    query = parse_geo(rel, geometry["type"], orjson.dumps(geometry["coordinates"]).decode(), None)
    assert query is not None
    return query


async def test_every_georel_and_the_near_distances(store: Store) -> None:
    # lights 0, 73, 146, 219, 292 and 366 m east of the square's centre
    lights = [light(n, LON + n * 0.001, LAT) for n in range(6)]
    zone = make({"id": "urn:ngsi-ld:Zone:square", "type": "Zone", "location": SQUARE})
    unlocated = make({"id": "urn:ngsi-ld:Zone:nowhere", "type": "Zone"})
    await store.create_entities([*lights, zone, unlocated], NOW)
    centre = {"type": "Point", "coordinates": [LON, LAT]}
    at_light_3 = {"type": "Point", "coordinates": [LON + 0.003, LAT]}

    def found(rel: str, geometry: dict[str, Any]) -> Any:
        return query(store, geo=georel(rel, geometry), limit=100)

    # contains: the location holds the query geometry (the square holds its centre)
    assert await found("contains", centre) == [lid(0), "urn:ngsi-ld:Zone:square"]
    assert await found("contains", at_light_3) == [lid(3)]
    assert await found("contains", EAST_HALF) == []
    assert await found("equals", at_light_3) == [lid(3)]
    assert await found("equals", SQUARE) == ["urn:ngsi-ld:Zone:square"]
    # disjoint: everything located that does not touch the square (the unlocated zone
    # has no location to compare)
    assert await found("disjoint", SQUARE) == [lid(2), lid(3), lid(4), lid(5)]
    # overlaps: shapes of one dimension that share part, neither holding the other
    assert await found("overlaps", EAST_HALF) == ["urn:ngsi-ld:Zone:square"]
    # near with a minimum distance, and with both bounds
    assert await found("near;minDistance==180", centre) == [lid(3), lid(4), lid(5)]
    assert await found("near;minDistance==100;maxDistance==250", centre) == [lid(2), lid(3)]


# -- readings -----------------------------------------------------------------


async def test_newest_wins_and_late_readings_go_to_history_only(store: Store) -> None:
    await store.create_entities([light(1), light(2)], NOW)
    first = observe(lid(1), T0 + 60, powerConsumption=100, status="ok")
    assert await store.apply_readings(first, NOW) == first

    late = observe(lid(1), T0 + 30, powerConsumption=5, status="defectiveLamp")
    newer = observe(lid(2), T0 + 30, powerConsumption=7)
    assert await store.apply_readings(late + newer, NOW) == newer
    got = await store.get_entity(lid(1))
    assert got.attrs["powerConsumption"].value == 100
    assert got.attrs["status"].value == "ok"
    assert got.modified_at == NOW  # newest of created/modified and observedAt

    # in one batch, only the newest reading per attribute becomes state
    batch = (
        observe(lid(1), T0 + 200, powerConsumption=1)
        + observe(lid(1), T0 + 300, powerConsumption=3)
        + observe(lid(1), T0 + 100, powerConsumption=2)
    )
    assert await store.apply_readings(batch, NOW) == [batch[1]]
    assert (await store.get_entity(lid(1))).attrs["powerConsumption"].value == 3
    # an equal observedAt overwrites (later wins ties), in state and in history
    tie = observe(lid(1), T0 + 300, powerConsumption=4)
    assert await store.apply_readings(tie, NOW) == tie

    series = await store.history(HistoryQuery(lid(1), attrs=("powerConsumption",)))
    assert series["powerConsumption"] == [
        (T0 + 30, 5),
        (T0 + 60, 100),
        (T0 + 100, 2),
        (T0 + 200, 1),
        (T0 + 300, 4),
    ]
    # readings of unknown entities are dropped
    assert await store.apply_readings(observe(lid(9), T0, powerConsumption=1), NOW) == []
    assert await store.history(HistoryQuery(lid(9))) == {}


async def test_api_written_values_are_overwritten_by_any_reading(store: Store) -> None:
    await store.create_entities([light(1, status="ok", powerConsumption=50)], NOW)
    assert (await store.get_entity(lid(1))).attrs["status"].observed_at is None
    # a reading older than the API write still replaces it: the API gave no time
    old = observe(lid(1), T0 - 86_400 * 30, status="defectiveLamp")
    assert await store.apply_readings(old, NOW) == old
    got = await store.get_entity(lid(1))
    assert (got.attrs["status"].value, got.attrs["status"].observed_at) == (
        "defectiveLamp",
        old[0].observed_at,
    )
    # and an API write without time replaces a reading, whatever its time
    result = await store.write_attributes(
        lid(1), fragment("Streetlight", {"status": "ok"}), NOW + 1, "append"
    )
    assert result.updated == ["status"]
    assert (await store.get_entity(lid(1))).attrs["status"].observed_at is None
    series = await store.history(HistoryQuery(lid(1), attrs=("status",)))
    expected = [(old[0].observed_at, "defectiveLamp"), (NOW, "ok"), (NOW + 1, "ok")]
    assert series["status"] == expected


async def test_a_resent_batch_does_not_duplicate_history(store: Store) -> None:
    await store.create_entities([light(1), light(2)], NOW)
    batch = [
        *observe(lid(1), T0, powerConsumption=10, status="ok"),
        *observe(lid(2), T0, powerConsumption=20),
        *observe(lid(1), T0 + 60, powerConsumption=11),
    ]
    await store.apply_readings(batch, NOW)
    await store.apply_readings(batch, NOW + 5)  # a gateway retrying after a time-out
    # the same instant twice in one batch: one row, the last value
    again = observe(lid(2), T0, powerConsumption=21) + observe(lid(2), T0, powerConsumption=22)
    await store.apply_readings(again, NOW)
    one = await store.history(HistoryQuery(lid(1), attrs=("powerConsumption", "status")))
    assert one == {"powerConsumption": [(T0, 10), (T0 + 60, 11)], "status": [(T0, "ok")]}
    two = await store.history(HistoryQuery(lid(2), attrs=("powerConsumption",)))
    assert two == {"powerConsumption": [(T0, 22)]}
    assert (await store.get_entity(lid(2))).attrs["powerConsumption"].value == 22


async def test_write_attributes_modes(store: Store) -> None:
    await store.create_entities([light(1, status="ok")], NOW)
    later = NOW + 10

    def attrs(doc: dict[str, Any]) -> dict[str, Attribute]:
        return fragment("Streetlight", doc)

    result = await store.write_attributes(
        lid(1), attrs({"status": "defectiveLamp", "powerState": "on"}), later, "append"
    )
    assert (sorted(result.updated), result.not_updated) == (["powerState", "status"], {})

    result = await store.write_attributes(
        lid(1), attrs({"status": "ok", "lanternHeight": 9}), later, "noOverwrite"
    )
    assert result.updated == ["lanternHeight"]
    assert set(result.not_updated) == {"status"}

    result = await store.write_attributes(
        lid(1), attrs({"status": "ok", "lampTechnology": "LED"}), later, "update"
    )
    assert result.updated == ["status"]
    assert set(result.not_updated) == {"lampTechnology"}

    got = await store.get_entity(lid(1))
    assert {n: a.value for n, a in got.attrs.items() if n != "location"} == {
        "status": "ok",
        "powerState": "on",
        "lanternHeight": 9,
    }
    assert got.modified_at == later

    # a value observed before the state's observation is refused, with a reason
    await store.apply_readings(observe(lid(1), T0 + 100, powerConsumption=10), NOW)
    stale = attrs({"powerConsumption": {"type": "Property", "value": 1, "observedAt": iso(T0)}})
    result = await store.write_attributes(lid(1), stale, later, "append")
    assert result.updated == [] and set(result.not_updated) == {"powerConsumption"}
    assert (await store.get_entity(lid(1))).attrs["powerConsumption"].value == 10

    assert await store.write_attributes(lid(9), attrs({"status": "ok"}), later, "append") is None


async def test_delete_attribute(store: Store) -> None:
    await store.create_entities([light(1, status="ok")], NOW)
    assert await store.delete_attribute(lid(1), "status", NOW + 1) is True
    assert await store.delete_attribute(lid(1), "status", NOW + 2) is False
    assert await store.delete_attribute(lid(9), "status", NOW + 2) is None
    got = await store.get_entity(lid(1))
    assert "status" not in got.attrs
    assert (await store.history(HistoryQuery(lid(1), attrs=("status",))))["status"] == [(NOW, "ok")]

    # without its location, the entity leaves geo queries and loses its point
    assert await query(store, geo=near(LON, LAT, 50)) == [lid(1)]
    assert await store.delete_attribute(lid(1), "location", NOW + 3) is True
    assert await query(store, geo=near(LON, LAT, 50)) == []
    assert (await store.lookup([lid(1)]))[lid(1)] == ("Streetlight", None, None)


async def test_delete_entity_keeps_history(store: Store) -> None:
    await store.create_entities([light(1), light(2)], NOW)
    await store.apply_readings(observe(lid(1), T0, powerConsumption=12, status="ok"), NOW)
    assert await store.delete_entities([lid(1), lid(9), lid(1)]) == [lid(1)]
    assert await store.get_entity(lid(1)) is None
    assert await store.lookup([lid(1)]) == {}
    assert await query(store, limit=100) == [lid(2)]
    assert await query(store, geo=near(LON, LAT, 10)) == [lid(2)]
    assert await store.apply_readings(observe(lid(1), T0 + 5, powerConsumption=13), NOW) == []
    assert (
        await store.write_attributes(
            lid(1), fragment("Streetlight", {"status": "ok"}), NOW, "append"
        )
        is None
    )
    assert await store.delete_attribute(lid(1), "status", NOW) is None

    history = await store.history(HistoryQuery(lid(1)))
    assert history["powerConsumption"] == [(T0, 12)]
    assert history["status"] == [(T0, "ok")]
    assert set(history) == {"location", "powerConsumption", "status"}

    # the id can be taken again, with a fresh state and its history continued
    assert await store.create_entities([light(1, LON + 1, LAT)], NOW + 10) == []
    got = await store.get_entity(lid(1))
    assert set(got.attrs) == {"location"} and got.created_at == NOW + 10
    assert (await store.lookup([lid(1)]))[lid(1)] == ("Streetlight", LON + 1, LAT)
    assert len((await store.history(HistoryQuery(lid(1))))["location"]) == 2


async def test_temporal_instances_and_aggregates_are_computed_alike(store: Store) -> None:
    await store.create_entities([light(1), light(2)], NOW)
    readings: list[Reading] = []
    for offset, watts in ((0, 10), (600, 20), (1200, 20), (3600, 40)):
        readings += observe(lid(1), T0 + offset, powerConsumption=watts)
    readings += observe(lid(2), T0 + 60, powerConsumption=5, status="ok")
    await store.apply_readings(readings, NOW)
    ids = (lid(1), lid(2), lid(9))
    watts = ("powerConsumption",)

    # the first `limit` instances and one more (the caller sees there are more), per attribute
    first = await store.temporal(TemporalQuery(ids, watts, limit=2))
    assert first == {
        lid(1): {"powerConsumption": {"": [(T0, 10), (T0 + 600, 20), (T0 + 1200, 20)]}},
        lid(2): {"powerConsumption": {"": [(T0 + 60, 5)]}},
    }
    last = await store.temporal(TemporalQuery(ids, watts, start=T0 + 1, last_n=2))
    assert last[lid(1)] == {"powerConsumption": {"": [(T0 + 1200, 20), (T0 + 3600, 40)]}}
    assert set((await store.temporal(TemporalQuery((lid(2),))))[lid(2)]) == {
        "location",
        "powerConsumption",
        "status",
    }

    methods = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
    hourly = await store.temporal(
        TemporalQuery(ids, watts, methods=methods, period_s=3600.0, origin=T0)  # type: ignore[arg-type]
    )
    [one, two] = hourly[lid(1)]["powerConsumption"][""]
    assert (one.index, one.first, one.last) == (0, None, None)  # bounds follow from index
    assert one.values[:6] == (3, 2, 50.0, 50.0 / 3, 10.0, 20.0)
    assert one.values[6] == pytest.approx(
        (((10 - 50 / 3) ** 2 + 2 * (20 - 50 / 3) ** 2) / 2) ** 0.5
    )
    assert one.values[7] == 900.0
    assert (two.index, two.values[0], two.values[6]) == (1, 1, None)  # one value: no stddev
    whole = await store.temporal(TemporalQuery((lid(2),), ("status",), methods=("totalCount",)))
    assert whole[lid(2)]["status"] == {"": [TemporalBucket(0, T0 + 60, T0 + 60, (1,))]}


async def test_the_notification_outbox_is_claimed_settled_and_kept(
    store_factory: Callable[[], Store],
) -> None:
    store = store_factory()
    await store.open()
    sub = {"id": "urn:ngsi-ld:Subscription:outbox", "type": "Subscription", "n": 0}
    assert await store.put_subscription(sub["id"], sub, create=True)
    assert not await store.put_subscription(sub["id"], sub, create=True)  # taken
    a, b = await store.add_notifications([(sub["id"], '{"a":1}'), (sub["id"], '{"b":2}')], T0)
    assert (a.body, b.body, a.attempts) == ('{"a":1}', '{"b":2}', 0) and a.id != b.id
    assert await store.due_notifications(T0 - 1, 10, T0 + 60) == []  # not due yet
    assert await store.due_notifications(T0, 10, T0 + 60) == [a, b]
    assert await store.due_notifications(T0 + 1, 10, T0 + 60) == []  # claimed until T0 + 60
    await store.settle_notifications([a.id], [(b.id, T0 + 5)], [{**sub, "n": 1}])
    await store.close()

    again = store_factory()  # what a restarted process finds
    await again.open()
    assert await again.get_subscription(sub["id"]) == {**sub, "n": 1}
    assert await again.due_notifications(T0 + 4, 10, T0 + 60) == []
    [retry] = await again.due_notifications(T0 + 5, 10, T0 + 60)
    assert (retry.id, retry.body, retry.attempts) == (b.id, '{"b":2}', 1)
    assert await again.delete_subscription(sub["id"])
    assert await again.list_subscriptions() == []
    assert await again.due_notifications(T0 + 100, 10, T0 + 160) == []  # went with it
    assert not await again.delete_subscription(sub["id"])
    await again.close()


async def test_history_raw_and_bucketed(store: Store) -> None:
    await store.create_entities([light(1)], NOW)
    readings: list[Reading] = []
    for offset, watts in ((0, 10), (600, 20), (1200, 30), (1800, 40), (2400, 50), (3600, 60.5)):
        readings += observe(lid(1), T0 + offset, powerConsumption=watts)
    readings += observe(lid(1), T0 + 60, status="ok") + observe(
        lid(1), T0 + 4000, status="defectiveLamp"
    )
    await store.apply_readings(readings, NOW)

    raw = await store.history(HistoryQuery(lid(1), attrs=("powerConsumption", "status")))
    assert [v for _, v in raw["powerConsumption"]] == [10, 20, 30, 40, 50, 60.5]
    assert raw["status"] == [(T0 + 60, "ok"), (T0 + 4000, "defectiveLamp")]
    everything = await store.history(HistoryQuery(lid(1)))
    assert set(everything) == {"location", "powerConsumption", "status"}
    assert everything["location"] == [(NOW, {"type": "Point", "coordinates": [LON, LAT]})]

    # from is inclusive, to exclusive; limit cuts each series
    window = HistoryQuery(lid(1), attrs=("powerConsumption",), start=T0 + 600, end=T0 + 2400)
    assert (await store.history(window))["powerConsumption"] == [
        (T0 + 600, 20),
        (T0 + 1200, 30),
        (T0 + 1800, 40),
    ]
    limited = HistoryQuery(lid(1), attrs=("powerConsumption",), start=T0 + 600, limit=2)
    assert [t for t, _ in (await store.history(limited))["powerConsumption"]] == [
        T0 + 600,
        T0 + 1200,
    ]
    assert (await store.history(HistoryQuery(lid(1), attrs=("nothing",)))) == {"nothing": []}

    hour = 3600.0
    start = T0 - T0 % hour
    expected = {  # T0 is on the hour: 10..50 fall in the first hour, 60.5 in the second
        "avg": [(start, 30.0), (start + hour, 60.5)],
        "min": [(start, 10.0), (start + hour, 60.5)],
        "max": [(start, 50.0), (start + hour, 60.5)],
        "sum": [(start, 150.0), (start + hour, 60.5)],
        "count": [(start, 5), (start + hour, 1)],
    }
    for agg, series in expected.items():
        bucketed = HistoryQuery(lid(1), attrs=("powerConsumption",), bucket_s=3600, agg=agg)  # type: ignore[arg-type]
        assert (await store.history(bucketed))["powerConsumption"] == series, agg
    counted = HistoryQuery(lid(1), attrs=("status",), bucket_s=3600, agg="count")
    assert (await store.history(counted))["status"] == [(start, 1), (start + hour, 1)]
    bounded = HistoryQuery(
        lid(1),
        attrs=("powerConsumption",),
        start=T0 + 1200,
        end=T0 + 3600,
        bucket_s=3600,
        agg="sum",
    )
    assert (await store.history(bounded))["powerConsumption"] == [(start, 120.0)]


async def test_buckets_start_at_their_floor_before_1970(store: Store) -> None:
    await store.create_entities([light(1)], NOW)
    before = parse_instant("1969-12-31T23:30:00Z", "t")  # -1800 s
    await store.apply_readings(observe(lid(1), before, powerConsumption=7), NOW)
    bucketed = HistoryQuery(lid(1), attrs=("powerConsumption",), bucket_s=3600, agg="max")
    assert (await store.history(bucketed))["powerConsumption"] == [(-3600.0, 7.0)]


async def test_location_readings_move_the_entity(store: Store) -> None:
    bus = make(
        {
            "id": "urn:ngsi-ld:Bus:b1",
            "type": "Bus",
            "location": {"type": "Point", "coordinates": [LON, LAT]},
        }
    )
    await store.create_entities([bus], NOW)
    there = {"type": "Point", "coordinates": [LON + 0.05, LAT + 0.01]}
    moved = observe(bus.id, T0 + 10, location=there, speed=30.5)
    assert await store.apply_readings(moved, NOW) == moved
    assert (await store.lookup([bus.id]))[bus.id] == ("Bus", LON + 0.05, LAT + 0.01)
    assert await query(store, geo=near(LON, LAT, 200)) == []
    assert await query(store, geo=near(LON + 0.05, LAT + 0.01, 200)) == [bus.id]

    # a late position does not move it back
    back = {"type": "Point", "coordinates": [LON, LAT]}
    assert await store.apply_readings(observe(bus.id, T0, location=back), NOW) == []
    assert await query(store, geo=near(LON + 0.05, LAT + 0.01, 200)) == [bus.id]
    assert (await store.get_entity(bus.id)).attrs["location"].value == there


async def test_upsert_replace_and_merge(store: Store) -> None:
    await store.create_entities([light(1, status="ok", lanternHeight=8)], NOW)
    later = NOW + 60

    await store.upsert_entities(
        [make({"id": lid(1), "type": "Streetlight", "powerState": "on"}), light(2)],
        later,
        replace=False,
    )
    got = await store.get_entity(lid(1))
    assert set(got.attrs) == {"location", "status", "lanternHeight", "powerState"}
    assert (got.created_at, got.modified_at) == (NOW, later)
    assert await store.get_entity(lid(2)) is not None
    assert (await store.lookup([lid(1)]))[lid(1)] == ("Streetlight", LON, LAT)

    await store.upsert_entities(
        [make({"id": lid(1), "type": "Streetlight", "status": "defectiveLamp"})],
        later + 1,
        replace=True,
    )
    got = await store.get_entity(lid(1))
    assert {n: a.value for n, a in got.attrs.items()} == {"status": "defectiveLamp"}
    assert (await store.lookup([lid(1)]))[lid(1)] == ("Streetlight", None, None)
    assert await query(store, geo=near(LON, LAT, 10)) == [lid(2)]

    # the same id twice in a batch: written in order
    twice = [light(3, status="ok"), make({"id": lid(3), "type": "Streetlight", "lanternHeight": 4})]
    await store.upsert_entities(twice, later, replace=False)
    assert set((await store.get_entity(lid(3))).attrs) == {"location", "status", "lanternHeight"}
    await store.upsert_entities(twice, later + 1, replace=True)
    assert set((await store.get_entity(lid(3))).attrs) == {"lanternHeight"}


# -- dead letters, accounts, types --------------------------------------------


async def test_dead_letters_newest_first(store: Store) -> None:
    assert await store.list_dead_letters(10, 0) == ([], 0)
    await store.add_dead_letters(
        [
            DeadLetter(NOW, "http", "bad type", "[0].type", '{"type": 1}'),
            DeadLetter(NOW, "http", "bad id", None, "not json"),
        ]
    )
    await store.add_dead_letters([DeadLetter(NOW + 1, "mqtt", "too far", "[0].observedAt", "{}")])
    letters, total = await store.list_dead_letters(2, 0)
    assert total == 3
    assert [(d.source, d.reason, d.field) for d in letters] == [
        ("mqtt", "too far", "[0].observedAt"),
        ("http", "bad id", None),
    ]
    assert letters[0].id is not None and letters[0].received_at == NOW + 1
    rest, _ = await store.list_dead_letters(2, 2)
    assert [(d.reason, d.payload) for d in rest] == [("bad type", '{"type": 1}')]


async def test_accounts_and_device_keys(store: Store) -> None:
    assert await store.get_account("ana") is None
    await store.put_account(Account("ana", "hash-1", "operator"))
    grants = (Grant("admin", municipality="urn:ngsi-ld:Municipality:m1"), Grant("viewer"))
    await store.put_account(Account("ana", "hash-2", "admin", disabled=True, grants=grants))
    assert await store.get_account("ana") == Account("ana", "hash-2", "admin", True, grants)

    assert [a.username for a in await store.list_accounts()] == ["ana"]

    bound = DeviceBinding(
        ("urn:ngsi-ld:Streetlight:1",), "Streetlight", "urn:ngsi-ld:Municipality:m1"
    )
    await store.put_device_key("gateway-1", "k1", bound)
    await store.put_device_key("gateway-2", "k2")
    assert await store.get_device("k1") == Device("gateway-1", bound)
    await store.put_device_key("gateway-1", "k3", bound)  # a new key replaces the old one
    assert await store.get_device("k1") is None
    assert await store.get_device("k3") == Device("gateway-1", bound)
    assert await store.get_device("k2") == Device("gateway-2", DeviceBinding())
    assert sorted(d.name for d in await store.list_devices()) == ["gateway-1", "gateway-2"]
    assert await store.delete_device("gateway-2") and not await store.delete_device("gateway-2")
    assert await store.get_device("k2") is None


async def test_login_sessions_rotate_once_and_revoke_once(store: Store) -> None:
    await store.put_session(Session("s1", "ana", "t1", NOW, NOW + 3600))
    assert await store.get_session("s1") == Session("s1", "ana", "t1", NOW, NOW + 3600)
    assert await store.rotate_session("s1", "t1", "t2")
    assert not await store.rotate_session("s1", "t1", "t3")  # t1 is spent: no second winner
    assert (await store.get_session("s1")).token_id == "t2"  # type: ignore[union-attr]
    assert await store.revoke_session("s1", "logout", NOW + 5)
    assert not await store.revoke_session("s1", "reuse", NOW + 6)  # the first reason stays
    ended = await store.get_session("s1")
    assert ended == Session("s1", "ana", "t2", NOW, NOW + 3600, NOW + 5, "logout")
    assert not await store.rotate_session("s1", "t2", "t4")  # a revoked session never rotates
    # a new session clears those that had expired before it began
    await store.put_session(Session("s2", "bob", "u1", NOW + 7200, NOW + 9000))
    assert await store.get_session("s1") is None and await store.get_session("nope") is None


async def test_types_registered_at_run_time(store: Store) -> None:
    assert await store.list_types() == []
    kiosk = {"name": "Kiosk", "version": 1, "attributes": {"status": {"value": "string"}}}
    await store.put_type("Kiosk", kiosk, {"version": 1, "type": kiosk})
    bench = {"name": "Bench", "version": 1, "attributes": {}}
    await store.put_type("Bench", bench, {"version": 1, "type": bench})
    changed = {**kiosk, "version": 2, "description": "A newsstand"}
    await store.put_type("Kiosk", changed, {"version": 2, "type": changed, "forced": True})
    assert await store.list_types() == [bench, changed]
    history = [{"version": 1, "type": kiosk}, {"version": 2, "type": changed, "forced": True}]
    assert await store.type_versions("Kiosk") == history
    await store.delete_type("Kiosk")
    assert await store.list_types() == [bench]
    assert await store.type_versions("Kiosk") == history  # the history outlives the type
    assert await store.type_versions("Tram") == []


# -- PostgreSQL only: several processes on one database, partitions ----------------


@pytest.fixture
async def two_stores(postgres_db: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two PostgreSQL stores on one database, as two processes would have."""
    a, b = PostgresStore(postgres_db), PostgresStore(postgres_db)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def test_postgres_stores_share_one_database(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    await b.create_entities([light(1)], NOW)
    # a cache miss asks the database
    assert (await a.lookup([lid(1)]))[lid(1)] == ("Streetlight", LON, LAT)
    assert await a.create_entities([light(1)], NOW) == [lid(1)]
    reading = observe(lid(1), T0, powerConsumption=3)
    assert await a.apply_readings(reading, NOW) == reading
    # deleted elsewhere: writes skip the vanished rows instead of failing
    assert await b.delete_entities([lid(1)]) == [lid(1)]
    assert await a.apply_readings(observe(lid(1), T0 + 1, powerConsumption=4), NOW) == []
    assert await b.get_entity(lid(1)) is None  # no state brought back to life
    series = await a.history(HistoryQuery(lid(1), attrs=("powerConsumption",)))
    assert series["powerConsumption"][0] == (T0, 3)
    # the entity can be created again from either process
    assert await a.upsert_entities([light(1, status="ok")], NOW + 5, replace=False) is None
    assert set((await b.get_entity(lid(1))).attrs) == {"location", "status"}
    assert (await b.lookup([lid(1)]))[lid(1)] == ("Streetlight", LON, LAT)


async def test_postgres_concurrent_writers_keep_the_newest(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    await a.create_entities([light(n) for n in range(40)], NOW)

    def batch(step: int) -> list[Reading]:
        # every batch touches every light, in a shuffled order, at its own instant
        order = sorted(range(40), key=lambda n: (n * (step + 3)) % 41)
        return [r for n in order for r in observe(lid(n), T0 + step, powerConsumption=step)]

    steps = list(range(12))
    await asyncio.gather(
        *(store.apply_readings(batch(step), NOW) for step in steps for store in [(a, b)[step % 2]])
    )
    for n in (0, 17, 39):
        assert (await b.get_entity(lid(n))).attrs["powerConsumption"].value == max(steps)
        series = await a.history(HistoryQuery(lid(n), attrs=("powerConsumption",)))
        assert [v for _, v in series["powerConsumption"]] == steps


async def test_postgres_history_is_partitioned_by_month(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two_stores
    await a.create_entities([light(1)], NOW)
    old = parse_instant("2021-03-15T12:00:00Z", "t")
    ancient = parse_instant("1969-07-20T20:17:00Z", "t")  # no partition: the default one
    odd = parse_instant("2019-01-10T00:00:00Z", "t")
    async with await psycopg.AsyncConnection.connect(a.dsn, autocommit=True) as conn:
        # a row already in the default partition stops that month's partition being
        # created; its readings go to the default partition too, none is refused
        eid = (await (await conn.execute("SELECT eid FROM entity_keys")).fetchone())[0]
        await conn.execute(
            "INSERT INTO history_default (eid, name, observed_at, num) VALUES (%s, 'x', %s, 0)",
            (eid, odd - 3600),
        )
        readings = [
            *observe(lid(1), T0, powerConsumption=1),
            *observe(lid(1), old, powerConsumption=2),
            *observe(lid(1), ancient, powerConsumption=3),
            *observe(lid(1), odd, powerConsumption=4),
        ]
        assert len(await a.apply_readings(readings, NOW)) == 1
        cur = await conn.execute(
            "SELECT tableoid::regclass::text, num FROM history WHERE name = 'powerConsumption'"
            " ORDER BY observed_at"
        )
        assert await cur.fetchall() == [
            ("history_default", 3.0),
            ("history_default", 4.0),
            ("history_p202103", 2.0),
            ("history_p202405", 1.0),
        ]
    # the other process reads across partitions
    series = await b.history(HistoryQuery(lid(1), attrs=("powerConsumption",), start=old))
    assert series["powerConsumption"] == [(old, 2), (T0, 1)]
    series = await b.history(HistoryQuery(lid(1), attrs=("powerConsumption",), end=old))
    assert series["powerConsumption"] == [(ancient, 3), (odd, 4)]


async def test_postgres_refuses_a_pattern_it_cannot_read(postgres_db: str) -> None:
    store = PostgresStore(postgres_db)
    await store.open()
    try:
        await store.create_entities([light(1)], NOW)
        with pytest.raises(BadRequestData) as refused:
            await store.query_entities(EntityQuery(id_pattern="(?P<n>Street)light"))
        assert refused.value.field == "idPattern"
        assert await query(store, id_pattern="(?:Street)light") == [lid(1)]
    finally:
        await store.close()


async def test_scan_columns_gives_a_layer_with_json_values(store: Store) -> None:
    await store.create_entities([light(1), light(2)], NOW)
    await store.apply_readings(observe(lid(2), T0, powerConsumption=40.5, powerState="on"), NOW)
    layer = await store.scan_columns("Streetlight", ["powerState", "powerConsumption"])
    assert layer.ids == [lid(1), lid(2)]
    assert layer.lon[0] is not None and layer.lat[0] is not None
    assert layer.values["powerConsumption"] == [None, "40.5"]
    assert layer.values["powerState"][1] == '"on"'
    empty = await store.scan_columns("Bus", ["speed"])
    assert empty.ids == [] and empty.values == {"speed": []}
