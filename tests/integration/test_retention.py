"""History retention on PostgreSQL: raw readings past a type's retention become hourly rows."""

from __future__ import annotations

import time

import psycopg
import pytest

from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.entity import parse_entity
from citypilot.model.observation import Reading
from citypilot.model.types import TypeRegistry
from citypilot.store.postgres import PostgresStore
from citypilot.store.retention import apply_retention

pytestmark = pytest.mark.postgres
NOW = time.time()
DAY = 86400.0


def _reading(eid: str, name: str, value: float, at: float) -> Reading:
    return Reading(eid, name, "Property", str(value), value, at, None, value)


async def _seed(dsn: str) -> None:
    registry = TypeRegistry(BUILTIN_TYPES)
    store = PostgresStore(dsn)
    await store.open()
    docs = [
        {"id": "urn:ngsi-ld:AirQualityObserved:a1", "type": "AirQualityObserved"},
        {"id": "urn:ngsi-ld:Streetlight:l1", "type": "Streetlight"},
    ]
    await store.upsert_entities([parse_entity(d, registry) for d in docs], NOW, True)
    old_hour = (NOW - 40 * DAY) // 3600 * 3600
    readings = [
        _reading("urn:ngsi-ld:AirQualityObserved:a1", "no2", v, old_hour + 60 * i)
        for i, v in enumerate([10.0, 20.0, 60.0])
    ]
    readings.append(_reading("urn:ngsi-ld:AirQualityObserved:a1", "no2", 5.0, NOW - DAY))
    readings.append(_reading("urn:ngsi-ld:Streetlight:l1", "powerConsumption", 7.0, old_hour))
    await store.apply_readings(readings, NOW)
    await store.close()


def _raw(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT name, num FROM history ORDER BY observed_at, name").fetchall()


async def test_dry_run_then_fold_raw_history_into_hours(postgres_db: str) -> None:
    await _seed(postgres_db)
    policy = {"AirQualityObserved": 30}
    dry = apply_retention(postgres_db, policy, dry_run=True, now=NOW)
    assert [(o.type, o.raw_rows, o.hourly_rows) for o in dry] == [("AirQualityObserved", 3, 1)]
    assert len(_raw(postgres_db)) == 5, "a dry run changes nothing"

    done = apply_retention(postgres_db, policy, now=NOW)
    assert [(o.type, o.raw_rows) for o in done] == [("AirQualityObserved", 3)]
    # the recent reading and the type without a policy keep their raw rows
    assert sorted(_raw(postgres_db)) == [("no2", 5.0), ("powerConsumption", 7.0)]
    with psycopg.connect(postgres_db) as conn:
        hourly = conn.execute(
            "SELECT name, n, sum / n, min, max, last_value FROM history_hourly"
        ).fetchall()
    assert hourly == [("no2", 3, 30.0, 10.0, 60.0, "60")]

    again = apply_retention(postgres_db, policy, now=NOW)
    assert [o.raw_rows for o in again] == [0], "a second run finds nothing more"
    everything = apply_retention(postgres_db, {"*": 30}, now=NOW)
    assert {o.type: o.raw_rows for o in everything} == {"AirQualityObserved": 0, "Streetlight": 1}


async def test_each_datasets_readings_fold_into_hours_of_their_own(postgres_db: str) -> None:
    await _seed(postgres_db)
    with psycopg.connect(postgres_db, autocommit=True) as conn:  # as kept before datasets
        conn.execute("DROP TABLE IF EXISTS history_hourly")
        conn.execute(
            "CREATE TABLE history_hourly (eid bigint NOT NULL, name text NOT NULL,"
            " hour double precision NOT NULL, n bigint NOT NULL, sum double precision,"
            " min double precision, max double precision, last_at double precision NOT NULL,"
            " last_value text, PRIMARY KEY (eid, name, hour))"
        )
        conn.execute("INSERT INTO history_hourly VALUES (1, 'no2', 0, 2, 8, 3, 5, 1800, '5')")
    store = PostgresStore(postgres_db)
    await store.open()
    old_hour = (NOW - 40 * DAY) // 3600 * 3600
    sensor = "urn:ngsi-ld:Dataset:sensor-b"
    second = _reading("urn:ngsi-ld:AirQualityObserved:a1", "no2", 90.0, old_hour)
    await store.apply_readings(
        [second._replace(instances=((sensor, old_hour, 90.0, "90.0"),))], NOW
    )
    await store.close()
    done = apply_retention(postgres_db, {"AirQualityObserved": 30}, now=NOW)
    assert [(o.raw_rows, o.hourly_rows) for o in done] == [(4, 2)]
    with psycopg.connect(postgres_db) as conn:
        hourly = conn.execute(
            "SELECT hour = 0, dataset, n, max FROM history_hourly ORDER BY hour, dataset"
        ).fetchall()
    assert hourly == [(True, "", 2, 5.0), (False, "", 3, 60.0), (False, sensor, 1, 90.0)]
