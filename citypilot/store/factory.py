"""Choosing the store backend from the settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citypilot.config import Settings
    from citypilot.store.base import Store


def open_store(settings: Settings) -> Store:
    """The store the settings name (not yet opened): SQLite by default, or PostgreSQL."""
    if settings.store == "postgres":
        from citypilot.store.postgres import PostgresStore

        return PostgresStore(settings.postgres_dsn)
    from citypilot.store.sqlite import SQLiteStore

    return SQLiteStore(settings.data_path / "city.db")


@contextlib.asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    """The configured store, opened, and closed again on exit (for CLI commands)."""
    store = open_store(settings)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
