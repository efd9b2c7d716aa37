"""Scopes in both stores: each entity's municipality and department kept as columns,
followed through every write, filtered in the query itself (pages, counts, maps), and
filled in for a store made before the columns existed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg

from citypilot.security.scopes import Grant, TypePolicy, visibility
from citypilot.store.base import EntityQuery, Store
from citypilot.store.postgres import PostgresStore
from citypilot.store.sqlite import SQLiteStore
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import NOW, REGISTRY, fragment, lid, light, make

#: The store contract's fixtures: every test here runs on SQLite and on PostgreSQL.
store = contract.store

MUNI_A = "urn:ngsi-ld:Municipality:A"
MUNI_B = "urn:ngsi-ld:Municipality:B"
POLICY = TypePolicy.of(REGISTRY)


def ref(municipality: str) -> dict:
    return {"type": "Relationship", "object": municipality}


def seen_by(*grants: Grant):
    return visibility("operator", grants, "viewer", POLICY)


def unit(n: int, municipality: str):
    return make(
        {
            "id": f"urn:ngsi-ld:PoliceUnit:{n}",
            "type": "PoliceUnit",
            "location": {"type": "Point", "coordinates": [2.35, 48.85]},
            "refMunicipality": ref(municipality),
        }
    )


async def _city(store: Store) -> None:
    lights = [light(k, refMunicipality=ref(MUNI_A if k < 6 else MUNI_B)) for k in range(10)]
    await store.create_entities([*lights, unit(1, MUNI_A)], NOW)


async def test_scope_columns_follow_every_write(store: Store) -> None:
    await store.create_entities([light(1, refMunicipality=ref(MUNI_A))], NOW)
    assert await store.entity_scopes([lid(1)]) == {lid(1): ("Streetlight", MUNI_A, None)}
    moved = fragment("Streetlight", {"refMunicipality": ref(MUNI_B), "department": "works"})
    await store.write_attributes(lid(1), moved, NOW + 1, "append")
    assert (await store.entity_scopes([lid(1)]))[lid(1)] == ("Streetlight", MUNI_B, "works")
    await store.delete_attribute(lid(1), "department", NOW + 2)
    assert (await store.entity_scopes([lid(1)]))[lid(1)] == ("Streetlight", MUNI_B, None)
    await store.upsert_entities([light(1)], NOW + 3, replace=True)
    assert (await store.entity_scopes())[lid(1)] == ("Streetlight", None, None)
    town = make({"id": MUNI_A, "type": "Municipality"})
    await store.create_entities([town], NOW)
    assert (await store.entity_scopes([MUNI_A]))[MUNI_A] == ("Municipality", MUNI_A, None)


async def test_queries_filter_in_the_store_so_pages_and_counts_are_right(store: Store) -> None:
    await _city(store)
    scope = seen_by(Grant("viewer", MUNI_A))
    page, total = await store.query_entities(EntityQuery(limit=4, count=True, scope=scope))
    assert total == 6 and [e.id for e in page] == [lid(k) for k in range(4)]
    _, total = await store.query_entities(
        EntityQuery(types=("PoliceUnit",), count=True, scope=seen_by(Grant("viewer")))
    )
    assert total == 0
    police = seen_by(Grant("viewer", department="police"))
    found, total = await store.query_entities(EntityQuery(count=True, scope=police))
    assert [e.id for e in found] == ["urn:ngsi-ld:PoliceUnit:1"] and total == 1
    lighting_b = seen_by(Grant("viewer", MUNI_B, "lighting"))
    _, total = await store.query_entities(EntityQuery(count=True, scope=lighting_b))
    assert total == 4  # the lights of B: their type's department, as none is named


async def test_the_map_scan_is_scoped(store: Store) -> None:
    await _city(store)
    layer = await store.scan_columns("Streetlight", ["status"], seen_by(Grant("viewer", MUNI_B)))
    assert layer.ids == [lid(k) for k in range(6, 10)]
    assert (await store.scan_columns("PoliceUnit", [], seen_by(Grant("viewer")))).ids == []


async def test_a_store_made_before_scopes_is_filled_in(store_factory: Callable[[], Store]) -> None:
    first = store_factory()
    await first.open()
    await _city(first)
    await first.close()
    _drop_scope_columns(first)
    again = store_factory()
    await again.open()
    try:
        scope = seen_by(Grant("viewer", MUNI_B))
        _, total = await again.query_entities(EntityQuery(count=True, scope=scope))
        assert total == 4
    finally:
        await again.close()


def _drop_scope_columns(store: Store) -> None:
    statements = (
        "DROP INDEX entities_by_scope",
        "ALTER TABLE entities DROP COLUMN municipality",
        "ALTER TABLE entities DROP COLUMN department",
    )
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
