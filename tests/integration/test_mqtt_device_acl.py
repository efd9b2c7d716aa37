"""Device key bindings over MQTT, enforced by Mosquitto's dynamic security plugin.

A broker of the test's own (a free port, a dynamic-security file made by
``mosquitto_ctrl dynsec init``) and a server whose ingest client ``devices sync-mqtt``
provisioned. ``devices add|rotate|revoke`` make each key an MQTT client (username the
device name, password the key) whose role lets it publish only where its binding
allows: the broker refuses the rest (PUBACK 135, Not authorized) and nothing of it is
stored; a revoked or rotated-away key cannot connect.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import queue
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from citypilot.bench.processes import Proc, wait_until
from citypilot.bench.server import free_port, server_process
from tests.conftest import ADMIN, REQUIRE_SERVICES, Server, seed_accounts, service_available

PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
ADMIN_PASSWORD = "dynsec-admin-" + uuid.uuid4().hex
INGEST_PASSWORD = "ingest-" + uuid.uuid4().hex
NGSI = "/ngsi-ld/v1"
MUNI_A = "urn:ngsi-ld:Municipality:acl-a"
MUNI_B = "urn:ngsi-ld:Municipality:acl-b"
OWN = "urn:ngsi-ld:Streetlight:acl-own"
OTHER = "urn:ngsi-ld:Streetlight:acl-other"
IN_B = "urn:ngsi-ld:Streetlight:acl-in-b"
NOT_AUTHORIZED = 135


@dataclass
class City:
    """The server, its broker's port and the environment its CLI runs with."""

    server: Server
    port: int
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``citypilot …`` on the server's store, against the same broker."""
        done = subprocess.run(
            [sys.executable, "-m", "citypilot.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def add_device(self, name: str, *binding: str) -> str:
        """A new device key (the last line ``devices add`` prints)."""
        return self.cli("devices", "add", name, *binding).stdout.strip().splitlines()[-1]


def _require_dynsec() -> None:
    missing = [n for n in ("mosquitto", "mosquitto_ctrl") if shutil.which(n) is None]
    if not PLUGIN.exists():
        missing.append(str(PLUGIN))
    if missing:
        message = f"Mosquitto's dynamic security is not installed: {', '.join(missing)}"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} and CITYPILOT_REQUIRE_SERVICES=1")
        pytest.skip(message)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Mosquitto of the test's own with the dynamic security plugin; its port."""
    _require_dynsec()
    base = tmp_path_factory.mktemp("dynsec")
    dynsec = base / "dynamic-security.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(dynsec), "admin", ADMIN_PASSWORD],
        check=True,
        capture_output=True,
    )
    port = free_port()
    config = base / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        # as the test's user: run as root, Mosquitto would drop to its own user, who may
        # not read (nor write back) the dynamic security file in the test's directory
        f"user {getpass.getuser()}\n"
        f"plugin {PLUGIN}\n"
        f"plugin_opt_config_file {dynsec}\n"
        "persistence false\n"
    )
    proc = Proc("mosquitto", ["mosquitto", "-c", str(config)], dict(os.environ), base).start()
    try:
        wait_until(lambda: service_available("127.0.0.1", port), "the dynsec broker")
        yield port
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def city(broker: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    data = tmp_path_factory.mktemp("acl-data")
    asyncio.run(seed_accounts(data))
    env = {
        **os.environ,
        "CITYPILOT_DATA_DIR": str(data),
        "CITYPILOT_MQTT_URL": f"mqtt://citypilot-ingest:{INGEST_PASSWORD}@127.0.0.1:{broker}",
        "CITYPILOT_MQTT_DYNSEC_URL": f"mqtt://admin:{ADMIN_PASSWORD}@127.0.0.1:{broker}",
    }
    town = City(Server("", data), broker, env)
    town.cli("devices", "sync-mqtt")  # the ingest client, before the server connects with it
    extra = {k: v for k, v in env.items() if k.startswith("CITYPILOT_MQTT")}
    with server_process(data, extra_env=extra) as url:
        town.server = Server(url, data)
        with town.server.client(ADMIN) as c:
            wait_until(lambda: _mqtt_up(c), "the server's MQTT connection")
            docs = [
                _light(OWN, MUNI_A),
                _light(OTHER, MUNI_A),
                _light(IN_B, MUNI_B),
            ]
            r = c.post(f"{NGSI}/entityOperations/upsert", json=docs)
            assert r.status_code == 201, r.text
        yield town


def _mqtt_up(client: httpx.Client) -> bool:
    return '"mqtt":{"up":true}' in client.get("/api/v1/health").text.replace(" ", "")


def _light(entity_id: str, municipality: str) -> dict:
    return {
        "id": entity_id,
        "type": "Streetlight",
        "refMunicipality": {"type": "Relationship", "object": municipality},
    }


class Device:
    """A device's MQTT 5 connection (paho), with the reason code of each answer."""

    def __init__(self, port: int, name: str, key: str) -> None:
        self._connected: queue.Queue[int] = queue.Queue()
        self._acks: dict[int, int] = {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{name}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(name, key)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self._connected.put(rc.value)
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self._acks.__setitem__(mid, rc.value)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connack = self._connected.get(timeout=30)

    def publish(self, entity_id: str, power: float) -> int:
        """Publish an observation on the entity's topic at QoS 1; the PUBACK reason code."""
        local = entity_id.split(":", 3)[3]
        payload = (
            f'{{"observedAt": "{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}", '
            f'"attrs": {{"powerConsumption": {power}}}}}'
        )
        mid = self.client.publish(f"citypilot/Streetlight/{local}/attrs", payload, qos=1).mid
        wait_until(lambda: mid in self._acks, f"the PUBACK of {entity_id}")
        return self._acks[mid]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def _power(city: City, entity_id: str) -> float | None:
    with city.server.client(ADMIN) as c:
        doc = c.get(f"{NGSI}/entities/{entity_id}", params={"options": "keyValues"}).json()
    return doc.get("powerConsumption")


def test_a_bound_key_publishes_only_to_its_own_entity(city: City):
    device = Device(city.port, "acl-own", city.add_device("acl-own", "--entity", OWN))
    try:
        assert device.connack == 0
        # refused first: once the allowed reading that follows is stored, the refused
        # one would have been too
        assert device.publish(OTHER, 99.0) == NOT_AUTHORIZED
        assert device.publish(IN_B, 98.0) == NOT_AUTHORIZED
        assert device.publish(OWN, 41.5) < 128
        wait_until(lambda: _power(city, OWN) == 41.5, "the bound device's reading")
        assert _power(city, OTHER) is None and _power(city, IN_B) is None
    finally:
        device.close()


def test_a_key_bound_to_a_municipality_publishes_to_its_entities_only(city: City):
    key = city.add_device("acl-b", "--municipality", MUNI_B)
    device = Device(city.port, "acl-b", key)
    try:
        assert device.publish(OTHER, 77.0) == NOT_AUTHORIZED
        assert device.publish(IN_B, 12.0) < 128
        wait_until(lambda: _power(city, IN_B) == 12.0, "the municipality device's reading")
        assert _power(city, OTHER) is None
    finally:
        device.close()


def test_a_revoked_or_rotated_away_key_cannot_connect(city: City):
    revoked = city.add_device("acl-revoked", "--entity", OWN)
    rotated = city.add_device("acl-rotated", "--entity", OWN)
    city.cli("devices", "revoke", "acl-revoked")
    new = city.cli("devices", "rotate", "acl-rotated").stdout.strip().splitlines()[-1]
    for name, key in (("acl-revoked", revoked), ("acl-rotated", rotated)):
        refused = Device(city.port, name, key)
        refused.close()
        assert refused.connack in (134, NOT_AUTHORIZED), (name, refused.connack)
    admitted = Device(city.port, "acl-rotated", new)
    admitted.close()
    assert admitted.connack == 0


def test_sync_removes_what_the_store_no_longer_has_and_reports_what_it_cannot_provision(
    city: City,
):
    # a device the broker never heard of (added without the broker) and one it keeps
    # after the store forgot it
    plain = {k: v for k, v in city.env.items() if k != "CITYPILOT_MQTT_DYNSEC_URL"}
    subprocess.run(
        [sys.executable, "-m", "citypilot.cli", "devices", "add", "acl-unprovisioned"],
        env=plain, check=True, capture_output=True,
    )  # fmt: skip
    stale = city.add_device("acl-stale", "--entity", OWN)
    subprocess.run(
        [sys.executable, "-m", "citypilot.cli", "devices", "revoke", "acl-stale"],
        env=plain, check=True, capture_output=True,
    )  # fmt: skip
    kept = Device(city.port, "acl-stale", stale)
    kept.close()
    assert kept.connack == 0  # the broker still admits it
    report = city.cli("devices", "sync-mqtt").stderr
    assert "acl-unprovisioned" in report and "rotate" in report
    refused = Device(city.port, "acl-stale", stale)
    refused.close()
    assert refused.connack in (134, NOT_AUTHORIZED)


def test_the_api_rotates_a_key_on_the_broker_too(city: City):
    old = city.add_device("acl-api", "--entity", OWN)
    with city.server.client(ADMIN) as c:
        r = c.post("/api/v1/devices/acl-api/rotate")
    assert r.status_code == 200, r.text
    refused = Device(city.port, "acl-api", old)
    refused.close()
    admitted = Device(city.port, "acl-api", r.json()["key"])
    try:
        assert refused.connack in (134, NOT_AUTHORIZED) and admitted.connack == 0
        assert admitted.publish(OTHER, 55.0) == NOT_AUTHORIZED  # the binding came along
    finally:
        admitted.close()


def test_nothing_changes_when_the_broker_cannot_be_told(city: City):
    away = {**city.env, "CITYPILOT_MQTT_DYNSEC_URL": f"mqtt://admin:x@127.0.0.1:{free_port()}"}
    done = subprocess.run(
        [sys.executable, "-m", "citypilot.cli", "devices", "add", "acl-away", "--entity", OWN],
        env=away, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "did not answer" in done.stderr
    assert "acl-away" not in city.cli("devices", "list").stdout
