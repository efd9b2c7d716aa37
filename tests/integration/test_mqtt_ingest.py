"""MQTT device ingest against the real Mosquitto broker and a real CityPilot server.

Each run uses its own topic root, so parallel runs on one broker do not collide,
and removes its persistent broker session at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import httpx
import orjson
import pytest

from citypilot.bench.server import server_process
from citypilot.ingest.mqtt import client_id_for
from citypilot.model.ids import entity_id
from tests.conftest import OPERATOR, require_service, seed_accounts

pytestmark = pytest.mark.mqtt

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
DEADLINE_S = 30.0
T = TypeVar("T")


class MqttCity:
    """A running server with MQTT ingest on its own topic root."""

    def __init__(self, data_dir: Path, root: str) -> None:
        self.data_dir = data_dir
        self.root = root
        self.env = {
            "CITYPILOT_MQTT_URL": f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
            "CITYPILOT_MQTT_TOPIC_ROOT": root,
        }
        self.url = ""

    def http(self) -> httpx.AsyncClient:
        """An async HTTP client logged in as the operator."""
        r = httpx.post(
            self.url + "/api/v1/auth/token",
            data={"username": OPERATOR[0], "password": OPERATOR[1]},
        )
        r.raise_for_status()
        token = r.json()["access_token"]
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


class FlakyLink:
    """A TCP proxy to the broker that can cut its connections and refuse new ones.

    It runs its own event loop in a thread, so it keeps working while the test
    blocks (for instance while a server starts).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> None:
        """Listen on a free port (then on the same port after :meth:`restore`)."""
        if not self.thread.is_alive():
            self.thread.start()
        self._server = self._run(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(MQTT_HOST, MQTT_PORT)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        """Stop listening (connections are refused) and abort every open connection."""

        async def cut() -> None:
            assert self._server is not None
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            self._writers.clear()

        self._run(cut())

    def restore(self) -> None:
        """Accept connections again."""
        self.start()

    def close(self) -> None:
        """Cut everything and stop the thread."""
        with contextlib.suppress(Exception):
            self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def drop_session(root: str) -> None:
    """Remove the adapter's persistent session from the broker."""
    async with aiomqtt.Client(
        MQTT_HOST, MQTT_PORT, identifier=client_id_for(root), clean_session=True
    ):
        pass


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttCity]:
    """A server subscribed to a topic root unique to this run."""
    require_service("MQTT broker", MQTT_HOST, MQTT_PORT)
    data = tmp_path_factory.mktemp("mqtt-data")
    asyncio.run(seed_accounts(data))
    mc = MqttCity(data, f"citypilot-test-{uuid.uuid4().hex[:12]}")
    try:
        with server_process(data, extra_env=mc.env) as url:
            mc.url = url
            yield mc
    finally:
        asyncio.run(drop_session(mc.root))


async def poll(fetch: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Call ``fetch`` until it returns something other than None, or fail at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = await fetch()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {DEADLINE_S:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def create_streetlight(http: httpx.AsyncClient, local_id: str) -> str:
    """Create a Streetlight through the NGSI-LD API; return its id."""
    eid = entity_id("Streetlight", local_id)
    r = await http.post(
        "/ngsi-ld/v1/entities",
        json={
            "id": eid,
            "type": "Streetlight",
            "powerState": {"type": "Property", "value": "on"},
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [2.35, 48.85]},
            },
        },
    )
    assert r.status_code == 201, r.text
    return eid


async def publish(*messages: tuple[str, Any]) -> None:
    """Publish (topic, payload) pairs at QoS 1; dicts and lists are sent as JSON."""
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT) as client:
        for topic, payload in messages:
            if not isinstance(payload, bytes | str):
                payload = orjson.dumps(payload)
            await client.publish(topic, payload, qos=1)


async def state(http: httpx.AsyncClient, eid: str) -> dict[str, Any]:
    """The entity's current state, concise."""
    r = await http.get(f"/ngsi-ld/v1/entities/{eid}", params={"options": "keyValues"})
    assert r.status_code == 200, r.text
    return r.json()


