"""Fixtures for integration tests against real services: a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from citypilot.store.base import Store
from citypilot.store.postgres import PostgresStore
from citypilot.store.sqlite import SQLiteStore
from tests.conftest import Server, require_service
from tests.integration.two_stores import server_on_store

#: Where the test PostgreSQL server is; the user must be allowed to create databases.
ADMIN_DSN = os.environ.get(
    "CITYPILOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: Every table the PostgreSQL store keeps (emptied between tests).
STORE_TABLES = (
    "entity_keys",
    "entities",
    "attrs",
    "history",
    "dataset_attrs",
    "dead_letters",
    "accounts",
    "device_keys",
    "entity_types",
    "entity_type_versions",
    "subscriptions",
    "notification_outbox",
)


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a uniquely named database for this module (not yet created), dropped after."""
    params = conninfo_to_dict(ADMIN_DSN)
    require_service("PostgreSQL", params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    name = f"citypilot_test_{uuid.uuid4().hex[:12]}"
    yield make_conninfo(ADMIN_DSN, dbname=name)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def postgres_db(postgres_dsn: str) -> str:
    """The module's database with every store table emptied (absent until a store opens it)."""
    try:
        conn = psycopg.connect(postgres_dsn, autocommit=True)
    except psycopg.OperationalError:
        return postgres_dsn  # not created yet: the store's open() creates it
    with conn:
        row = conn.execute("SELECT to_regclass('entity_keys')").fetchone()
        if row is not None and row[0] is not None:
            tables = sql.SQL(", ").join(sql.Identifier(t) for t in STORE_TABLES)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables))
    return postgres_dsn


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes (unopened) stores on one fresh database of the backend under test."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "city.db")
    dsn = request.getfixturevalue("postgres_db")
    return lambda: PostgresStore(dsn)


@pytest.fixture(name="city", scope="module", params=["sqlite", "postgres"])
def empty_city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """An empty city served on each store, one per module (a module that needs a city
    with things in it defines its own ``city``)."""
    with server_on_store(request, tmp_path_factory) as server:
        yield server
