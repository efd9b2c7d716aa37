"""The subscription and notification tests again, with the notifier in the engine
worker (``engine = "worker"``): subscriptions made through the API process are taken
up and notified by the engine worker, as the embedded notifier does.

The tests are those of test_ngsi_ld_subscriptions.py, imported here so that they use
this module's ``city``; those that run servers of their own are left out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Server
from tests.integration.engine_city import engine_worker_city
from tests.integration.test_ngsi_ld_subscriptions import *  # noqa: F403
from tests.integration.test_ngsi_ld_subscriptions import (
    test_a_pending_notification_survives_a_kill_9_of_the_server,
    test_subscriptions_changed_through_another_process_are_taken_up,
)

pytestmark = pytest.mark.postgres
del test_a_pending_notification_survives_a_kill_9_of_the_server
del test_subscriptions_changed_through_another_process_are_taken_up


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str) -> Iterator[Server]:
    """An API process with engine = "worker", a writer and an engine worker; failed
    notifications are tried again within 0.2 s."""
    env = {"CITYPILOT_NOTIFY_RETRY_MIN_S": "0.05", "CITYPILOT_NOTIFY_RETRY_MAX_S": "0.2"}
    with engine_worker_city(tmp_path_factory.mktemp("engine-notify"), postgres_dsn, env) as c:
        yield c
