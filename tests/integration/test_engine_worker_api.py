"""The command, alarm, rule and mode API tests again, against an API process whose
engine runs in ``citypilot worker engine`` (``engine = "worker"``): a client sees
no difference, refusals included.

The API, a writer and an engine worker run as separate processes on a private NATS
server and a fresh PostgreSQL database; the tests are those of the embedded server,
imported here so that they use this module's ``server``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Server
from tests.integration.engine_city import engine_worker_city
from tests.integration.test_api_alarms import *  # noqa: F403
from tests.integration.test_api_commands import *  # noqa: F403
from tests.integration.test_api_modes import *  # noqa: F403
from tests.integration.test_api_rules import *  # noqa: F403

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str) -> Iterator[Server]:
    """An API process with engine = "worker", a writer and an engine worker."""
    with engine_worker_city(tmp_path_factory.mktemp("engine-api"), postgres_dsn) as city:
        yield city
