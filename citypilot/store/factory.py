"""Choosing the store backend from the settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from psycopg.conninfo import make_conninfo

if TYPE_CHECKING:
    from citypilot.config import Settings
    from citypilot.store.base import Store


def open_store(settings: Settings, tenant: str | None = None) -> Store:
    """The store the settings name (not yet opened): SQLite by default, or PostgreSQL;
    an NGSI-LD tenant's own (``store.tenants``: opening creates it) when ``tenant``."""
    from citypilot.store import tenants

    if settings.store == "postgres":
        from citypilot.store.postgres import PostgresStore

        if tenant is None:
            return PostgresStore(settings.postgres_dsn)
        dsn = make_conninfo(settings.postgres_dsn, dbname=tenants.tenant_database(settings, tenant))
        return PostgresStore(dsn, max_size=tenants.TENANT_POOL_SIZE)
    from citypilot.store.sqlite import SQLiteStore

    folder = settings.data_path if tenant is None else tenants.tenant_dir(settings, tenant)
    return SQLiteStore(folder / "city.db")


@contextlib.asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    """The configured store, opened, and closed again on exit (for CLI commands)."""
    store = open_store(settings)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
