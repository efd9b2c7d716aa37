"""The engine lease: of all the engine workers started, exactly one runs the engine.

On PostgreSQL the lease is a session advisory lock (``pg_try_advisory_lock``) taken
on a connection of its own: the worker holding it leads; the others are standbys
that try again every :data:`RETRY_S`. PostgreSQL releases the lock when the
leader's session ends — at once when its process dies (the socket closes), within
about :data:`SERVER_DEAD_AFTER_S` when its machine or network goes (TCP keepalives
set on the session) — and a standby takes it. The leader checks its connection
every :data:`CHECK_S`; when a check fails or takes over :data:`CHECK_TIMEOUT_S`,
the lease is lost and the caller stops the engine at once (before PostgreSQL can
hand the lock to another worker). With SQLite there is one process, so the lease
is always held.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Protocol

import psycopg

from citypilot.config import Settings

log = logging.getLogger(__name__)

#: A standby tries to take the lease this often (seconds).
RETRY_S = 1.0
#: The leader checks that its session lives this often (seconds)...
CHECK_S = 1.0
#: ...and takes a check slower than this for a lost lease.
CHECK_TIMEOUT_S = 3.0
#: Server-side TCP keepalives of the lease session: idle, interval, probes.
KEEPALIVES = (5, 2, 3)
SERVER_DEAD_AFTER_S = KEEPALIVES[0] + KEEPALIVES[1] * KEEPALIVES[2]


def lease_key(nats_prefix: str) -> int:
    """The advisory lock key of a city's engine (one per NATS prefix, as a signed int8)."""
    digest = hashlib.blake2b(f"citypilot-engine:{nats_prefix}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class EngineLease(Protocol):
    """Who runs the engine now."""

    async def acquire(self) -> None:
        """Return once this worker holds the lease."""

    async def lost(self) -> str:
        """Return, with the reason, once the lease is no longer held."""

    async def release(self) -> None:
        """Give the lease up (a standby takes it)."""


class PostgresLease:
    """The lease as a session advisory lock on a connection of its own."""

    def __init__(self, dsn: str, key: int, holder: str) -> None:
        self.dsn = dsn
        self.key = key
        self.holder = holder
        self._conn: psycopg.AsyncConnection | None = None

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=5,
                application_name=f"citypilot-engine-lease {self.holder}"[:63],
            )
            idle, interval, count = KEEPALIVES
            await conn.execute(f"SET tcp_keepalives_idle = {idle}")
            await conn.execute(f"SET tcp_keepalives_interval = {interval}")
            await conn.execute(f"SET tcp_keepalives_count = {count}")
            self._conn = conn
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def acquire(self) -> None:
        """Try every :data:`RETRY_S` until the lock is ours; say once that we wait."""
        said = False
        while True:
            try:
                conn = await self._connection()
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                row = await cursor.fetchone()
                if row is not None and row[0]:
                    return
                if not said:
                    log.info("standby: another engine worker holds the engine lease; waiting")
                    said = True
            except (psycopg.Error, OSError) as exc:
                log.warning("engine lease: PostgreSQL unreachable (%s); trying again", exc)
                await self._drop()
            await asyncio.sleep(RETRY_S)

    async def lost(self) -> str:
        """Check the session every :data:`CHECK_S`; return why, once a check fails."""
        while True:
            await asyncio.sleep(CHECK_S)
            conn = self._conn
            if conn is None:
                return "the lease connection is closed"
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    await conn.execute("SELECT 1")
            except TimeoutError:
                await self._drop()
                return f"PostgreSQL did not answer within {CHECK_TIMEOUT_S:g} s"
            except (psycopg.Error, OSError) as exc:
                await self._drop()
                return f"the lease connection failed: {exc}"

    async def release(self) -> None:
        """Close the session: PostgreSQL frees the lock with it."""
        await self._drop()


class SingleProcessLease:
    """SQLite: one process, so the lease is always held."""

    async def acquire(self) -> None:
        """Held at once."""

    async def lost(self) -> str:
        """Never lost."""
        await asyncio.Event().wait()
        return "unreachable"

    async def release(self) -> None:
        """Nothing to give up."""


def engine_lease(settings: Settings, holder: str) -> EngineLease:
    """The lease for the configured store, named after the worker ``holder``."""
    if settings.store == "postgres":
        return PostgresLease(settings.postgres_dsn, lease_key(settings.nats_prefix), holder)
    return SingleProcessLease()
