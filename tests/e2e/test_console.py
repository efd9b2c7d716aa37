"""The control-room console in a real browser (Debian's Chromium through Playwright),
against a real server holding a small seeded city (tests/e2e/city.py).

The restart test stops and starts the shared server; it runs last in this module.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ADMIN, DEVICE_KEY, OPERATOR, VIEWER
from tests.e2e import city
from tests.e2e.conftest import ConsoleServer, login
from tests.e2e.lamp_device import lamp_device

pytestmark = pytest.mark.e2e


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ingest(server: ConsoleServer, *observations: dict) -> None:
    with server.device() as device:
        r = device.post("/api/v1/ingest", json=list(observations))
        assert r.status_code == 200, r.text


def test_shows_nothing_before_login(page: Page) -> None:
    expect(page.get_by_test_id("login-form")).to_be_visible()
    assert page.locator("canvas").count() == 0
    assert page.get_by_test_id("console").count() == 0
    assert page.evaluate("() => window.__citypilot === undefined")
    page.get_by_test_id("login-username").fill("operator")
    page.get_by_test_id("login-password").fill("wrong")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("wrong password")
    assert page.get_by_test_id("console").count() == 0


def _canvas_ratio(page: Page) -> float:
    """Canvas pixels per CSS pixel of the map's canvas."""
    return page.evaluate(
        "() => { const c = document.querySelector('[data-testid=map] canvas');"
        " return c.width / c.getBoundingClientRect().width; }"
    )


def test_a_software_rendered_map_draws_half_the_pixels_unless_asked_for_all(
    page: Page, console_server: ConsoleServer
) -> None:
    login(page, VIEWER)  # headless Chromium renders WebGL with SwiftShader: no GPU
    assert page.evaluate("() => window.__citypilot.mapView().pixelRatio") == 0.5
    assert _canvas_ratio(page) == pytest.approx(0.5, abs=0.01)
    page.goto(console_server.url + "/?mapQuality=full")
    page.wait_for_selector("[data-testid=login-form], [data-testid=console]")
    if page.get_by_test_id("login-form").count():
        login(page, VIEWER)
    else:
        page.wait_for_function("() => window.__citypilot && window.__citypilot.ready")
    assert page.evaluate("() => window.__citypilot.mapView().pixelRatio") == 1
    assert _canvas_ratio(page) == pytest.approx(1.0, abs=0.01)


def test_each_layer_draws_its_assets(page: Page) -> None:
    login(page, OPERATOR)
    expect(page.get_by_test_id("user-role")).to_have_text("operator")
    for silo, types in city.SILO_TYPES.items():
        expected = sum(city.COUNTS[t] for t in types)
        expect(page.get_by_test_id(f"layer-count-{silo}")).to_have_text(str(expected))
    drawn = page.evaluate(
        "types => Object.fromEntries(types.map(t => [t, window.__citypilot.renderedCount(t)]))",
        list(city.COUNTS),
    )
    assert drawn == city.COUNTS
    # A layer switched off draws nothing; on again, everything.
    page.get_by_test_id("layer-toggle-lighting").uncheck()
    page.wait_for_function("() => window.__citypilot.renderedCount('Streetlight') === 0")
    page.get_by_test_id("layer-toggle-lighting").check()
    page.wait_for_function(
        "n => window.__citypilot.renderedCount('Streetlight') === n", arg=city.COUNTS["Streetlight"]
    )
    # Key figures: the seeded alerts stand out.
    expect(page.get_by_test_id("figure-river")).to_have_attribute("data-level", "alert")
    expect(page.get_by_test_id("figure-lights")).to_contain_text("of 40")
    expect(page.get_by_test_id("figure-buses")).to_contain_text("in service")
    expect(page.get_by_test_id("figure-parking")).to_contain_text("of 20 spots")
    expect(page.get_by_test_id("figure-air")).to_contain_text("AQI 120")
    expect(page.get_by_test_id("figure-silent")).to_have_attribute("data-level", "ok")
    # The feed opens with the assets in alert (the faulty lamp, the late bus, the river).
    feed = page.get_by_test_id("feed-list")
    expect(feed.locator(f"[data-id='{city.FAULTY_LAMP}']")).to_have_count(1)
    expect(feed.locator(f"[data-id='{city.LATE_BUS}']")).to_have_count(1)
    expect(feed.locator(f"[data-id='{city.HIGH_RIVER}']")).to_have_count(1)


