"""Where the JSON-LD @contexts the NGSI-LD API holds are kept, in either backend.

One table, ``ld_contexts``: one row per context (ETSI GS CIM 009 §5.13): its local id,
kind (``Hosted``: added with ``POST /jsonldContexts``; ``Cached``: a remote context
fetched once; ``ImplicitlyCreated``: an inline context a request carried), the URL it
is known by (None for a context served here, whose URL is its local path), when it was
added, and the document (``{"@context": ...}``). The context service
(``api.ldcontexts``) is the only writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from citypilot.store.postgres import PostgresStore
from citypilot.store.sqlite import SQLiteStore

KINDS = ("Hosted", "Cached", "ImplicitlyCreated")


@dataclass(frozen=True)
class ContextRow:
    """A kept @context: local id, kind, remote URL (Cached only), time and document."""

    id: str
    kind: str
    url: str | None
    created_at: float
    doc: dict[str, Any] = field(default_factory=dict)


class ContextTable(Protocol):
    """The @context table of one store."""

    async def open(self) -> None:
        """Create the table if needed."""

    async def add(self, row: ContextRow) -> None:
        """Keep a context (one with the same id is replaced)."""

    async def get(self, context_id: str) -> ContextRow | None:
        """A context by its local id, or None."""

    async def by_url(self, url: str) -> ContextRow | None:
        """A cached context by its remote URL, or None."""

    async def all(self, kind: str | None = None) -> list[ContextRow]:
        """Every context (of one kind), oldest first."""

    async def delete(self, context_id: str) -> bool:
        """Forget a context; False if there was none."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ld_contexts (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, url TEXT,
    created_at {real} NOT NULL, doc {json} NOT NULL);
CREATE INDEX IF NOT EXISTS ld_contexts_by_url ON ld_contexts (url)
"""
_COLUMNS = "id, kind, url, created_at, doc"
_UPSERT = (
    f"INSERT INTO ld_contexts ({_COLUMNS}) VALUES ({{marks}})"
    " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, url = excluded.url,"
    " created_at = excluded.created_at, doc = excluded.doc"
)
_GET = f"SELECT {_COLUMNS} FROM ld_contexts WHERE id = {{mark}}"
_BY_URL = f"SELECT {_COLUMNS} FROM ld_contexts WHERE url = {{mark}} ORDER BY created_at DESC"
_ALL = f"SELECT {_COLUMNS} FROM ld_contexts{{where}} ORDER BY created_at, id"
_DELETE = "DELETE FROM ld_contexts WHERE id = {mark}"


def _row(values: Sequence[Any] | None) -> ContextRow | None:
    if values is None:
        return None
    doc = values[4]
    return ContextRow(*values[:4], orjson.loads(doc) if isinstance(doc, str | bytes) else doc)


def _values(row: ContextRow) -> tuple[Any, ...]:
    return (row.id, row.kind, row.url, row.created_at, orjson.dumps(row.doc).decode())


class SQLiteContextTable:
    """The @context table in the embedded SQLite file (through the store's writer thread)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def open(self) -> None:
        """Create the table if needed."""

        def run(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA.format(real="REAL", json="TEXT").split(";"):
                conn.execute(statement)

        await self.store._write(run)

    async def add(self, row: ContextRow) -> None:
        """Keep a context (one with the same id is replaced)."""
        sql = _UPSERT.format(marks=", ".join("?" * 5))
        await self.store._write(lambda conn: conn.execute(sql, _values(row)))

    async def _one(self, sql: str, arg: str) -> ContextRow | None:
        return _row(await self.store._read(lambda conn: conn.execute(sql, (arg,)).fetchone()))

    async def get(self, context_id: str) -> ContextRow | None:
        """A context by its local id, or None."""
        return await self._one(_GET.format(mark="?"), context_id)

    async def by_url(self, url: str) -> ContextRow | None:
        """A cached context by its remote URL, or None."""
        return await self._one(_BY_URL.format(mark="?"), url)

    async def all(self, kind: str | None = None) -> list[ContextRow]:
        """Every context (of one kind), oldest first."""
        sql = _ALL.format(where=" WHERE kind = ?" if kind else "")
        args = (kind,) if kind else ()
        rows = await self.store._read(lambda conn: conn.execute(sql, args).fetchall())
        return [r for r in map(_row, rows) if r is not None]

    async def delete(self, context_id: str) -> bool:
        """Forget a context; False if there was none."""
        sql = _DELETE.format(mark="?")
        cur = await self.store._write(lambda conn: conn.execute(sql, (context_id,)))
        return cur.rowcount > 0


class PostgresContextTable:
    """The @context table in PostgreSQL (through the store's connection pool)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def open(self) -> None:
        """Create the table if needed."""
        async with self.store.pool.connection() as conn:
            await conn.execute(_SCHEMA.format(real="double precision", json="jsonb"))

    async def add(self, row: ContextRow) -> None:
        """Keep a context (one with the same id is replaced)."""
        sql = _UPSERT.format(marks="%s, %s, %s, %s, %s::jsonb")
        async with self.store.pool.connection() as conn:
            await conn.execute(sql, _values(row))

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[ContextRow]:
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return [r for r in map(_row, await cur.fetchall()) if r is not None]

    async def get(self, context_id: str) -> ContextRow | None:
        """A context by its local id, or None."""
        rows = await self._rows(_GET.format(mark="%s"), (context_id,))
        return rows[0] if rows else None

    async def by_url(self, url: str) -> ContextRow | None:
        """A cached context by its remote URL, or None."""
        rows = await self._rows(_BY_URL.format(mark="%s"), (url,))
        return rows[0] if rows else None

    async def all(self, kind: str | None = None) -> list[ContextRow]:
        """Every context (of one kind), oldest first."""
        sql = _ALL.format(where=" WHERE kind = %s" if kind else "")
        return await self._rows(sql, (kind,) if kind else ())

    async def delete(self, context_id: str) -> bool:
        """Forget a context; False if there was none."""
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(_DELETE.format(mark="%s"), (context_id,))
            return cur.rowcount > 0


def context_table_for(store: Any) -> ContextTable:
    """The @context table of whichever store the city runs on."""
    if isinstance(store, SQLiteStore):
        return SQLiteContextTable(store)
    if isinstance(store, PostgresStore):
        return PostgresContextTable(store)
    raise TypeError(f"no @context table for a {type(store).__name__}")