async def history(http: httpx.AsyncClient, eid: str, attr: str) -> list[list[Any]]:
    """The ``[[instant, value], ...]`` history of one attribute."""
    r = await http.get(f"/api/v1/history/{eid}", params={"attrs": attr})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return r.json()["attrs"].get(attr, [])


async def dead_letter(http: httpx.AsyncClient, source: str) -> dict[str, Any] | None:
    """The newest dead letter from ``source``, if any."""
    r = await http.get("/api/v1/dead-letters", params={"limit": 1000})
    assert r.status_code == 200, r.text
    for item in r.json()["items"]:
        if item["source"] == source:
            return item
    return None


async def test_device_topic_updates_state_and_history(city: MqttCity) -> None:
    """Observations on <root>/<Type>/<local-id>/attrs reach state and history; newest wins."""
    async with city.http() as http:
        local = f"mqtt-{uuid.uuid4().hex[:8]}"
        eid = await create_streetlight(http, local)
        topic = f"{city.root}/Streetlight/{local}/attrs"
        await publish(
            (topic, {"observedAt": "2026-01-10T10:00:00Z", "attrs": {"powerConsumption": 10}}),
            (topic, {"observedAt": "2026-01-10T10:02:00Z", "attrs": {"powerConsumption": 41.5}}),
            # late and older: kept in history, does not overwrite the state
            (topic, {"observedAt": "2026-01-10T10:01:00Z", "attrs": {"powerConsumption": 20}}),
        )

        async def three_points() -> list[list[Any]] | None:
            points = await history(http, eid, "powerConsumption")
            return points if len(points) >= 3 else None

        points = await poll(three_points, f"3 history points of {eid}")
        assert sorted(v for _, v in points) == [10, 20, 41.5]
        current = await state(http, eid)
        assert current["powerConsumption"] == 41.5
        assert current["powerState"] == "on"


async def test_refused_messages_become_dead_letters(city: MqttCity) -> None:
    """Bad JSON, out-of-range values, bad topics and bad ids are kept with their reason."""
    async with city.http() as http:
        local = f"mqtt-{uuid.uuid4().hex[:8]}"
        eid = await create_streetlight(http, local)
        topic = f"{city.root}/Streetlight/{local}/attrs"
        out_of_range = orjson.dumps(
            {"observedAt": "2026-01-10T11:00:00Z", "attrs": {"powerConsumption": 99999}}
        )
        bad_topic = f"{city.root}/Streetlight/{local}/telemetry"
        bad_id = f"{city.root}/Streetlight/not a valid id/attrs"
        unknown_type = f"{city.root}/NoSuchType/{local}/attrs"
        unknown_entity = f"{city.root}/Streetlight/{local}-missing/attrs"
        good = {"observedAt": "2026-01-10T11:00:01Z", "attrs": {"powerConsumption": 7}}
        await publish(
            (topic, b"{not json"),
            (topic, out_of_range),
            (bad_topic, orjson.dumps(good)),
            (bad_id, orjson.dumps(good)),
            (unknown_type, orjson.dumps(good)),
            (unknown_entity, orjson.dumps(good)),
        )

        # All refused messages of the device topic share its source; wait for both.
        async def both() -> list[dict[str, Any]] | None:
            r = await http.get("/api/v1/dead-letters", params={"limit": 1000})
            mine = [d for d in r.json()["items"] if d["source"] == f"mqtt:{topic}"]
            return mine if len(mine) >= 2 else None

        letters = {d["payload"]: d for d in await poll(both, f"dead letters of {topic}")}
        assert "not valid JSON" in letters["{not json"]["reason"]
        range_letter = letters[out_of_range.decode()]
        assert "outside the range" in range_letter["reason"]
        assert range_letter["field"] == "payload.attrs.powerConsumption"

        for source, words in (
            (bad_topic, "fits neither"),
            (bad_id, "not an entity URN"),
            (unknown_type, "not registered"),
        ):
            letter = await poll(lambda s=source: dead_letter(http, f"mqtt:{s}"), source)
            assert words in letter["reason"]
            assert letter["field"] == "topic"
            assert orjson.loads(letter["payload"]) == good

        # The broker finds unknown entities; the reason names the entity.
        async def missing() -> dict[str, Any] | None:
            r = await http.get("/api/v1/dead-letters", params={"limit": 1000})
            for d in r.json()["items"]:
                if f"{eid}-missing does not exist" in d["reason"]:
                    return d
            return None

        letter = await poll(missing, f"dead letter for {eid}-missing")
        assert letter["source"].startswith(f"mqtt:{city.root}/")
        assert orjson.loads(letter["payload"]) == good

        # nothing of it reached the entity
        assert await history(http, eid, "powerConsumption") == []
        assert "powerConsumption" not in await state(http, eid)