def test_live_update_moves_a_vehicle_and_feeds_events(
    page: Page, console_server: ConsoleServer
) -> None:
    login(page, OPERATOR)
    before = page.evaluate("id => window.__citypilot.renderedPosition(id)", city.MOVING_BUS)
    assert before is not None
    # Halfway to the centre of the city: still in view.
    centre = ((city.BBOX[0] + city.BBOX[2]) / 2, (city.BBOX[1] + city.BBOX[3]) / 2)
    target = (round((before[0] + centre[0]) / 2, 6), round((before[1] + centre[1]) / 2, 6))
    point = {"type": "Point", "coordinates": list(target)}
    lamp = "urn:ngsi-ld:Streetlight:0005"
    _ingest(
        console_server,
        {
            "id": city.MOVING_BUS,
            "type": "Bus",
            "observedAt": _now(),
            "attrs": {"location": point, "speed": 31.0},
        },
        {
            "id": lamp,
            "type": "Streetlight",
            "observedAt": _now(),
            "attrs": {"status": "brokenLantern"},
        },
    )
    # The bus is drawn at its new place (read back from the rendered map tiles).
    page.wait_for_function(
        """([id, x, y]) => {
            const p = window.__citypilot.renderedPosition(id);
            return p && Math.abs(p[0] - x) < 1e-5 && Math.abs(p[1] - y) < 1e-5;
        }""",
        arg=[city.MOVING_BUS, *target],
    )
    # ... and the console marks the change as on screen (stamped by the frame after it).
    page.wait_for_function(
        "id => window.__citypilot.appliedAt([id])[0] !== null", arg=city.MOVING_BUS
    )
    # The lamp failure reaches the feed; the filter keeps only its silo.
    item = page.get_by_test_id("feed-list").locator(f"[data-id='{lamp}']")
    expect(item).to_contain_text("brokenLantern")
    page.get_by_test_id("feed-filter").select_option("buses")
    expect(item).to_have_count(0)
    expect(page.get_by_test_id("feed-item").first).to_have_attribute("data-silo", "buses")
    page.get_by_test_id("feed-filter").select_option("lighting")
    expect(item).to_have_count(1)
    expect(page.get_by_test_id("layer-alerts-lighting")).to_contain_text("2")


def test_asset_panel_opens_with_chart_and_operator_controls(
    page: Page, console_server: ConsoleServer
) -> None:
    login(page, OPERATOR)
    point = page.evaluate("id => window.__citypilot.screenPoint(id)", city.LAMP)
    page.mouse.click(point["x"], point["y"])
    panel = page.get_by_test_id("asset-panel")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("asset-id")).to_have_text(city.LAMP)
    expect(panel).to_have_attribute("data-loaded", "true")
    expect(page.get_by_test_id("asset-name")).to_have_text("Rue Chabot 1")
    doc = next(e for e in city.entities() if e["id"] == city.LAMP)
    towns = {mid: name for mid, name, _ in city.MUNICIPALITIES}
    expected_town = towns[doc["refMunicipality"]["object"]]
    expect(page.get_by_test_id("asset-municipality")).to_have_text(expected_town)
    expect(page.get_by_test_id("asset-department")).to_have_text("lighting")
    expect(page.get_by_test_id("asset-updated")).to_contain_text("ago")
    chart = panel.locator("[data-testid=asset-chart][data-attr=powerConsumption]")
    expect(chart.locator("canvas")).to_have_count(1)
    expect(page.get_by_test_id("asset-properties")).to_contain_text("power consumption")
    # Operators get the lamp's commands; switching off is destructive: it asks first.
    page.get_by_test_id("command-switch-state").select_option("off")
    page.get_by_test_id("command-switch").click()
    expect(page.get_by_test_id("command-confirm")).to_be_visible()
    page.get_by_test_id("command-cancel").click()
    expect(page.get_by_test_id("command-confirm")).to_have_count(0)
    expect(page.get_by_test_id("command-status")).to_have_text("")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()


