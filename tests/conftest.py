"""Shared fixtures: real services (skipped with a reason, or failing under
CITYPILOT_REQUIRE_SERVICES=1), and a real CityPilot server over HTTP."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from citypilot.bench.server import server_process

REQUIRE_SERVICES = os.environ.get("CITYPILOT_REQUIRE_SERVICES") == "1"
ADMIN = ("admin", "admin-password")
OPERATOR = ("operator", "operator-password")
VIEWER = ("viewer", "viewer-password")
DEVICE_KEY = "cpd_test_device_key_0123456789"


def stream_protocols(token: str) -> list[str]:
    """The WebSocket subprotocols that carry a bearer token to /api/v1/stream."""
    return ["citypilot.stream", f"bearer.{token}"]


def service_available(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip the test when the service is down, or fail under CITYPILOT_REQUIRE_SERVICES=1."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and CITYPILOT_REQUIRE_SERVICES=1")
    pytest.skip(message)


async def seed_accounts(data_dir: Path) -> None:
    """Create the test people and device key in a fresh embedded store."""
    from citypilot.store.sqlite import SQLiteStore

    store = SQLiteStore(data_dir / "city.db")
    await store.open()
    await seed_logins(store)
    await store.close()


async def seed_logins(store: Any) -> None:
    """Create the test people and device key in an open store."""
    from citypilot.security.provision import add_logins
    from citypilot.security.scopes import Grant

    people = [(*ADMIN, "admin"), (*OPERATOR, "operator"), (*VIEWER, "viewer")]
    await add_logins(store, people, [("test-gateway", DEVICE_KEY)])
    # the admin and the operator work for the whole metropole, police included
    for name, role in ((ADMIN[0], "admin"), (OPERATOR[0], "operator")):
        account = await store.get_account(name)
        account.grants = (Grant(role), Grant(role, department="police"))
        await store.put_account(account)


class Server:
    """A running CityPilot server and authenticated clients for it."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.data_dir = data_dir
        self._tokens: dict[str, tuple[str, float]] = {}

    def token(self, who: tuple[str, str]) -> str:
        """A bearer token for one of the test people (a new one when it nears its end:
        access tokens live 15 minutes, a test session longer)."""
        cached = self._tokens.get(who[0])
        if cached is None or cached[1] < time.time() + 60:
            r = httpx.post(
                self.url + "/api/v1/auth/token", data={"username": who[0], "password": who[1]}
            )
            r.raise_for_status()
            answer = r.json()
            cached = self._tokens[who[0]] = (
                answer["access_token"],
                time.time() + answer["expires_in"],
            )
        return cached[0]

    def client(self, who: tuple[str, str] | None = OPERATOR) -> httpx.Client:
        """An HTTP client, logged in as ``who`` (None: anonymous)."""
        headers = {} if who is None else {"Authorization": f"Bearer {self.token(who)}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def device(self) -> httpx.Client:
        """An HTTP client holding the test device key."""
        return httpx.Client(base_url=self.url, headers={"X-Device-Key": DEVICE_KEY}, timeout=30)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server (embedded store) for the API tests of the session."""
    import asyncio

    data = tmp_path_factory.mktemp("server-data")
    asyncio.run(seed_accounts(data))
    with server_process(data) as url:
        yield Server(url, data)
