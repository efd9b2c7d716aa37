"""A real server on each store, SQLite and PostgreSQL + PostGIS, for API conformance
modules that must hold on both."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from citypilot.bench.server import server_process
from tests.conftest import DEVICE_KEY, OPERATOR, VIEWER, Server, seed_accounts


async def seed_postgres_accounts(dsn: str) -> None:
    """The test people and device key in the PostgreSQL database of ``dsn``."""
    from citypilot.security.provision import add_logins
    from citypilot.security.scopes import Grant
    from citypilot.store.postgres import PostgresStore

    store = PostgresStore(dsn)
    await store.open()
    await add_logins(
        store, [(*OPERATOR, "operator"), (*VIEWER, "viewer")], [("test-gateway", DEVICE_KEY)]
    )
    # as on SQLite (seed_accounts): the operator works for the whole metropole, police included
    account = await store.get_account(OPERATOR[0])
    account.grants = (Grant("operator"), Grant("operator", department="police"))
    await store.put_account(account)
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
