"""The console's session in a real browser: it outlives its short access token by
renewing it (the live stream connects again with the new one), and ends at once when
the account is disabled or the person signs out."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import httpx
import pytest
from playwright.sync_api import Page, expect

from citypilot.bench.server import free_port
from tests.conftest import ADMIN, seed_accounts
from tests.e2e.conftest import DIST, ConsoleServer, _need, login

pytestmark = pytest.mark.e2e
NAME, PASSWORD = "shift-lead", "Larch-quartz-sail-77"
SESSION = "() => JSON.parse(sessionStorage.getItem('citypilot.session') || 'null')"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """A server whose access tokens live one minute (the shortest allowed): the console
    renews a minute before the end, so at once, and again after each renewal."""
    _need(DIST.joinpath("index.html").is_file(), f"the console is not built ({DIST})")
    data = tmp_path_factory.mktemp("session-data")
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed_accounts(data)).result()
    server = ConsoleServer(data, free_port())
    with mock.patch.dict(os.environ, {"CITYPILOT_TOKEN_TTL_S": "60"}):
        server.start()
    with httpx.Client(base_url=server.url) as c:
        c.headers["Authorization"] = f"Bearer {server.token(ADMIN)}"
        body = {"username": NAME, "password": PASSWORD, "role": "operator"}
        assert c.post("/api/v1/users", json=body).status_code == 201
    try:
        yield server
    finally:
        server.stop()


def test_the_console_renews_its_token_and_stays_live(page: Page) -> None:
    login(page, (NAME, PASSWORD))
    first = page.evaluate(SESSION)["token"]
    # renewed about 5 s after the login, and the stream follows the new token
    page.wait_for_function(f"() => ({SESSION})().token !== {first!r}")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("login-form")).to_have_count(0)


def test_disabling_the_account_ends_the_console_session(
    page: Page, console_server: ConsoleServer
) -> None:
    login(page, (NAME, PASSWORD))
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    with httpx.Client(base_url=console_server.url) as c:
        c.headers["Authorization"] = f"Bearer {console_server.token(ADMIN)}"
        assert c.patch(f"/api/v1/users/{NAME}", json={"disabled": True}).status_code == 200
    # the stream is closed by the server; the renewal is refused; the login form returns
    expect(page.get_by_test_id("login-error")).to_contain_text("session has ended")
    with httpx.Client(base_url=console_server.url) as c:
        c.headers["Authorization"] = f"Bearer {console_server.token(ADMIN)}"
        c.patch(f"/api/v1/users/{NAME}", json={"disabled": False})


def test_signing_out_ends_the_session_on_the_server(
    page: Page, console_server: ConsoleServer
) -> None:
    login(page, (NAME, PASSWORD))
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    held = page.evaluate(SESSION)
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    # whoever kept a copy of the session's tokens can use neither
    refresh = httpx.post(
        console_server.url + "/api/v1/auth/refresh", data={"refresh_token": held["refreshToken"]}
    )
    assert refresh.status_code == 401
    me = httpx.get(
        console_server.url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {held['token']}"}
    )
    assert me.status_code == 401
