"""The OpenAPI description tells the truth: credentials, roles, error answers, methods;
and the API explorer at /docs loads from the server alone."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.conftest import ADMIN, Server

NGSI = "/ngsi-ld/v1"


@pytest.fixture(scope="module")
def description(server: Server) -> dict:
    with server.client(None) as anonymous:
        r = anonymous.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _operations(description: dict):
    for path, ops in description["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_every_operation_declares_its_credentials_and_role(description: dict):
    schemes = description["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["deviceKey"]["in"] == "header"
    assert schemes["deviceKey"]["name"] == "X-Device-Key"
    ops = {(m, p): op for m, p, op in _operations(description)}
    assert all("security" in op for op in ops.values())
    assert ops[("GET", "/api/v1/health")]["security"] == []
    assert ops[("GET", f"{NGSI}/entities")]["x-citypilot-role"] == "viewer"
    assert ops[("POST", f"{NGSI}/entities")]["x-citypilot-role"] == "operator"
    assert ops[("POST", "/api/v1/types")]["x-citypilot-role"] == "admin"
    ingest = ops[("POST", "/api/v1/ingest")]
    assert ingest["security"] == [{"bearerAuth": []}, {"deviceKey": []}]
    assert ingest["x-citypilot-role"] == "operator"


def test_the_ngsi_ld_operations_of_a_tenant_take_its_header(description: dict):
    def takes_tenant(op: dict) -> bool:
        return any(
            p["in"] == "header" and p["name"] == "NGSILD-Tenant" for p in op.get("parameters", [])
        )

    ops = {(m, p): op for m, p, op in _operations(description)}
    for key in (
        ("GET", f"{NGSI}/entities"),
        ("POST", f"{NGSI}/entities"),
        ("GET", f"{NGSI}/temporal/entities/{{entity_id}}"),
        ("POST", f"{NGSI}/subscriptions"),
    ):
        assert takes_tenant(ops[key]), key
        assert "404" in ops[key]["responses"], key  # NonexistentTenant
    # an operation that may create a tenant answers 403 past max_tenants
    assert "max_tenants" in ops[("POST", f"{NGSI}/entities")]["responses"]["403"]["description"]
    # the console's and devices' API is the city's own data space
    assert not any(takes_tenant(op) for (_, p), op in ops.items() if p.startswith("/api/v1/"))


def test_errors_are_documented_as_problem_details_and_422_is_gone(description: dict):
    assert "HTTPValidationError" not in description["components"]["schemas"]
    for method, path, op in _operations(description):
        responses = op["responses"]
        assert "422" not in responses, (method, path)
        for status, response in responses.items():
            if status.startswith("4") and not path.startswith("/open311/"):
                assert "application/problem+json" in response["content"], (method, path, status)
            elif status.startswith("4"):  # Open311 answers the spec's error lists
                assert set(response["content"]) == {"application/json", "text/xml"}
        if op["security"]:
            assert "401" in responses, (method, path)
    ops = {(m, p): op["responses"] for m, p, op in _operations(description)}
    assert {"201", "400", "401", "403", "409", "413", "415"} <= set(
        ops[("POST", f"{NGSI}/entities")]
    )
    assert {"201", "207"} <= set(ops[("POST", f"{NGSI}/entityOperations/create")])
    assert {"204", "207", "404"} <= set(ops[("PATCH", f"{NGSI}/entities/{{entity_id}}/attrs")])
    assert "403" not in ops[("GET", f"{NGSI}/entities")]


def test_a_bad_parameter_is_400_not_422(server: Server):
    with server.client(ADMIN) as admin:
        r = admin.get(f"{NGSI}/entities", params={"limit": "many"})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "limit"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", f"{NGSI}/entityOperations/create", "POST"),
        ("POST", f"{NGSI}/entities/urn:ngsi-ld:Streetlight:1", "DELETE, GET, HEAD, PATCH, PUT"),
        ("TRACE", f"{NGSI}/entities", "DELETE, GET, HEAD, POST"),
        ("DELETE", "/api/v1/health", "GET, HEAD"),
        ("TRACE", "/openapi.json", "GET, HEAD"),
        ("POST", "/docs", "GET, HEAD"),
        ("TRACE", "/", "GET, HEAD"),
        ("TRACE", "/no/such/page", "GET, HEAD"),
        ("TRACE", "/docs/assets/swagger-ui.css", "GET, HEAD"),
    ],
)
def test_a_wrong_method_is_405_with_allow(server: Server, method: str, path: str, allow: str):
    with server.client(None) as anonymous:
        r = anonymous.request(method, path)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    problem = r.json()
    assert problem["status"] == 405 and problem["type"].endswith("OperationNotSupported")
    assert method in problem["detail"]


class _Assets(HTMLParser):
    """Every URL a page loads: scripts, style sheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for key in ("src", "href"):
            if found.get(key) and (tag != "a"):
                self.urls.append(found[key])


def test_the_explorer_loads_from_the_server_alone(server: Server):
    with server.client(None) as anonymous:
        page = anonymous.get("/docs")
        assert page.status_code == 200
        assert "/openapi.json" in page.text
        parser = _Assets()
        parser.feed(page.text)
        assert len(parser.urls) >= 3, parser.urls  # script, style sheet, icon
        for url in parser.urls:
            absolute = urljoin(server.url + "/docs", url)
            assert urlsplit(absolute).netloc == urlsplit(server.url).netloc, url
            r = anonymous.get(absolute)
            assert r.status_code == 200 and r.content, url
        script = next(u for u in parser.urls if u.endswith("swagger-ui-bundle.js"))
        assert (
            anonymous.get(script)
            .headers["content-type"]
            .startswith(("application/javascript", "text/javascript"))
        )


@pytest.mark.parametrize(
    "path", [f"{NGSI}/no-such-thing", f"{NGSI}/no-such-thing/", "/api/v1/types/A/B/C"]
)
def test_no_such_api_path_is_404_whatever_the_method(server: Server, path: str):
    with server.client(ADMIN) as admin:
        for method in ("GET", "DELETE", "TRACE"):
            r = admin.request(method, path)
            assert r.status_code == 404, (method, r.text)
            assert r.headers["content-type"] == "application/problem+json"
