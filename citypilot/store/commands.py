"""Where device commands and every transition of theirs are kept, in either backend.

Two tables, added next to the store's own (created on :meth:`CommandLog.open`):
``commands`` holds one row per command (its current state and its whole document as
JSON, with the idempotency key unique) and ``command_transitions`` every state
change (when, which state, who or what caused it, what the device answered), in
order. ``command_endpoints`` keeps the HTTP callback URL registered for an entity
or an entity type. The command service (``engine/commands.py``) is the only writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from citypilot.security.scopes import Visibility
from citypilot.store.postgres import PostgresStore
from citypilot.store.sqlite import SQLiteStore


@dataclass(frozen=True)
class CommandRow:
    """A command as kept: id, entity, state, key, times and the whole document."""

    id: str
    entity_id: str
    state: str
    created_at: float
    updated_at: float
    idempotency_key: str | None
    doc: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TransitionRow:
    """One state change of a command: when, into which state, by whom, with what detail."""

    command_id: str
    at: float
    state: str
    actor: str
    detail: dict[str, Any] = field(default_factory=dict)


class CommandLog(Protocol):
    """The command tables of one store."""

    async def open(self) -> None:
        """Create the tables if needed."""

    async def save(self, rows: Sequence[CommandRow], transitions: Sequence[TransitionRow]) -> None:
        """Insert or update commands and append transitions, in one transaction."""

    async def get(self, command_id: str) -> CommandRow | None:
        """One command, or None."""

    async def by_key(self, key: str) -> CommandRow | None:
        """The command created with this idempotency key, or None."""

    async def query(
        self,
        entity_id: str | None,
        states: Collection[str] | None,
        since: float | None,
        limit: int,
        offset: int,
        scope: Visibility | None = None,
    ) -> tuple[list[CommandRow], int]:
        """Commands newest first, filtered, and how many match; with ``scope``, only
        commands of existing entities it covers."""

    async def transitions(self, command_id: str) -> list[TransitionRow]:
        """Every transition of a command, oldest first."""

    async def put_endpoint(self, target: str, url: str | None) -> None:
        """Register (or, with None, remove) the HTTP callback of an entity or a type."""

    async def endpoints(self) -> dict[str, str]:
        """Every registered HTTP callback, target → URL."""


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, entity_id TEXT NOT NULL, state TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, idempotency_key TEXT UNIQUE,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS commands_by_entity ON commands(entity_id, created_at);
CREATE INDEX IF NOT EXISTS commands_by_state ON commands(state, created_at);
CREATE TABLE IF NOT EXISTS command_transitions (
    command_id TEXT NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
    state TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS command_transitions_by_command ON command_transitions(command_id, seq);
CREATE TABLE IF NOT EXISTS command_endpoints (target TEXT PRIMARY KEY, url TEXT NOT NULL);
"""

_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id text PRIMARY KEY, entity_id text NOT NULL, state text NOT NULL,
    created_at double precision NOT NULL, updated_at double precision NOT NULL,
    idempotency_key text UNIQUE, doc jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS commands_by_entity ON commands (entity_id, created_at);
