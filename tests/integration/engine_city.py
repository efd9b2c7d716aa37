"""A city whose engine runs in ``citypilot worker engine`` (``engine = "worker"``): an
API process, a writer and an engine worker on a private NATS server and a database,
for API tests that must hold whether the engine is embedded or not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

from citypilot.bench.processes import NatsServer
from tests.conftest import Server, seed_logins
from tests.integration.cluster import Cluster


async def _seed(dsn: str) -> None:
    from citypilot.config import Settings
    from citypilot.store.factory import opened_store

    async with opened_store(Settings(store="postgres", postgres_dsn=dsn)) as store:
        await seed_logins(store)


@contextlib.contextmanager
def engine_worker_city(
    base: Path, postgres_dsn: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """The running city, as the API tests' ``Server`` (the test people and device key)."""
    nats_server = NatsServer(base)
    cluster = Cluster(base, nats_server.url, postgres_dsn, "mqtt://127.0.0.1:1", "engineapi")
    cluster.settings = {"CITYPILOT_ENGINE": "worker", **(env or {})}
    try:
        nats_server.start()
        asyncio.run(_seed(postgres_dsn))
        _, url = cluster.api("api")
        cluster.worker("writer", "w1")
        engine, _ = cluster.worker("engine", "e1")
        engine.wait_for_log("engine running")
        yield Server(url, base / "data")
    finally:
        cluster.stop()
        nats_server.proc.stop()