async def test_batch_topic_json_array_and_ndjson(city: MqttCity) -> None:
    """Gateways publish full compact observations to <root>/batch, as an array or NDJSON."""
    async with city.http() as http:
        ids = [await create_streetlight(http, f"gw-{uuid.uuid4().hex[:8]}") for _ in range(3)]
        batch_topic = f"{city.root}/batch"
        array = [
            {
                "id": eid,
                "type": "Streetlight",
                "observedAt": "2026-01-10T12:00:00Z",
                "attrs": {"powerConsumption": 100 + i, "powerState": "low"},
            }
            for i, eid in enumerate(ids[:2])
        ]
        refused = {
            "id": ids[2],
            "type": "Streetlight",
            "observedAt": "2026-01-10T12:00:00Z",
            "attrs": {"powerState": "exploded"},
        }
        accepted = {
            "id": ids[2],
            "type": "Streetlight",
            "observedAt": "2026-01-10T12:00:05Z",
            "attrs": {"illuminanceLevel": 0.5},
        }
        ndjson = b"\n".join(orjson.dumps(d) for d in (refused, accepted)) + b"\n"
        await publish((batch_topic, array), (batch_topic, ndjson))

        async def updated(eid: str, attr: str) -> dict[str, Any] | None:
            current = await state(http, eid)
            return current if attr in current else None

        for i, eid in enumerate(ids[:2]):
            current = await poll(lambda e=eid: updated(e, "powerConsumption"), eid)
            assert current["powerConsumption"] == 100 + i
            assert current["powerState"] == "low"
        current = await poll(lambda: updated(ids[2], "illuminanceLevel"), ids[2])
        assert current["illuminanceLevel"] == 0.5
        assert current["powerState"] == "on"

        letter = await poll(lambda: dead_letter(http, f"mqtt:{batch_topic}"), batch_topic)
        assert "is not one of" in letter["reason"]
        assert orjson.loads(letter["payload"]) == refused


async def test_session_survives_a_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    """QoS 1 messages sent while the server is down arrive after it restarts; a retained
    message is not replayed into history when the adapter resumes its session."""
    require_service("MQTT broker", MQTT_HOST, MQTT_PORT)
    data = tmp_path_factory.mktemp("mqtt-restart")
    await seed_accounts(data)
    mc = MqttCity(data, f"citypilot-test-{uuid.uuid4().hex[:12]}")
    local = "restart-1"
    eid = entity_id("Streetlight", local)
    topic = f"{mc.root}/Streetlight/{local}/attrs"

    def reading(minute: int, value: float) -> bytes:
        return orjson.dumps(
            {"observedAt": f"2026-01-10T13:{minute:02d}:00Z", "attrs": {"powerConsumption": value}}
        )

    async def points_until(http: httpx.AsyncClient, value: float) -> list[Any]:
        async def seen() -> list[Any] | None:
            values = [v for _, v in await history(http, eid, "powerConsumption")]
            return values if value in values else None

        return await poll(seen, f"{value} in the history of {eid}")

    try:
        with server_process(data, extra_env=mc.env) as url:
            mc.url = url
            async with mc.http() as http:
                await create_streetlight(http, local)
                async with aiomqtt.Client(MQTT_HOST, MQTT_PORT) as client:
                    await client.publish(topic, reading(0, 1), qos=1, retain=True)
                assert await points_until(http, 1) == [1]
        # the server is down now; the broker queues for its session
        await publish((topic, reading(1, 2)))
        with server_process(data, extra_env=mc.env) as url:
            mc.url = url
            async with mc.http() as http:
                assert sorted(await points_until(http, 2)) == [1, 2]
                # messages of a session arrive in order: once this one is in,
                # a replay of the retained message would be too
                await publish((topic, reading(2, 3)))
                assert sorted(await points_until(http, 3)) == [1, 2, 3]
    finally:
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT) as client:
            await client.publish(topic, b"", qos=1, retain=True)  # clear the retained message
        await drop_session(mc.root)


