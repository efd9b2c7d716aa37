"""The command, alarm, rule and mode API tests again, against an API process whose
engine runs in ``citypilot worker engine`` (``engine = "worker"``): a client sees
no difference, refusals included.

The API, a writer and an engine worker run as separate processes on a private NATS
server and a fresh PostgreSQL database; the tests are those of the embedded server,
imported here so that they use this module's ``server``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from citypilot.bench.processes import NatsServer
from tests.conftest import Server, seed_logins
from tests.integration.cluster import Cluster
from tests.integration.test_api_alarms import *  # noqa: F403
from tests.integration.test_api_commands import *  # noqa: F403
from tests.integration.test_api_modes import *  # noqa: F403
from tests.integration.test_api_rules import *  # noqa: F403

pytestmark = pytest.mark.postgres


async def _seed(dsn: str) -> None:
    from citypilot.config import Settings
    from citypilot.store.factory import opened_store

    async with opened_store(Settings(store="postgres", postgres_dsn=dsn)) as store:
        await seed_logins(store)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str) -> Iterator[Server]:
    """An API process with engine = "worker", a writer and an engine worker."""
    base = tmp_path_factory.mktemp("engine-api")
    nats_server = NatsServer(base)
    cluster = Cluster(base, nats_server.url, postgres_dsn, "mqtt://127.0.0.1:1", "engineapi")
    cluster.settings = {"CITYPILOT_ENGINE": "worker"}
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
