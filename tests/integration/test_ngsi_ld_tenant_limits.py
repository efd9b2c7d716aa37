"""The city's bounds on NGSI-LD tenants (``tenants_allowed``, ``max_tenants``): a request
that would create a tenant beyond them is refused with a ProblemDetails naming the
``NGSILD-Tenant`` header, and nothing is created; on each store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import OPERATOR, Server
from tests.integration.test_ngsi_ld_tenants import NONEXISTENT_TENANT, _drop_tenant_databases
from tests.integration.two_stores import server_on_store

E = "/ngsi-ld/v1/entities"
FORBIDDEN = "https://uri.etsi.org/ngsi-ld/errors/Forbidden"
ALLOWED = ["north", "south", "east"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A city that allows three tenant names and two tenants at most, on each store."""
    env = {"CITYPILOT_TENANTS_ALLOWED": json.dumps(ALLOWED), "CITYPILOT_MAX_TENANTS": "2"}
    try:
        with server_on_store(request, tmp_path_factory, env) as server:
            yield server
    finally:
        if request.param == "postgres":
            _drop_tenant_databases(request.getfixturevalue("postgres_dsn"))


def create(city: Server, tenant: str) -> httpx.Response:
    """An operator creates a bike station in ``tenant``."""
    doc = {"id": f"urn:ngsi-ld:BikeStation:{uuid.uuid4().hex[:8]}", "type": "BikeStation"}
    with city.client(OPERATOR) as c:
        return c.post(E, json=doc, headers={"NGSILD-Tenant": tenant})


def listed(city: Server, tenant: str) -> httpx.Response:
    with city.client(OPERATOR) as c:
        return c.get(E, params={"type": "BikeStation"}, headers={"NGSILD-Tenant": tenant})


def test_a_name_the_city_does_not_list_is_not_created(city: Server):
    r = create(city, "west")
    assert r.status_code == 404, r.text
    problem = r.json()
    assert problem["type"] == NONEXISTENT_TENANT
    assert problem["field"] == "NGSILD-Tenant"
    assert "tenants_allowed" in problem["detail"] and "north" in problem["detail"]
    assert r.headers["NGSILD-Tenant"] == "west"
    assert listed(city, "west").json()["type"] == NONEXISTENT_TENANT  # still not there


def test_past_max_tenants_a_new_tenant_is_refused_and_the_others_keep_working(city: Server):
    assert create(city, "north").status_code == 201
    assert create(city, "south").status_code == 201
    r = create(city, "east")
    assert r.status_code == 403, r.text
    problem = r.json()
    assert problem["type"] == FORBIDDEN and problem["field"] == "NGSILD-Tenant"
    assert "max_tenants = 2" in problem["detail"] and "'east'" in problem["detail"]
    assert listed(city, "east").status_code == 404  # nothing was created
    # the tenants there are, and the city's own data space, take writes as before
    for tenant in ("north", "south"):
        assert create(city, tenant).status_code == 201
        assert len(listed(city, tenant).json()) == 2
    with city.client(OPERATOR) as c:
        doc = {"id": f"urn:ngsi-ld:BikeStation:{uuid.uuid4().hex[:8]}", "type": "BikeStation"}
        assert c.post(E, json=doc).status_code == 201