def _power(page: Page) -> float:
    text = page.locator("tr[data-attr=powerConsumption] td.prop-value").inner_text()
    return float(re.sub(r"[^0-9.]", "", text))


def test_dimming_a_lamp_is_confirmed_by_its_report_and_its_power_falls(
    page: Page, console_server: ConsoleServer
) -> None:
    with lamp_device(console_server.url, DEVICE_KEY) as url:
        r = httpx.put(
            f"{console_server.url}/api/v1/commands/endpoints/{city.LAMP}",
            json={"url": url},
            headers={"Authorization": f"Bearer {console_server.token(ADMIN)}"},
        )
        assert r.status_code == 200, r.text
        _ingest(
            console_server,
            {
                "id": city.LAMP,
                "type": "Streetlight",
                "observedAt": _now(),
                "attrs": {"powerConsumption": 61.0, "illuminanceLevel": 1.0, "powerState": "on"},
            },
        )
        login(page, OPERATOR)
        point = page.evaluate("id => window.__citypilot.screenPoint(id)", city.LAMP)
        page.mouse.click(point["x"], point["y"])
        expect(page.get_by_test_id("asset-panel")).to_have_attribute("data-loaded", "true")
        before = _power(page)
        page.get_by_test_id("command-setDimming-level").fill("20")
        page.get_by_test_id("command-setDimming").click()
        status = page.get_by_test_id("command-status")
        expect(status).to_have_attribute("data-state", "confirmed")
        expect(status).to_contain_text("confirmed by the device's report")
        expect(page.locator("tr[data-attr=illuminanceLevel] td.prop-value")).to_have_text("0.2")
        assert _power(page) < before / 2


def test_search_finds_assets_by_id_name_and_street(page: Page) -> None:
    login(page, OPERATOR)
    search = page.get_by_test_id("search-input")
    results = page.get_by_test_id("search-results")
    # By id.
    search.fill("urn:ngsi-ld:Camera:0002")
    expect(results.get_by_test_id("search-result").first).to_have_attribute(
        "data-id", "urn:ngsi-ld:Camera:0002"
    )
    # By name (accents and case do not matter).
    search.fill("RUE CHABOT 1")
    expect(results.locator(f"[data-id='{city.LAMP}']")).to_have_count(1)
    # By street: addresses are matched on the server, so other assets of the street come too.
    search.fill("Boulevard Carnot")
    others = results.locator("[data-testid=search-result]:not([data-id*=':Streetlight:'])")
    expect(others.first).to_be_visible()
    assert re.search(r"Boulevard Carnot", others.first.inner_text())
    # Choosing a result opens its panel.
    search.fill("urn:ngsi-ld:Camera:0002")
    search.press("Enter")
    expect(page.get_by_test_id("asset-id")).to_have_text("urn:ngsi-ld:Camera:0002")
    expect(page.get_by_test_id("asset-panel")).to_have_attribute("data-loaded", "true")


def test_the_map_is_labelled_from_the_citys_own_data_and_has_a_legend(page: Page) -> None:
    # The font is the bundled one: the page fixture fails any request leaving CityPilot.
    login(page, OPERATOR)
    labels = "layer => window.__citypilot.renderedLabels(layer)"
    page.wait_for_function(f"() => ({labels})('labels:municipalities').length === 2")
    assert page.evaluate(labels, "labels:municipalities") == ["Valmont-Est", "Valmont-Ouest"]
    assert page.evaluate(labels, "labels:river") == ["L'Aubrette"]
    # Street names from the district scale on.
    box = page.get_by_test_id("map").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(6):
        page.mouse.wheel(0, -240)
        page.wait_for_timeout(60)
    page.wait_for_function("() => window.__citypilot.mapView().zoom >= 15")
    page.wait_for_function(f"() => ({labels})('labels:roads').length >= 2")
    assert set(page.evaluate(labels, "labels:roads")) <= {*city.STREETS, "Rocade"}
    # Every symbol of the map is in the legend, the flood-prone zone included.
    legend = page.get_by_test_id("map-legend")
    for words in ("flood-prone zone", "municipality border", "tram / bus line", "asset in alert"):
        expect(legend).to_contain_text(words)