async def test_reconnects_after_the_broker_goes_away(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """When the link to the broker breaks the server keeps serving, reconnects with
    back-off, and receives what was published meanwhile."""
    require_service("MQTT broker", MQTT_HOST, MQTT_PORT)
    data = tmp_path_factory.mktemp("mqtt-flaky")
    await seed_accounts(data)
    link = FlakyLink()
    link.start()
    root = f"citypilot-test-{uuid.uuid4().hex[:12]}"
    env = {"CITYPILOT_MQTT_URL": f"mqtt://127.0.0.1:{link.port}", "CITYPILOT_MQTT_TOPIC_ROOT": root}
    mc = MqttCity(data, root)
    topic = f"{root}/Streetlight/flaky-1/attrs"
    eid = entity_id("Streetlight", "flaky-1")

    def reading(minute: int, value: float) -> bytes:
        return orjson.dumps(
            {"observedAt": f"2026-01-10T14:{minute:02d}:00Z", "attrs": {"powerConsumption": value}}
        )

    try:
        with server_process(data, extra_env=env) as url:
            mc.url = url
            async with mc.http() as http:
                await create_streetlight(http, "flaky-1")

                async def has(value: float) -> bool | None:
                    values = [v for _, v in await history(http, eid, "powerConsumption")]
                    return True if value in values else None

                await publish((topic, reading(0, 1)))
                await poll(lambda: has(1), "the reading before the cut")

                link.cut()
                await publish((topic, reading(1, 2)))  # queued by the broker for the session
                r = await http.get("/api/v1/health")
                assert r.status_code == 200
                await poll(lambda: _down(http, ["mqtt"]), "health naming MQTT as down")
                link.restore()
                await poll(lambda: has(2), "the reading published while cut off")
    finally:
        link.close()
        await drop_session(root)


@pytest.mark.slow
async def test_no_acknowledged_message_is_lost_to_kill_9(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Messages are acknowledged to the broker only once stored: after kill -9 in the middle
    of a burst, the broker delivers the unacknowledged ones again and all arrive."""
    import os
    import signal
    import subprocess
    import sys

    from citypilot.bench.server import free_port

    require_service("MQTT broker", MQTT_HOST, MQTT_PORT)
    data = tmp_path_factory.mktemp("mqtt-kill")
    await seed_accounts(data)
    mc = MqttCity(data, f"citypilot-test-{uuid.uuid4().hex[:12]}")
    local, count = "burst-1", 3000
    eid = entity_id("Streetlight", local)
    topic = f"{mc.root}/Streetlight/{local}/attrs"
    port = free_port()
    env = {
        **os.environ,
        **mc.env,
        "CITYPILOT_DATA_DIR": str(data),
        "CITYPILOT_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "citypilot.cli", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        mc.url = f"http://127.0.0.1:{port}"
        await poll(_healthy(mc.url), "the first server")
        async with mc.http() as http:
            await create_streetlight(http, local)
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT) as client:
            for i in range(count):
                body = {
                    "observedAt": f"2026-01-10T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                    "attrs": {"powerConsumption": i % 500},
                }
                await client.publish(topic, orjson.dumps(body), qos=1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        with server_process(data, extra_env=mc.env) as url:
            mc.url = url
            async with mc.http() as http:

                async def all_there() -> int | None:
                    n = len(await history(http, eid, "powerConsumption"))
                    return n if n == count else None

                assert await poll(all_there, f"all {count} readings after kill -9") == count
    finally:
        await drop_session(mc.root)


async def _down(http: httpx.AsyncClient, names: list[str]) -> bool | None:
    """Whether health names exactly ``names`` as down (None: not yet)."""
    return True if (await http.get("/api/v1/health")).json()["down"] == names else None


def _healthy(url: str) -> Callable[[], Awaitable[bool | None]]:
    async def check() -> bool | None:
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(url + "/api/v1/health")).status_code == 200 or None
        except httpx.HTTPError:
            return None

    return check
