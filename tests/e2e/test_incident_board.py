"""The incident board in Chromium: an operator reports an incident on the map, dispatches
the nearest unit by road, follows it (route on the map, timeline) and resolves it; an
incident opened elsewhere (the API, a rule, the 311 desk) appears by itself."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import OPERATOR, VIEWER
from tests.e2e import city
from tests.e2e.conftest import ConsoleServer, login

pytestmark = pytest.mark.e2e


def _drawn(page: Page) -> dict[str, int]:
    return page.evaluate("() => window.__citypilot.incidents().drawn")


def test_report_dispatch_follow_and_resolve_an_incident(page: Page) -> None:
    login(page, OPERATOR)
    expect(page.get_by_test_id("incident-board")).to_contain_text("No open incident")
    page.get_by_test_id("incident-report").click()
    report = page.get_by_test_id("report-panel")
    expect(report).to_be_visible()
    expect(page.get_by_test_id("report-submit")).to_be_disabled()
    # The incident happens where the operator clicks: at the defective lamp.
    point = page.evaluate("id => window.__citypilot.screenPoint(id)", city.LAMP)
    page.mouse.click(point["x"], point["y"])
    expect(page.get_by_test_id("report-where")).to_contain_text("At 47.")
    page.get_by_test_id("report-type").select_option("fire")
    page.get_by_test_id("report-severity").select_option("major")
    page.get_by_test_id("report-description").fill("Smoke from a shop front")
    page.get_by_test_id("report-submit").click()

    panel = page.get_by_test_id("incident-panel")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("incident-title")).to_have_text("fire")
    expect(page.get_by_test_id("incident-status")).to_have_attribute("data-status", "reported")
    expect(panel).to_contain_text("Smoke from a shop front")
    items = page.get_by_test_id("incident-item")
    expect(items).to_have_count(1)
    incident_id = items.first.get_attribute("data-id")
    page.wait_for_function("() => window.__citypilot.incidents().drawn.incidents === 1")

    # The nearest units by road; the first is ticked; dispatch it.
    page.get_by_test_id("incident-recommend").click()
    candidates = page.get_by_test_id("incident-candidates").locator("li")
    expect(candidates.first).to_contain_text(" s · ")
    unit = candidates.first.get_attribute("data-id")
    page.get_by_test_id("incident-dispatch").click()
    expect(page.get_by_test_id("incident-status")).to_have_attribute("data-status", "dispatched")
    expect(page.get_by_test_id("incident-units").locator(f"li[data-id='{unit}']")).to_be_visible()
    timeline = page.get_by_test_id("incident-timeline")
    expect(timeline.locator("li[data-action=dispatched]")).to_have_count(1)
    # The unit's road route is drawn on the map while the incident is open.
    page.wait_for_function("() => window.__citypilot.incidents().drawn.routes === 1")
    assert page.evaluate("() => window.__citypilot.incidents().open") == incident_id
    expect(items.first).to_have_attribute("data-status", "dispatched")

    page.get_by_test_id("incident-to-resolved").click()
    expect(page.get_by_test_id("incident-status")).to_have_attribute("data-status", "resolved")
    expect(timeline.locator("li[data-action=status]")).to_have_count(1)
    # Resolved incidents leave the map but stay on the board until closed.
    page.wait_for_function("() => window.__citypilot.incidents().drawn.incidents === 0")
    page.get_by_test_id("incident-to-closed").click()
    expect(page.get_by_test_id("incident-status")).to_have_attribute("data-status", "closed")
    expect(items).to_have_count(0)
    page.get_by_test_id("dock-close").click()
    page.wait_for_function("() => window.__citypilot.incidents().drawn.routes === 0")


def test_an_incident_opened_elsewhere_appears_live_and_a_viewer_cannot_act(
    page: Page, console_server: ConsoleServer
) -> None:
    login(page, VIEWER)
    expect(page.get_by_test_id("incident-report")).to_have_count(0)
    lon, lat = city.BBOX[0] + 0.03, city.BBOX[1] + 0.01
    r = httpx.post(
        f"{console_server.url}/api/v1/incidents",
        json={
            "type": "roadAccident",
            "severity": "critical",
            "location": {"type": "Point", "coordinates": [lon, lat]},
        },
        headers={"Authorization": f"Bearer {console_server.token(OPERATOR)}"},
    )
    assert r.status_code == 201, r.text
    item = page.locator(f"[data-testid=incident-item][data-id='{r.json()['id']}']")
    expect(item).to_be_visible()
    item.click()
    expect(page.get_by_test_id("incident-title")).to_have_text("road accident")
    expect(page.get_by_test_id("incident-actions")).to_have_count(0)
    expect(page.get_by_test_id("incident-timeline").locator("li")).to_have_count(1)
