"""Command round trips through the real Mosquitto, with the simulator as the device gateway.

The platform runs in-process (``running_city`` with MQTT), its command timers on an
injected clock; the simulator publishes its reports with ``MqttPublisher`` and obeys
commands through ``MqttCommandGateway``, each on its own topic root.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from citypilot.api.app import running_city
from citypilot.config import Settings
from citypilot.twin import City, MqttPublisher, Simulator, generate_city
from citypilot.twin.command_gateway import MqttCommandGateway
from tests.conftest import require_service
from tests.integration.command_rig import Clock, loaded_store

pytestmark = pytest.mark.mqtt
HOST, PORT = "127.0.0.1", 1883
URL = f"mqtt://{HOST}:{PORT}"
BOUND_S = 30.0  # how long an answer may take to come back through the broker


@pytest.fixture(scope="module")
def town() -> City:
    """A small town, generated once."""
    return generate_city(7, 0.05)


@pytest.fixture(scope="module")
def town_file(town: City, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Its command types in a store file, made once."""
    return asyncio.run(loaded_store(town, tmp_path_factory.mktemp("town")))


class Line:
    """The platform, the simulated streetlights and their MQTT gateway."""

    def __init__(self, city: Any, sim: Simulator, root: str, clock: Clock) -> None:
        self.city = city
        self.service = city.commands
        self.sim = sim
        self.root = root
        self.clock = clock
        self.publisher = MqttPublisher(URL, topic_root=root)
        self.gateway = MqttCommandGateway(URL, sim, topic_root=root)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start_gateway(self) -> None:
        """The gateway subscribes to the command topics."""
        self._task = asyncio.create_task(self.gateway.run(self._stop))
        await asyncio.wait_for(self.gateway.subscribed.wait(), BOUND_S)

    async def stop(self) -> None:
        """Stop the gateway and the publisher."""
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.publisher.aclose()

    async def report(self) -> None:
        """The devices report what is due in the next simulated second."""
        await self.publisher.send(self.sim.step(self.sim.now + 1))

    async def until(self, command_id: str, check: Callable[[Any], bool]) -> Any:
        """The command once ``check`` holds (bounded wait on the broker's round trip)."""
        deadline = time.monotonic() + BOUND_S
        while True:
            cmd = await self.service.get(command_id)
            if check(cmd):
                return cmd
            assert time.monotonic() < deadline, f"{command_id} stuck in {cmd.state}"
            await asyncio.sleep(0.02)

    async def submit(self, entity_id: str, command: str, args: Any, **kw: Any) -> Any:
        """Submit as an operator."""
        return await self.service.submit(
            entity_id, command, args, reason="test", requested_by="operator", **kw
        )

    async def later(self, seconds: float) -> None:
        """Advance the command clock and run the timers."""
        self.clock.advance(seconds)
        await self.service.tick()
        await self.service.settle()


@pytest.fixture
async def line(town: City, town_file: Path, tmp_path: Path) -> AsyncIterator[Line]:
    """A running platform with MQTT on a fresh topic root, and the simulated lamps."""
    require_service("Mosquitto", HOST, PORT)
    shutil.copy(town_file, tmp_path / "city.db")
    root = f"cptest-cmd-{uuid.uuid4().hex[:10]}"
    settings = Settings(data_dir=tmp_path, mqtt_url=URL, mqtt_topic_root=root)
    clock = Clock(time.time())
    async with running_city(settings) as city:
        city.commands.clock = clock
        sim = Simulator(town, 7, time.time() - 600, types=("Streetlight",))
        line = Line(city, sim, root, clock)
        try:
            yield line
        finally:
            await line.stop()


def lamp_of(town: City, k: int = 0) -> str:
    """The k-th working streetlight."""
    return [d["id"] for d in town.of_type("Streetlight") if d["status"]["value"] == "ok"][k]


async def test_acknowledged_then_confirmed_by_the_lamps_later_report(line: Line, town: City):
    await line.start_gateway()
    await line.report()
    cmd = await line.submit(lamp_of(town), "setDimming", {"level": 30})
    cmd = await line.until(cmd.id, lambda c: c.state == "acknowledged")
    assert cmd.channel == "mqtt"
    await line.report()
    cmd = await line.until(cmd.id, lambda c: c.state == "confirmed")
    assert cmd.last_reported == {"illuminanceLevel": 0.3}


async def test_rejected_by_a_defective_lamp(line: Line, town: City):
    await line.start_gateway()
    lamp = lamp_of(town, 1)
    line.sim.device(lamp).fault = "defectiveLamp"
    cmd = await line.submit(lamp, "switch", {"state": "on"})
    cmd = await line.until(cmd.id, lambda c: c.state == "rejected")
    assert cmd.answer == "the lamp is defectiveLamp"


async def test_timed_out_when_the_lamp_keeps_reporting_dark(line: Line, town: City):
    await line.start_gateway()
    lamp = lamp_of(town, 2)
    line.sim.device(lamp).cabinet.fault_until = math.inf
    cmd = await line.submit(lamp, "setDimming", {"level": 80})
    await line.until(cmd.id, lambda c: c.state == "acknowledged")
    await line.report()
    await line.until(cmd.id, lambda c: c.last_reported == {"illuminanceLevel": 0.0})
    await line.later(121)
    cmd = await line.service.get(cmd.id)
    assert cmd.state == "timed_out" and cmd.diverged


async def test_resent_when_the_first_send_found_no_device(line: Line, town: City):
    cmd = await line.submit(lamp_of(town, 3), "switch", {"state": "off"})
    await line.until(cmd.id, lambda c: c.state == "sent")  # nobody listens yet: lost
    await line.start_gateway()
    await line.later(10)  # no ack in time: sent again
    cmd = await line.until(cmd.id, lambda c: c.state == "acknowledged")
    assert cmd.attempts == 2


async def test_superseded_by_a_newer_command_and_idempotent(line: Line, town: City):
    await line.start_gateway()
    lamp = lamp_of(town, 4)
    first = await line.submit(lamp, "setDimming", {"level": 10}, idempotency_key="a")
    again = await line.submit(lamp, "setDimming", {"level": 10}, idempotency_key="a")
    assert again.id == first.id
    second = await line.submit(lamp, "switch", {"state": "on"})
    await line.until(first.id, lambda c: c.state == "superseded")
    await line.until(second.id, lambda c: c.state == "acknowledged")
    await line.report()
    await line.until(second.id, lambda c: c.state == "confirmed")
    _, total = await line.service.list(entity_id=lamp)
    assert total == 2


async def test_an_ack_for_a_command_never_sent_is_a_dead_letter(line: Line, town: City):
    topic = f"{line.root}/Streetlight/000001/cmd/ack"
    async with aiomqtt.Client(HOST, PORT) as client:
        payload = orjson.dumps({"id": "cmd-forged", "status": "accepted"})
        await client.publish(topic, payload, qos=1)
        await client.publish(topic, b"not json", qos=1)
    store = line.city.broker.store
    deadline = time.monotonic() + BOUND_S
    while (await store.list_dead_letters(10, 0))[1] < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    letters, _ = await store.list_dead_letters(10, 0)
    reasons = " | ".join(d.reason for d in letters)
    assert "'cmd-forged', which was never sent to urn:ngsi-ld:Streetlight:000001" in reasons
    assert "ack is not valid JSON" in reasons
    assert all(d.source == f"mqtt:{topic}" for d in letters)
