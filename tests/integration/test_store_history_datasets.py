"""History per dataset in both stores: a store made before history had a dataset keeps
every row as the default instance, and its key gains the dataset."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg

from citypilot.store.base import HistoryQuery, Store, TemporalQuery
from citypilot.store.postgres import PostgresStore
from citypilot.store.sqlite import SQLiteStore
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import NOW, T0, lid, light, observe

#: The store contract's fixtures: every test here runs on SQLite and on PostgreSQL.
store = contract.store

METER = "urn:ngsi-ld:Dataset:meter"
WATTS = ("powerConsumption",)


async def test_a_store_made_before_datasets_keeps_its_history_as_the_default_instance(
    store_factory: Callable[[], Store],
) -> None:
    first = store_factory()
    await first.open()
    await first.create_entities([light(1)], NOW)
    await first.apply_readings(
        observe(lid(1), T0, powerConsumption=10) + observe(lid(1), T0 + 60, powerConsumption=20),
        NOW,
    )
    await first.close()
    _history_without_datasets(first)
    again = store_factory()
    await again.open()
    try:
        found = await again.temporal(TemporalQuery((lid(1),), WATTS))
        assert found[lid(1)]["powerConsumption"] == {"": [(T0, 10), (T0 + 60, 20)]}
        # the key has the dataset: a meter's instance at the same instant is one more row
        meter = observe(lid(1), T0, powerConsumption=11)[0]
        await again.apply_readings([meter._replace(instances=((METER, T0, 11.0, "11"),))], NOW)
        # and a device reading sent again still replaces its own row
        await again.apply_readings(observe(lid(1), T0, powerConsumption=10), NOW)
        found = await again.temporal(TemporalQuery((lid(1),), WATTS))
        assert found[lid(1)]["powerConsumption"] == {
            "": [(T0, 10), (T0 + 60, 20)],
            METER: [(T0, 11)],
        }
        # the history API keeps to the default instance
        series = await again.history(HistoryQuery(lid(1), WATTS))
        assert series == {"powerConsumption": [(T0, 10), (T0 + 60, 20)]}
        assert await again.delete_history(lid(1), "powerConsumption", dataset=METER) == 1
    finally:
        await again.close()


def _history_without_datasets(store: Store) -> None:
    """Put the history table back as it was before it had a dataset."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            conn.executescript(
                """
                CREATE TABLE old_history (
                    eid INTEGER NOT NULL, name TEXT NOT NULL, observed_at REAL NOT NULL,
                    num REAL, value TEXT,
                    PRIMARY KEY (eid, name, observed_at)) WITHOUT ROWID;
                INSERT INTO old_history SELECT eid, name, observed_at, num, value FROM history;
                DROP TABLE history;
                ALTER TABLE old_history RENAME TO history;
                """
            )
        return
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE history DROP CONSTRAINT history_pkey")
        conn.execute("ALTER TABLE history DROP COLUMN dataset")
        conn.execute("ALTER TABLE history ADD PRIMARY KEY (eid, name, observed_at)")
