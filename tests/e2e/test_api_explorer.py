"""The API explorer at /docs renders in a real browser that may reach only the server."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Route, expect

from tests.conftest import Server
from tests.e2e.conftest import TIMEOUT_MS

pytestmark = pytest.mark.e2e


def test_the_explorer_shows_every_operation_offline(server: Server, browser) -> None:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    origin = urlsplit(server.url).netloc

    def loopback_only(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.netloc == origin:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", loopback_only)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server.url + "/docs")
        expect(page.locator(".opblock").first).to_be_visible(timeout=TIMEOUT_MS)
        operations = sum(
            len(ops)
            for ops in page.request.get(server.url + "/openapi.json").json()["paths"].values()
        )
        expect(page.locator(".opblock")).to_have_count(operations, timeout=TIMEOUT_MS)
        expect(page.get_by_text("/api/v1/types/{name}/versions")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.locator("button.authorize")).to_be_visible(
            timeout=TIMEOUT_MS
        )  # the security schemes
    finally:
        context.close()
    assert not errors, errors
    assert not outside, f"the explorer reached outside the server: {outside}"
