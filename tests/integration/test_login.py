"""Logins: failed attempts back off per account and per address; stream tokens travel in
a subprotocol, never in the URL; no credential reaches the server's log; ``serve`` says
where the console is and whether MQTT connected."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest
import websockets

from citypilot.bench.processes import wait_until
from citypilot.bench.server import free_port
from tests.conftest import ADMIN, VIEWER, Server, require_service, seed_accounts, stream_protocols

TOKEN = "/api/v1/auth/token"


def login(server: Server, who: tuple[str, str], address: str) -> httpx.Response:
    """A login attempt as if from ``address`` (the server trusts X-Forwarded-For from
    loopback, as behind a local reverse proxy)."""
    return httpx.post(
        server.url + TOKEN,
        data={"username": who[0], "password": who[1]},
        headers={"X-Forwarded-For": address},
    )


def test_an_account_backs_off_after_five_failures_even_for_the_right_password(server: Server):
    name = f"target-{uuid.uuid4().hex[:6]}"
    for i in range(5):
        assert login(server, (name, "guess"), f"198.51.100.{i}").status_code == 401
    refused = login(server, (name, "guess"), "198.51.100.77")
    assert refused.status_code == 429
    assert refused.json()["field"] == "username"
    assert int(refused.headers["retry-after"]) >= 1
    # the same person from elsewhere, or another person, still logs in
    assert login(server, VIEWER, "198.51.100.78").status_code == 200


def test_an_address_backs_off_after_twenty_failures_whatever_account_it_tries(server: Server):
    address = f"203.0.113.{uuid.uuid4().int % 250}"
    for i in range(20):
        assert login(server, (f"nobody-{i}", "guess"), address).status_code == 401
    refused = login(server, VIEWER, address)  # right password, wrong neighbourhood
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert login(server, VIEWER, "192.0.2.1").status_code == 200


def test_a_token_in_the_stream_url_is_refused(server: Server):
    token = server.token(VIEWER)

    async def attempt() -> dict:
        url = server.url.replace("http", "ws") + f"/api/v1/stream?token={token}"
        async with websockets.connect(url) as ws:
            return json.loads(await ws.recv())

    reply = asyncio.run(attempt())
    assert reply["type"] == "error" and reply["error"]["status"] == 401
    assert reply["error"]["field"] == "token" and "subprotocol" in reply["error"]["detail"]


def test_the_stream_answers_with_its_subprotocol_and_never_echoes_the_token(server: Server):
    async def attempt() -> tuple[str | None, dict]:
        url = server.url.replace("http", "ws") + "/api/v1/stream"
        protocols = stream_protocols(server.token(VIEWER))
        async with websockets.connect(url, subprotocols=protocols) as ws:
            return ws.subprotocol, json.loads(await ws.recv())

    chosen, hello = asyncio.run(attempt())
    assert chosen == "citypilot.stream" and hello["type"] == "hello"


@pytest.mark.mqtt
def test_serve_announces_console_and_mqtt_and_logs_no_credential(tmp_path):
    require_service("Mosquitto", "127.0.0.1", 1883)
    asyncio.run(seed_accounts(tmp_path))
    port = free_port()
    env = {
        **os.environ,
        "CITYPILOT_DATA_DIR": str(tmp_path),
        "CITYPILOT_LOG_LEVEL": "info",
        "CITYPILOT_MQTT_URL": "mqtt://127.0.0.1:1883",
        "CITYPILOT_MQTT_TOPIC_ROOT": f"t{uuid.uuid4().hex[:8]}",
    }
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "citypilot.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "MQTT:" in log.read_text(), "serve to announce itself", 60)
            token = httpx.post(
                url + TOKEN, data=dict(zip(("username", "password"), ADMIN, strict=True))
            ).json()["access_token"]

            async def streams() -> None:
                ws_url = url.replace("http", "ws") + "/api/v1/stream"
                async with websockets.connect(ws_url + f"?token={token}") as ws:
                    await ws.recv()
                async with websockets.connect(ws_url, subprotocols=stream_protocols(token)) as ws:
                    await ws.recv()

            asyncio.run(streams())
        finally:
            proc.terminate()
            proc.wait(20)
    text = log.read_text()
    assert "MQTT: connected to mqtt://127.0.0.1:1883" in text
    assert f"Console at {url}/" in text or "Console not built" in text
    assert "WebSocket /api/v1/stream" in text  # uvicorn logged the connections ...
    assert token not in text and token.split(".")[2] not in text  # ... without the token
    assert "[redacted]" in text
