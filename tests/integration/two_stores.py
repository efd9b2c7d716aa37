"""A real server on each store, SQLite and PostgreSQL + PostGIS, for API conformance
modules that must hold on both."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from citypilot.bench.server import server_process
from tests.conftest import Server, seed_accounts, seed_logins


async def seed_postgres_accounts(dsn: str) -> None:
    """The test people and device key in the PostgreSQL database of ``dsn`` (as on
    SQLite: ``seed_accounts``)."""
    from citypilot.store.postgres import PostgresStore

    store = PostgresStore(dsn)
    await store.open()
    await seed_logins(store)
    await store.close()


@contextmanager
def server_on_store(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """A server on the store ``request.param`` names ("sqlite" or "postgres"), with the
    test people and device key."""
    data = tmp_path_factory.mktemp(f"city-{request.param}")
    extra = dict(env or {})
    if request.param == "sqlite":
        asyncio.run(seed_accounts(data))
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        asyncio.run(seed_postgres_accounts(dsn))
        config = data / "city.toml"
        config.write_text(f'store = "postgres"\npostgres_dsn = "{dsn}"\n')
        extra["CITYPILOT_CONFIG"] = str(config)
    with server_process(data, extra) as url:
        yield Server(url, data)
