"""City modes in the real browser: the operational level in the header, entering and
leaving the health-emergency mode with a reason and a confirmation, the readers'
own reports confirming it both ways."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ADMIN, DEVICE_KEY, OPERATOR, VIEWER
from tests.e2e import city
from tests.e2e.conftest import ConsoleServer, login
from tests.e2e.lamp_device import mode_devices

pytestmark = pytest.mark.e2e
MODE = "health-emergency"
DEVICE_TYPES = ("AccessPoint", "Bus", "TrafficSignal")
READERS = [f"urn:ngsi-ld:AccessPoint:{n:04d}" for n in range(1, city.COUNTS["AccessPoint"] + 1)]
BOUND_S = 30.0


@pytest.fixture
def devices(console_server: ConsoleServer) -> Iterator[None]:
    """The city's readers, buses and signals answer commands through one HTTP callback."""
    admin = {"Authorization": f"Bearer {console_server.token(ADMIN)}"}
    with mode_devices(console_server.url, DEVICE_KEY) as url:
        for type_name in DEVICE_TYPES:
            r = httpx.put(
                f"{console_server.url}/api/v1/commands/endpoints/{type_name}",
                json={"url": url},
                headers=admin,
            )
            assert r.status_code == 200, r.text
        yield
        for type_name in DEVICE_TYPES:
            httpx.delete(
                f"{console_server.url}/api/v1/commands/endpoints/{type_name}", headers=admin
            )


def _badges(server: ConsoleServer, enabled: bool) -> None:
    """Wait (bounded) until every reader reports badges enabled or disabled."""
    headers = {"Authorization": f"Bearer {server.token(OPERATOR)}"}
    deadline = time.monotonic() + BOUND_S
    while True:
        states = [
            httpx.get(f"{server.url}/ngsi-ld/v1/entities/{r}", headers=headers).json()[
                "badgesEnabled"
            ]["value"]
            for r in READERS
        ]
        if states == [enabled] * len(READERS):
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.1)


def test_enter_and_leave_the_health_emergency_mode(
    page: Page, console_server: ConsoleServer, devices: None
) -> None:
    login(page, OPERATOR)
    level = page.get_by_test_id("op-level")
    expect(level).to_have_attribute("data-level", "1")
    level.click()
    expect(page.get_by_test_id("modes-panel")).to_be_visible()
    page.get_by_test_id(f"mode-enter-{MODE}").click()
    page.get_by_test_id("mode-cancel").click()  # thought better of it: nothing happens
    expect(level).to_have_attribute("data-level", "1")
    page.get_by_test_id(f"mode-enter-{MODE}").click()
    page.get_by_test_id("mode-reason").fill("epidemic drill")
    page.get_by_test_id("mode-confirm").click()
    expect(level).to_have_attribute("data-level", "4")
    expect(level).to_contain_text("alert")
    expect(page.get_by_test_id(f"mode-chip-{MODE}")).to_be_visible()
    progress = page.get_by_test_id(f"mode-progress-{MODE}")
    # every device confirms through its own next report: bounded like the badges below
    expect(progress).to_have_attribute("data-done", "true", timeout=BOUND_S * 1000)
    expect(progress).not_to_contain_text("not confirmed")
    _badges(console_server, enabled=False)
    page.get_by_test_id(f"mode-leave-{MODE}").click()
    page.get_by_test_id("mode-reason").fill("drill over")
    page.get_by_test_id("mode-confirm").click()
    expect(level).to_have_attribute("data-level", "1")
    expect(page.get_by_test_id(f"mode-chip-{MODE}")).to_have_count(0)
    expect(page.get_by_test_id(f"mode-{MODE}")).to_have_attribute("data-active", "false")
    _badges(console_server, enabled=True)


def test_a_viewer_sees_the_level_but_cannot_enter_a_mode(page: Page) -> None:
    login(page, VIEWER)
    page.get_by_test_id("op-level").click()
    expect(page.get_by_test_id(f"mode-{MODE}")).to_be_visible()
    expect(page.get_by_test_id(f"mode-enter-{MODE}")).to_have_count(0)
