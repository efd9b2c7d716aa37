"""An NGSI-LD client library from PyPI (Orange's ``ngsildclient``), unchanged, works
against CityPilot: it creates an entity, reads it, queries it, subscribes to it and
updates it, and the notification reaches a local receiver; on each store.

The library pins versions CityPilot cannot share, so it lives in ``.venv-clients``
(made by ``scripts/setup.sh``) and runs as a separate process, as an integrator's
program would."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from citypilot.bench.receiver import Receiver
from tests.conftest import OPERATOR, REQUIRE_SERVICES, VIEWER, Server

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
SESSION = ROOT / "tests" / "clients" / "ngsildclient_session.py"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTP endpoint that keeps what it is sent."""
    with Receiver() as r:
        yield r


def run_session(city: Server, receiver: Receiver, local: str) -> dict:
    """Run the client library's session against the city; what it reported."""
    if not CLIENT_PYTHON.exists():
        message = f"{CLIENT_PYTHON} is missing: run scripts/setup.sh"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [
            str(CLIENT_PYTHON),
            str(SESSION),
            city.url,
            city.token(OPERATOR),
            receiver.url + "/notify",
            local,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_client_library_creates_queries_subscribes_and_is_notified(
    city: Server, receiver: Receiver
):
    local = f"client-{uuid.uuid4().hex[:8]}"
    report = run_session(city, receiver, local)
    lamp = f"urn:ngsi-ld:Streetlight:{local}"
    assert report["id"] == lamp
    assert report["read"]["powerState"]["value"] == "on"  # as created, read back by it
    assert lamp in report["found"]  # its query (count, then pages) found it
    with city.client(VIEWER) as c:
        stored = c.get(f"/ngsi-ld/v1/entities/{lamp}", params={"options": "keyValues"}).json()
        subscription = c.get(f"/ngsi-ld/v1/subscriptions/{report['subscription']}")
    assert stored["powerState"] == "off"  # its update arrived
    assert stored["location"] == {"type": "Point", "coordinates": [5.04, 47.32]}
    assert subscription.status_code == 200, subscription.text
    notified = [
        n
        for got in receiver.wait_for(1)
        for n in got.json()["data"]
        if n["id"] == lamp and n["powerState"]["value"] == "off"
    ]
    assert notified, "the update was not notified to the client's endpoint"