CREATE INDEX IF NOT EXISTS commands_by_state ON commands (state, created_at);
CREATE TABLE IF NOT EXISTS command_transitions (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, command_id text NOT NULL,
    at double precision NOT NULL, state text NOT NULL, actor text NOT NULL,
    detail jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS command_transitions_by_command
    ON command_transitions (command_id, seq);
CREATE TABLE IF NOT EXISTS command_endpoints (target text PRIMARY KEY, url text NOT NULL);
"""

_COLUMNS = "id, entity_id, state, created_at, updated_at, idempotency_key, doc"


def _row(values: Sequence[Any]) -> CommandRow:
    doc = values[6]
    return CommandRow(*values[:6], orjson.loads(doc) if isinstance(doc, str | bytes) else doc)


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def _filters(
    entity_id: str | None,
    states: Collection[str] | None,
    since: float | None,
    scope: Visibility | None,
    mark: str,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if entity_id is not None:
        where.append(f"entity_id = {mark}")
        args.append(entity_id)
    if states:
        where.append(f"state IN ({', '.join([mark] * len(states))})")
        args.extend(states)
    if since is not None:
        where.append(f"updated_at >= {mark}")
        args.append(since)
    if scope is not None:
        condition, params = scope.sql(mark)
        where.append(
            "EXISTS (SELECT 1 FROM entity_keys k JOIN entities e ON e.eid = k.eid"
            f" WHERE k.id = commands.entity_id AND {condition})"
        )
        args.extend(params)
    return (" WHERE " + " AND ".join(where)) if where else "", args


class SQLiteCommandLog:
    """The command tables in the embedded SQLite file (through the store's writer thread)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def open(self) -> None:
        """Create the tables if needed."""

        def run(conn: sqlite3.Connection) -> None:
            for statement in _SQLITE_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

        await self.store._write(run)

    async def save(self, rows: Sequence[CommandRow], transitions: Sequence[TransitionRow]) -> None:
        """Insert or update commands and append transitions, in one transaction."""
        values = [
            (
                r.id,
                r.entity_id,
                r.state,
                r.created_at,
                r.updated_at,
                r.idempotency_key,
                _dump(r.doc),
            )
            for r in rows
        ]
        steps = [(t.command_id, t.at, t.state, t.actor, _dump(t.detail)) for t in transitions]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT INTO commands ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at, doc = excluded.doc",
                values,
            )
            conn.executemany(
                "INSERT INTO command_transitions (command_id, at, state, actor, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                steps,
            )

        await self.store._write(run)

    async def _one(self, sql: str, args: Sequence[Any]) -> CommandRow | None:
        row = await self.store._read(lambda conn: conn.execute(sql, args).fetchone())
        return None if row is None else _row(row)

    async def get(self, command_id: str) -> CommandRow | None:
        """One command, or None."""
        return await self._one(f"SELECT {_COLUMNS} FROM commands WHERE id = ?", (command_id,))

    async def by_key(self, key: str) -> CommandRow | None:
        """The command created with this idempotency key, or None."""
        return await self._one(f"SELECT {_COLUMNS} FROM commands WHERE idempotency_key = ?", (key,))

    async def query(
        self,
        entity_id: str | None,
        states: Collection[str] | None,
        since: float | None,
        limit: int,
        offset: int,
        scope: Visibility | None = None,
    ) -> tuple[list[CommandRow], int]:
        """Commands newest first, filtered, and how many match; with ``scope``, only
        commands of existing entities it covers."""
        where, args = _filters(entity_id, states, since, scope, "?")

        def run(conn: sqlite3.Connection) -> tuple[list[CommandRow], int]:
            total = conn.execute(f"SELECT count(*) FROM commands{where}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM commands{where}"
                " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            return [_row(r) for r in rows], total

        return await self.store._read(run)

    async def transitions(self, command_id: str) -> list[TransitionRow]:
        """Every transition of a command, oldest first."""
        rows = await self.store._read(
            lambda conn: conn.execute(
                "SELECT command_id, at, state, actor, detail FROM command_transitions"
                " WHERE command_id = ? ORDER BY seq",
                (command_id,),
            ).fetchall()
        )
        return [TransitionRow(*r[:4], orjson.loads(r[4])) for r in rows]

    async def put_endpoint(self, target: str, url: str | None) -> None:
        """Register (or, with None, remove) the HTTP callback of an entity or a type."""

        def run(conn: sqlite3.Connection) -> None:
            if url is None:
                conn.execute("DELETE FROM command_endpoints WHERE target = ?", (target,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO command_endpoints VALUES (?, ?)", (target, url)
                )

        await self.store._write(run)

    async def endpoints(self) -> dict[str, str]:
        """Every registered HTTP callback, target → URL."""
        rows = await self.store._read(
            lambda conn: conn.execute("SELECT target, url FROM command_endpoints").fetchall()
        )
        return dict(rows)


class PostgresCommandLog:
    """The command tables in PostgreSQL (through the store's connection pool)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def open(self) -> None:
        """Create the tables if needed."""
        async with self.store.pool.connection() as conn:
            await conn.execute(_POSTGRES_SCHEMA)

    async def save(self, rows: Sequence[CommandRow], transitions: Sequence[TransitionRow]) -> None:
        """Insert or update commands and append transitions, in one transaction."""
        async with (
            self.store.pool.connection() as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            if rows:
                await cur.executemany(
                    f"INSERT INTO commands ({_COLUMNS})"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)"
                    " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                    " updated_at = excluded.updated_at, doc = excluded.doc",
                    [
                        (
                            r.id,
                            r.entity_id,
                            r.state,
                            r.created_at,
                            r.updated_at,
                            r.idempotency_key,
                            _dump(r.doc),
                        )
                        for r in rows
                    ],
                )
            if transitions:
                await cur.executemany(
                    "INSERT INTO command_transitions (command_id, at, state, actor, detail)"
                    " VALUES (%s, %s, %s, %s, %s::jsonb)",
                    [(t.command_id, t.at, t.state, t.actor, _dump(t.detail)) for t in transitions],
                )

    async def _one(self, sql: str, args: Sequence[Any]) -> CommandRow | None:
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            row = await cur.fetchone()
        return None if row is None else _row(row)

    async def get(self, command_id: str) -> CommandRow | None:
        """One command, or None."""
        return await self._one(f"SELECT {_COLUMNS} FROM commands WHERE id = %s", (command_id,))

    async def by_key(self, key: str) -> CommandRow | None:
        """The command created with this idempotency key, or None."""
        return await self._one(
            f"SELECT {_COLUMNS} FROM commands WHERE idempotency_key = %s", (key,)
        )

    async def query(
        self,
        entity_id: str | None,
        states: Collection[str] | None,
        since: float | None,
        limit: int,
        offset: int,
        scope: Visibility | None = None,
    ) -> tuple[list[CommandRow], int]:
        """Commands newest first, filtered, and how many match; with ``scope``, only
        commands of existing entities it covers."""
        where, args = _filters(entity_id, states, since, scope, "%s")
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) FROM commands{where}", args)
            total = (await cur.fetchone())[0]
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM commands{where}"
                " ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
                (*args, limit, offset),
            )
            return [_row(r) for r in await cur.fetchall()], total

    async def transitions(self, command_id: str) -> list[TransitionRow]:
        """Every transition of a command, oldest first."""
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT command_id, at, state, actor, detail FROM command_transitions"
                " WHERE command_id = %s ORDER BY seq",
                (command_id,),
            )
            return [TransitionRow(*r) for r in await cur.fetchall()]

    async def put_endpoint(self, target: str, url: str | None) -> None:
        """Register (or, with None, remove) the HTTP callback of an entity or a type."""
        async with self.store.pool.connection() as conn:
            if url is None:
                await conn.execute("DELETE FROM command_endpoints WHERE target = %s", (target,))
            else:
                await conn.execute(
                    "INSERT INTO command_endpoints (target, url) VALUES (%s, %s)"
                    " ON CONFLICT (target) DO UPDATE SET url = excluded.url",
                    (target, url),
                )

    async def endpoints(self) -> dict[str, str]:
        """Every registered HTTP callback, target → URL."""
        async with self.store.pool.connection() as conn:
            cur = await conn.execute("SELECT target, url FROM command_endpoints")
            return dict(await cur.fetchall())


def command_log_for(store: Any) -> CommandLog:
    """The command tables of whichever store the city runs on."""
    if isinstance(store, SQLiteStore):
        return SQLiteCommandLog(store)
    if isinstance(store, PostgresStore):
        return PostgresCommandLog(store)
    raise TypeError(f"no command log for a {type(store).__name__}")