def test_a_search_hit_flies_to_the_asset_and_rings_it(page: Page) -> None:
    login(page, OPERATOR)
    start = page.evaluate("() => window.__citypilot.mapView().zoom")
    assert start < 16
    search = page.get_by_test_id("search-input")
    search.fill("RUE CHABOT 1")
    page.get_by_test_id("search-results").locator(f"[data-id='{city.LAMP}']").click()
    page.wait_for_function(
        "() => { const v = window.__citypilot.mapView(); return v.zoom >= 16.9 && !v.moving; }"
    )
    lamp = page.evaluate("id => window.__citypilot.vehiclePosition(id)", city.LAMP)
    centre = page.evaluate("() => window.__citypilot.mapView().center")
    assert abs(lamp[0] - centre[0]) < 1e-4 and abs(lamp[1] - centre[1]) < 1e-4
    assert page.evaluate("() => window.__citypilot.selected()") == city.LAMP
    page.wait_for_function("id => window.__citypilot.renderedPosition(id) !== null", arg=city.LAMP)


def test_a_river_gauge_chart_shows_its_alert_level_and_constants_are_not_charted(
    page: Page,
) -> None:
    login(page, OPERATOR)
    search = page.get_by_test_id("search-input")
    search.fill(city.HIGH_RIVER)
    search.press("Enter")
    panel = page.get_by_test_id("asset-panel")
    expect(panel).to_have_attribute("data-loaded", "true")
    level = panel.locator("[data-testid=asset-chart][data-attr=waterLevel]")
    expect(level).to_have_attribute("data-thresholds", "flood alert")
    assert panel.locator("[data-testid=asset-chart][data-attr=alertLevel]").count() == 0
    expect(page.get_by_test_id("asset-properties")).to_contain_text("alert level")


def test_viewer_sees_no_write_controls(page: Page) -> None:
    login(page, VIEWER)
    expect(page.get_by_test_id("user-role")).to_have_text("viewer")
    page.get_by_test_id("search-input").fill(city.LAMP)
    page.get_by_test_id("search-input").press("Enter")
    expect(page.get_by_test_id("asset-panel")).to_have_attribute("data-loaded", "true")
    assert page.get_by_test_id("asset-controls").count() == 0
    assert page.get_by_role("button", name=re.compile("switch|dim", re.I)).count() == 0


def test_reconnects_after_a_server_restart_and_catches_up(
    page: Page, console_server: ConsoleServer
) -> None:
    login(page, OPERATOR)
    connection = page.get_by_test_id("connection")
    expect(connection).to_have_attribute("data-state", "live")
    console_server.stop()
    expect(connection).to_have_attribute("data-state", "reconnecting")
    console_server.start()
    # Changed right after the restart: the console sees it through the stream or, if it
    # reconnects after, through the snapshots it reloads on reconnection.
    lamp = "urn:ngsi-ld:Streetlight:0003"
    bus = "urn:ngsi-ld:Bus:0003"
    target = (5.0123, 47.3211)
    _ingest(
        console_server,
        {
            "id": lamp,
            "type": "Streetlight",
            "observedAt": _now(),
            "attrs": {"status": "cabinetFault"},
        },
        {
            "id": bus,
            "type": "Bus",
            "observedAt": _now(),
            "attrs": {"location": {"type": "Point", "coordinates": list(target)}},
        },
    )
    expect(connection).to_have_attribute("data-state", "live", timeout=30_000)
    page.wait_for_function("() => window.__citypilot.connection().reconnects >= 1")
    page.wait_for_function(
        """([id, x, y]) => {
            const p = window.__citypilot.renderedPosition(id);
            return p && Math.abs(p[0] - x) < 1e-5 && Math.abs(p[1] - y) < 1e-5;
        }""",
        arg=[bus, *target],
    )
    expect(page.get_by_test_id("feed-list").locator(f"[data-id='{lamp}']")).to_contain_text(
        "cabinetFault"
    )
    page.wait_for_function("() => window.__citypilot.renderedCount('Streetlight') === 40")
