"""The console's alarm list in a real browser: counts by severity, acknowledge, shelve,
and the jump to the asset on the map."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ADMIN, OPERATOR, VIEWER
from tests.e2e import city
from tests.e2e.conftest import ConsoleServer, login

pytestmark = pytest.mark.e2e


def _raise(server: ConsoleServer, entity: str, severity: str, message: str) -> dict:
    r = httpx.post(
        f"{server.url}/api/v1/alarms",
        json={"entity": entity, "severity": severity, "message": message},
        headers={"Authorization": f"Bearer {server.token(OPERATOR)}"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def _local(alarm: dict) -> str:
    return alarm["id"].rsplit(":", 1)[-1]


def test_an_operator_acknowledges_an_alarm_from_the_list(
    page: Page, console_server: ConsoleServer
) -> None:
    alarm = _raise(console_server, city.FAULTY_LAMP, "critical", "Lamp out on Rue Chabot")
    login(page, OPERATOR)
    item = page.get_by_test_id(f"alarm-{_local(alarm)}")
    expect(item).to_have_attribute("data-state", "active-unacknowledged")
    expect(item).to_contain_text("Lamp out on Rue Chabot")
    count = page.get_by_test_id("alarm-count-critical")
    assert int(count.get_attribute("data-count") or 0) >= 1
    page.get_by_test_id(f"alarm-ack-{_local(alarm)}").click()
    expect(item).to_have_attribute("data-state", "active-acknowledged")
    expect(page.get_by_test_id(f"alarm-ack-{_local(alarm)}")).to_have_count(0)
    got = httpx.get(
        f"{console_server.url}/api/v1/alarms/{alarm['id']}",
        headers={"Authorization": f"Bearer {console_server.token(OPERATOR)}"},
    ).json()
    assert got["acknowledged"]["by"] == "operator"


def test_shelving_hides_an_alarm_and_locate_opens_its_asset(
    page: Page, console_server: ConsoleServer
) -> None:
    alarm = _raise(console_server, city.LAMP, "high", "Cabinet door open")
    login(page, OPERATOR)
    local = _local(alarm)
    expect(page.get_by_test_id(f"alarm-{local}")).to_be_visible()
    page.get_by_test_id(f"alarm-locate-{local}").click()
    expect(page.get_by_test_id("asset-panel")).to_have_attribute("data-loaded", "true")
    expect(page.get_by_test_id("asset-panel")).to_contain_text(city.LAMP.rsplit(":", 1)[-1])
    page.get_by_test_id(f"alarm-shelve-for-{local}").select_option("3600")
    page.get_by_test_id(f"alarm-shelve-{local}").click()
    expect(page.get_by_test_id(f"alarm-{local}")).to_have_count(0)
    page.get_by_test_id("alarm-filter-shelved").check()
    expect(page.get_by_test_id(f"alarm-{local}")).to_contain_text("shelved")
    page.get_by_test_id(f"alarm-unshelve-{local}").click()
    page.get_by_test_id("alarm-filter-shelved").uncheck()
    expect(page.get_by_test_id(f"alarm-{local}")).to_be_visible()


def test_a_viewer_sees_alarms_but_no_acknowledge(page: Page, console_server: ConsoleServer) -> None:
    alarm = _raise(console_server, city.HIGH_RIVER, "medium", "River rising")
    login(page, VIEWER)
    expect(page.get_by_test_id(f"alarm-{_local(alarm)}")).to_be_visible()
    expect(page.get_by_test_id(f"alarm-ack-{_local(alarm)}")).to_have_count(0)
    expect(page.get_by_test_id(f"alarm-locate-{_local(alarm)}")).to_be_visible()


def test_a_failing_rule_and_the_alarm_figures_are_shown(
    page: Page, console_server: ConsoleServer
) -> None:
    admin = {"Authorization": f"Bearer {console_server.token(ADMIN)}"}
    rule = {
        "id": "e2e-broken",
        "owner": "lighting",
        "type": "Streetlight",
        "attributes": ["status"],
        "condition": "entity.lampTechnology == 'LED'",  # the seeded lamps have none
        "trigger": {"kind": "change"},
        "actions": [{"kind": "alarm", "severity": "low", "message": "m"}],
    }
    r = httpx.post(f"{console_server.url}/api/v1/rules", json=rule, headers=admin)
    assert r.status_code in (201, 409), r.text
    with console_server.device() as device:
        r = device.post(
            "/api/v1/ingest",
            json=[
                {
                    "id": city.LAMP,
                    "type": "Streetlight",
                    "observedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "attrs": {"status": "ok"},
                }
            ],
        )
        assert r.status_code == 200, r.text
    login(page, OPERATOR)
    page.get_by_test_id("open-rules").click()
    item = page.get_by_test_id("rule-e2e-broken")
    expect(item).to_be_visible()
    expect(page.get_by_test_id("rule-error-e2e-broken")).to_contain_text("lampTechnology")
    expect(page.get_by_test_id("rule-error-e2e-broken")).to_contain_text(city.LAMP)
    assert int(item.get_attribute("data-errors") or 0) >= 1
    expect(page.get_by_test_id("figure-flood")).to_contain_text("%")
    expect(page.get_by_test_id("figure-chattering")).to_be_visible()
