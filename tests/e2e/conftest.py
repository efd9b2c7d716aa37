"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and a real
CityPilot server (embedded store) seeded with a small city, that a test may restart.

Chromium is looked for at ``/usr/bin/chromium`` (or ``CITYPILOT_CHROMIUM``); without it, or
without the console build (``citypilot/console/dist``), the tests are skipped with the
reason — or fail under ``CITYPILOT_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from citypilot.bench.server import free_port
from citypilot.console.bench import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import DEVICE_KEY, OPERATOR, REQUIRE_SERVICES, seed_accounts
from tests.e2e import city

DIST = Path(__file__).resolve().parents[2] / "citypilot" / "console" / "dist"
VIEWPORT = {"width": 1600, "height": 900}
#: Longest wait for anything the console should do (ms).
TIMEOUT_MS = 15_000
# assertions too wait that long (Playwright's own default is 5 s, which the parallel
# suite's load can exceed): a passing assertion returns as soon as it holds
expect.set_options(timeout=TIMEOUT_MS)


def _need(ok: bool, message: str) -> None:
    if ok:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and CITYPILOT_REQUIRE_SERVICES=1")
    pytest.skip(message)


class ConsoleServer:
    """``citypilot serve`` on a fixed port and data dir, so it can be stopped and started."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it answers."""
        env = {
            **os.environ,
            "CITYPILOT_DATA_DIR": str(self.data_dir),
            "CITYPILOT_LOG_LEVEL": "warning",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citypilot.cli", "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def token(self, who: tuple[str, str]) -> str:
        """A bearer token for one of the test people."""
        r = httpx.post(
            self.url + "/api/v1/auth/token", data={"username": who[0], "password": who[1]}
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def device(self) -> httpx.Client:
        """An HTTP client holding the test device key."""
        return httpx.Client(base_url=self.url, headers={"X-Device-Key": DEVICE_KEY}, timeout=30)


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """A server holding the small city (see tests/e2e/city.py), its console built."""
    _need(
        DIST.joinpath("index.html").is_file(),
        f"the console is not built ({DIST}); run scripts/setup.sh",
    )
    data = tmp_path_factory.mktemp("console-data")
    # Playwright's sync API may run an event loop in this thread: seed from another one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed_accounts(data)).result()
    city.write_layers(data)
    city.write_graph(data)
    server = ConsoleServer(data, free_port())
    server.start()
    try:
        city.seed(server.url, server.token(OPERATOR), DEVICE_KEY)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, through Playwright (never a downloaded browser).

    Module-scoped on purpose: Playwright's sync API keeps an event loop running in this
    thread while it is open, which would break asyncio in the test modules after this one.
    """
    _need(Path(CHROMIUM).is_file(), f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(console_server: ConsoleServer, browser) -> Iterator[object]:
    """A fresh browser tab (own storage) on the console; fails the test on page errors."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="Europe/Paris")
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    # Nothing may be fetched from outside CityPilot.
    outside: list[str] = []
    tab.on(
        "request",
        lambda req: (
            outside.append(req.url)
            if not req.url.startswith((console_server.url, "data:", "blob:"))
            else None
        ),
    )
    tab.goto(console_server.url + "/")
    yield tab
    context.close()
    assert not errors, f"errors in the page: {errors}"
    assert not outside, f"requests outside CityPilot: {outside}"


def login(page, who: tuple[str, str]) -> None:
    """Sign in through the form and wait for the first complete map render."""
    page.get_by_test_id("login-username").fill(who[0])
    page.get_by_test_id("login-password").fill(who[1])
    page.get_by_test_id("login-submit").click()
    page.wait_for_function("() => window.__citypilot && window.__citypilot.ready")
