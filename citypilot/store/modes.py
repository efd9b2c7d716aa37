"""Where city-mode activations are kept, in either backend, so they survive a restart.

One table, ``mode_activations``: one row per time a mode was entered — its name,
state (``entering``, ``active``, ``leaving``, ``left``), when it was entered and
last changed, and its whole document as JSON (scope, who, why, every device it
commanded with the state before, what leaving did). The mode service
(``engine/modes.py``) is the only writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from citypilot.store.postgres import PostgresStore
from citypilot.store.sqlite import SQLiteStore

#: States in which an activation holds the city (it is listed as active).
OPEN_STATES = ("entering", "active", "leaving")


@dataclass(frozen=True)
class ActivationRow:
    """One activation as kept: id, mode name, state, times and the whole document."""

    id: str
    name: str
    state: str
    entered_at: float
    updated_at: float
    doc: dict[str, Any] = field(default_factory=dict)


class ModeLog(Protocol):
    """The mode table of one store."""

    async def open(self) -> None:
        """Create the table if needed."""

    async def save(self, row: ActivationRow) -> None:
        """Insert or update one activation (committed when this returns)."""

    async def open_activations(self) -> list[ActivationRow]:
        """Activations still holding the city, oldest first."""

    async def recent(self, limit: int) -> list[ActivationRow]:
        """The latest activations, newest first."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS mode_activations (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL,
    entered_at {real} NOT NULL, updated_at {real} NOT NULL, doc {json} NOT NULL);
CREATE INDEX IF NOT EXISTS mode_activations_by_state ON mode_activations (state, entered_at)
"""
_COLUMNS = "id, name, state, entered_at, updated_at, doc"
_UPSERT = (
    f"INSERT INTO mode_activations ({_COLUMNS}) VALUES ({{marks}})"
    " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
    " updated_at = excluded.updated_at, doc = excluded.doc"
)
_OPEN = (
    f"SELECT {_COLUMNS} FROM mode_activations WHERE state IN ('entering', 'active', 'leaving')"
    " ORDER BY entered_at"
)
_RECENT = f"SELECT {_COLUMNS} FROM mode_activations ORDER BY entered_at DESC LIMIT {{mark}}"


def _row(values: Sequence[Any]) -> ActivationRow:
    doc = values[5]
    return ActivationRow(*values[:5], orjson.loads(doc) if isinstance(doc, str | bytes) else doc)


def _values(row: ActivationRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.name,
        row.state,
        row.entered_at,
        row.updated_at,
        orjson.dumps(row.doc).decode(),
    )


class SQLiteModeLog:
    """The mode table in the embedded SQLite file (through the store's writer thread)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def open(self) -> None:
        """Create the table if needed."""

        def run(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA.format(real="REAL", json="TEXT").split(";"):
                conn.execute(statement)

        await self.store._write(run)

    async def save(self, row: ActivationRow) -> None:
        """Insert or update one activation."""
        sql = _UPSERT.format(marks=", ".join("?" * 6))
        await self.store._write(lambda conn: conn.execute(sql, _values(row)))

    async def open_activations(self) -> list[ActivationRow]:
        """Activations still holding the city, oldest first."""
        rows = await self.store._read(lambda conn: conn.execute(_OPEN).fetchall())
        return [_row(r) for r in rows]

    async def recent(self, limit: int) -> list[ActivationRow]:
        """The latest activations, newest first."""
        sql = _RECENT.format(mark="?")
        rows = await self.store._read(lambda conn: conn.execute(sql, (limit,)).fetchall())
        return [_row(r) for r in rows]


class PostgresModeLog:
    """The mode table in PostgreSQL (through the store's connection pool)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def open(self) -> None:
        """Create the table if needed."""
        async with self.store.pool.connection() as conn:
            await conn.execute(_SCHEMA.format(real="double precision", json="jsonb"))

    async def save(self, row: ActivationRow) -> None:
        """Insert or update one activation."""
        sql = _UPSERT.format(marks="%s, %s, %s, %s, %s, %s::jsonb")
        async with self.store.pool.connection() as conn:
            await conn.execute(sql, _values(row))

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[ActivationRow]:
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return [_row(r) for r in await cur.fetchall()]

    async def open_activations(self) -> list[ActivationRow]:
        """Activations still holding the city, oldest first."""
        return await self._all(_OPEN)

    async def recent(self, limit: int) -> list[ActivationRow]:
        """The latest activations, newest first."""
        return await self._all(_RECENT.format(mark="%s"), (limit,))


def mode_log_for(store: Any) -> ModeLog:
    """The mode table of whichever store the city runs on."""
    if isinstance(store, SQLiteStore):
        return SQLiteModeLog(store)
    if isinstance(store, PostgresStore):
        return PostgresModeLog(store)
    raise TypeError(f"no mode log for a {type(store).__name__}")
