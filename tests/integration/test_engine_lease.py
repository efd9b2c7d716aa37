"""The engine lease on PostgreSQL: one holder at a time, taken over when its session ends."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from citypilot.workers.lease import PostgresLease, lease_key

pytestmark = pytest.mark.postgres


async def _created(dsn: str) -> None:
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')


async def test_one_holder_at_a_time_and_the_standby_takes_over(postgres_dsn: str) -> None:
    await _created(postgres_dsn)
    key = lease_key("lease-test")
    leader = PostgresLease(postgres_dsn, key, "a")
    standby = PostgresLease(postgres_dsn, key, "b")
    await leader.acquire()
    waiting = asyncio.create_task(standby.acquire())
    lost = asyncio.create_task(leader.lost())
    assert not await _try(postgres_dsn, key)  # held: nobody else gets it
    assert not waiting.done() and not lost.done()
    # the leader's session ends as when its machine dies: PostgreSQL frees the lock
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'citypilot-engine-lease a'"
        )
    assert await lost  # why it was lost (the connection failed)
    await waiting  # the standby holds it now
    assert not await _try(postgres_dsn, key)
    await standby.release()
    assert await _try(postgres_dsn, key)


async def _try(dsn: str, key: int) -> bool:
    """Whether a third session may take the lock (released again at once)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
        return bool(row and row[0])
