"""Nothing acknowledged is lost: kill -9 each kind of process, restart NATS and PostgreSQL.

The city runs on its own NATS server, PostgreSQL cluster and Mosquitto broker
(free ports, temporary directories), so they may be killed. A load client sends
observations over HTTP and MQTT and keeps each one acknowledged to it (HTTP 200,
the broker's PUBACK); after each fault it keeps sending, and every acknowledged
observation must then be in history, and each sensor's state as new as its
newest acknowledged observation. Nobody restarts ingest by hand: restarting a
killed process is the job of systemd, done here by the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from citypilot.bench.processes import (
    MosquittoServer,
    NatsServer,
    PostgresServer,
    Proc,
    wait_until,
)
from tests.conftest import REQUIRE_SERVICES
from tests.integration.cluster import (
    Cluster,
    LoadClient,
    create_sensors,
    metric,
    missing_from_store,
)

pytestmark = pytest.mark.slow

#: Acknowledged observations to see before a fault, and again after it.
BEFORE, AFTER = 300, 300


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Private NATS, PostgreSQL and Mosquitto; an API, two ingest workers, two writers."""
    import shutil

    if shutil.which("runuser") is None and not REQUIRE_SERVICES:
        pytest.skip("runuser is needed to run a private PostgreSQL as root")
    base = tmp_path_factory.mktemp("faults")
    nats_server, postgres, mosquitto = NatsServer(base), PostgresServer(), MosquittoServer(base)
    cluster = Cluster(base, nats_server.url, postgres.dsn, mosquitto.url, "faults")
    cluster.settings = {
        "CITYPILOT_NATS_ACK_WAIT_S": "3",
        "CITYPILOT_MAX_STREAM_LAG": "200",
    }
    try:
        nats_server.start()
        postgres.start()
        mosquitto.start()
        cluster.seed()
        api, url = cluster.api("api")
        ingest = [cluster.worker("ingest", f"i{n}") for n in (1, 2)]
        writers = [cluster.worker("writer", f"w{n}") for n in (1, 2)]
        ids = create_sensors(url, 40)
        yield {
            "cluster": cluster,
            "nats": nats_server,
            "postgres": postgres,
            "mqtt_port": mosquitto.port,
            "api": (api, url),
            "ingest": ingest,
            "writers": writers,
            "ids": ids,
        }
    finally:
        cluster.stop()
        mosquitto.proc.stop()
        nats_server.proc.stop()
        postgres.destroy()


def _survives(city: dict, fault: Callable[[], None]) -> LoadClient:
    """Run the load through ``fault``; assert that nothing acknowledged went missing."""
    cluster: Cluster = city["cluster"]
    load = LoadClient(city["ids"], [city["api"][1]], city["mqtt_port"], cluster.topic_root)
    load.start()
    try:
        wait_until(lambda: load.count >= BEFORE, "acknowledged load before the fault", 90)
        fault()
        after = load.count
        wait_until(lambda: load.count >= after + AFTER, "acknowledged load after the fault", 120)
    finally:
        load.stop()
    dsn = cluster.postgres_dsn
    with contextlib.suppress(RuntimeError):  # the assertion below says what is missing
        wait_until(lambda: missing_from_store(dsn, load.acked) == (0, 0), "the writers", 90)
    missing, stale = missing_from_store(dsn, load.acked)
    assert missing == 0, f"{missing} of {len(load.acked)} acknowledged observations are lost"
    assert stale == 0, f"{stale} sensors show a state older than their last acknowledged one"
    return load


def _kill_and_restart(cluster: Cluster, proc: Proc, role: str) -> None:
    proc.kill9()
    cluster.restart(proc, role)


def test_kill_9_of_an_ingest_worker(city: dict) -> None:
    proc, _ = city["ingest"][0]
    _survives(city, lambda: _kill_and_restart(city["cluster"], proc, "ingest"))


def test_kill_9_of_a_writer(city: dict) -> None:
    proc, _ = city["writers"][0]
    _survives(city, lambda: _kill_and_restart(city["cluster"], proc, "writer"))


def test_kill_9_of_the_api_process(city: dict) -> None:
    proc, url = city["api"]

    def fault() -> None:
        proc.kill9()
        city["cluster"].restart_api(proc, url)

    load = _survives(city, fault)
    assert load.refused_http > 0, "some requests met the dead API (and were not acknowledged)"


def test_restart_of_nats(city: dict) -> None:
    # publishes made while NATS is away wait in the client for the reconnection,
    # or fail with 503 after publish_timeout_s: either way none is lost
    _survives(city, city["nats"].restart)


def test_restart_of_postgresql(city: dict) -> None:
    _survives(city, city["postgres"].restart)


def test_writers_behind_make_ingest_wait_without_loss(city: dict) -> None:
    writers = [proc for proc, _ in city["writers"]]
    ingest_ports = [port for _, port in city["ingest"]]
    paused = sum(metric(p, "citypilot_ingest_paused_total") for p in ingest_ports)

    def fault() -> None:
        for proc in writers:
            proc.freeze(True)
        try:
            wait_until(
                lambda: load_ref[0].retry_after_seen > 0,
                "HTTP ingest answering 503 with Retry-After",
                60,
            )
            wait_until(
                lambda: (
                    sum(metric(p, "citypilot_ingest_paused_total") for p in ingest_ports) > paused
                ),
                "an MQTT ingest worker pausing",
                60,
            )
        finally:
            for proc in writers:
                proc.freeze(False)

    load_ref: list[LoadClient] = []
    original = LoadClient.start

    def start(self: LoadClient) -> LoadClient:
        load_ref.append(self)
        return original(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LoadClient, "start", start)
        _survives(city, fault)
    health = httpx.get(city["api"][1] + "/api/v1/health").json()
    assert health["down"] == []
