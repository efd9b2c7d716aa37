"""Conformance of multi-tenancy (ETSI GS CIM 009 v1.8, clauses 4.14, 5.5.10, 6.3.14):
the ``NGSILD-Tenant`` header names a data space of its own, on each store, over real
HTTP. Notifications are received by a real local HTTP endpoint.

Where a test shows that something is *not* notified, it makes a later change that is,
and checks what arrived first: notifications of one subscription leave in order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from citypilot.bench.receiver import Receiver
from citypilot.bench.server import free_port, server_process
from tests.conftest import OPERATOR, VIEWER, Server, require_service, seed_accounts
from tests.integration.conftest import ADMIN_DSN
from tests.integration.test_privacy import privacy_cli
from tests.integration.two_stores import seed_postgres_accounts, server_on_store

E = "/ngsi-ld/v1/entities"
NONEXISTENT_TENANT = "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant"
BAD_REQUEST = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"


def _drop_tenant_databases(dsn: str) -> None:
    """Drop the databases the server made for its tenants (``<database>_t_<name>``)."""
    prefix = conninfo_to_dict(dsn)["dbname"] + "_t_"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        ).fetchall()
        for (name,) in rows:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on each store; on PostgreSQL its tenants' databases are dropped after."""
    try:
        with server_on_store(request, tmp_path_factory) as server:
            yield server
    finally:
        if request.param == "postgres":
            _drop_tenant_databases(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP endpoint on a free local port."""
    with Receiver() as r:
        yield r


def _tenant() -> str:
    """A tenant name no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


def client(
    city: Server, tenant: str | None, who: tuple[str, str] | None = OPERATOR
) -> httpx.Client:
    """A client of ``who`` (None: anonymous) whose requests name ``tenant`` (None: the
    default tenant)."""
    c = city.client(who)
    if tenant is not None:
        c.headers["NGSILD-Tenant"] = tenant
    return c


def lamp(entity_id: str, watts: float) -> dict[str, Any]:
    """A streetlight document (a type the city registered: checked strictly)."""
    return {
        "id": entity_id,
        "type": "Streetlight",
        "powerState": {"type": "Property", "value": "off"},
        "powerConsumption": {"type": "Property", "value": watts, "observedAt": _AT},
    }


_AT = "2026-03-01T10:00:00Z"


def create(city: Server, tenant: str | None, doc: dict[str, Any]) -> None:
    """An operator creates the entity in ``tenant``."""
    with client(city, tenant) as c:
        r = c.post(E, json=doc)
    assert r.status_code == 201, r.text


def new_lamp_id() -> str:
    return f"urn:ngsi-ld:Streetlight:tenant-{uuid.uuid4().hex[:10]}"


def test_an_entity_is_seen_in_its_tenant_only(city: Server):
    a, b = _tenant(), _tenant()
    entity_id = new_lamp_id()
    create(city, a, lamp(entity_id, 10.0))
    create(city, b, lamp(new_lamp_id(), 20.0))  # b exists too, without that entity
    with client(city, a) as c:
        r = c.get(f"{E}/{entity_id}")
        assert r.status_code == 200, r.text
        assert r.json()["powerConsumption"]["value"] == 10.0
        assert r.headers["NGSILD-Tenant"] == a
        assert [e["id"] for e in c.get(E, params={"type": "Streetlight"}).json()] == [entity_id]
        assert c.get("/ngsi-ld/v1/types").json()["typeList"] == ["Streetlight"]
        assert c.get(f"/ngsi-ld/v1/temporal/entities/{entity_id}").status_code == 200
    for other in (None, b):
        with client(city, other) as c:
            assert c.get(f"{E}/{entity_id}").status_code == 404
            found = c.get(E, params={"type": "Streetlight", "limit": 1000}).json()
            assert entity_id not in {e["id"] for e in found}
            r = c.get(f"/ngsi-ld/v1/temporal/entities/{entity_id}")
            assert r.status_code == 404, r.text


def test_the_same_id_holds_different_data_in_two_tenants(city: Server):
    a, b = _tenant(), _tenant()
    entity_id = new_lamp_id()
    create(city, a, lamp(entity_id, 10.0))
    create(city, b, lamp(entity_id, 20.0))
    with client(city, b) as c:
        update = {"powerState": {"type": "Property", "value": "on"}}
        assert c.patch(f"{E}/{entity_id}/attrs", json=update).status_code == 204
    with client(city, a) as c:
        got = c.get(f"{E}/{entity_id}", params={"options": "keyValues"}).json()
    assert (got["powerState"], got["powerConsumption"]) == ("off", 10.0)
    with client(city, b) as c:
        got = c.get(f"{E}/{entity_id}", params={"options": "keyValues"}).json()
    assert (got["powerState"], got["powerConsumption"]) == ("on", 20.0)
    with client(city, a) as c:
        assert c.delete(f"{E}/{entity_id}").status_code == 204
    with client(city, b) as c:
        assert c.get(f"{E}/{entity_id}").status_code == 200


def test_a_tenant_never_created_is_nonexistent_tenant(city: Server):
    missing = _tenant()
    entity_id = new_lamp_id()
    with client(city, missing) as c:
        for r in (
            c.get(E, params={"type": "Streetlight"}),
            c.get(f"{E}/{entity_id}"),
            c.get("/ngsi-ld/v1/types"),
            c.get("/ngsi-ld/v1/subscriptions"),
            c.get("/ngsi-ld/v1/temporal/entities", params={"type": "Streetlight"}),
            c.patch(f"{E}/{entity_id}/attrs", json={"powerState": "on"}),
            c.delete(f"{E}/{entity_id}"),
        ):
            assert r.status_code == 404, r.text
            assert r.json()["type"] == NONEXISTENT_TENANT
            assert r.headers["NGSILD-Tenant"] == missing
    # without a credential, nothing tells whether the tenant exists
    with client(city, missing, None) as c:
        assert c.get(E, params={"type": "Streetlight"}).status_code == 401
    # a viewer may not create one: it stays nonexistent
    with client(city, missing, VIEWER) as c:
        assert c.post(E, json=lamp(entity_id, 5.0)).status_code == 403
        assert c.get(E, params={"type": "Streetlight"}).json()["type"] == NONEXISTENT_TENANT
    # an operator's create makes it; the same query then answers
    create(city, missing, lamp(entity_id, 5.0))
    with client(city, missing, VIEWER) as c:
        r = c.get(E, params={"type": "Streetlight"})
    assert r.status_code == 200 and [e["id"] for e in r.json()] == [entity_id]


@pytest.mark.parametrize("name", ["Nord", "1nord", "nord/sud", "nord sud", "x" * 41, ""])
def test_a_bad_tenant_name_is_400_naming_the_header(city: Server, name: str):
    with client(city, name) as c:
        r = c.get(E, params={"type": "Streetlight"})
    assert r.status_code == 400, r.text
    assert (r.json()["type"], r.json()["field"]) == (BAD_REQUEST, "NGSILD-Tenant")


def test_no_header_is_the_default_tenant_and_is_not_echoed(city: Server):
    entity_id = new_lamp_id()
    create(city, None, lamp(entity_id, 1.0))
    with client(city, None) as c:
        r = c.get(f"{E}/{entity_id}")
    assert r.status_code == 200 and "NGSILD-Tenant" not in r.headers


def test_a_subscription_hears_of_its_tenant_only(city: Server, receiver: Receiver):
    a, b = _tenant(), _tenant()
    entity_id = new_lamp_id()
    for tenant in (None, a, b):
        create(city, tenant, lamp(entity_id, 10.0))
    sub = {
        "type": "Subscription",
        "entities": [{"type": "Streetlight", "id": entity_id}],
        "watchedAttributes": ["powerState"],
        "notification": {"format": "keyValues", "endpoint": {"uri": receiver.url + "/n"}},
    }
    with client(city, a) as c:
        r = c.post("/ngsi-ld/v1/subscriptions", json=sub)
        assert r.status_code == 201, r.text
        location = r.headers["Location"]
        assert c.get(location).status_code == 200
    with client(city, None) as c:
        assert c.get(location).status_code == 404
    with client(city, b) as c:
        assert c.get(location).status_code == 404
    for tenant, state in ((None, "low"), (b, "bootingUp"), (a, "on")):
        with client(city, tenant) as c:
            r = c.patch(f"{E}/{entity_id}/attrs", json={"powerState": state})
            assert r.status_code == 204, r.text
    [first] = receiver.wait_for(1)
    assert first.headers["ngsild-tenant"] == a
    assert [(d["id"], d["powerState"]) for d in first.json()["data"]] == [(entity_id, "on")]


def test_a_tenant_notification_through_mqtt_names_its_tenant(city: Server):
    require_service("Mosquitto", "127.0.0.1", 1883)
    tenant, entity_id = _tenant(), new_lamp_id()
    topic = f"citypilot-test/tenant/{uuid.uuid4().hex}"
    create(city, tenant, lamp(entity_id, 10.0))
    sub = {
        "type": "Subscription",
        "entities": [{"type": "Streetlight", "id": entity_id}],
        "notification": {"endpoint": {"uri": f"mqtt://127.0.0.1:1883/{topic}"}},
    }

    def subscribe_and_change() -> None:
        with client(city, tenant) as c:
            assert c.post("/ngsi-ld/v1/subscriptions", json=sub).status_code == 201
            r = c.patch(f"{E}/{entity_id}/attrs", json={"powerState": "on"})
            assert r.status_code == 204, r.text

    async def notified() -> bytes:
        async with aiomqtt.Client("127.0.0.1", 1883) as mqtt:
            await mqtt.subscribe(topic, qos=1)
            await asyncio.to_thread(subscribe_and_change)
            async for message in mqtt.messages:
                return bytes(message.payload)
        raise AssertionError("the broker closed the subscription")

    message = orjson.loads(asyncio.run(asyncio.wait_for(notified(), 30)))
    assert message["metadata"]["NGSILD-Tenant"] == tenant
    assert message["body"]["data"][0]["powerState"]["value"] == "on"


@pytest.fixture(params=["sqlite", "postgres"])
def restartable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a city of its own on each store, for servers started one
    after the other; its databases (the city's, its tenants') are dropped after."""
    data = tmp_path / "city"
    # failed notifications are tried again within 0.5 s
    env = {
        "CITYPILOT_DATA_DIR": str(data),
        "CITYPILOT_NOTIFY_RETRY_MIN_S": "0.1",
        "CITYPILOT_NOTIFY_RETRY_MAX_S": "0.5",
    }
    if request.param == "sqlite":
        asyncio.run(seed_accounts(data))
        yield env
        return
    params = conninfo_to_dict(ADMIN_DSN)
    require_service("PostgreSQL", params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    dsn = make_conninfo(ADMIN_DSN, dbname=f"citypilot_test_{uuid.uuid4().hex[:12]}")
    asyncio.run(seed_postgres_accounts(dsn))
    config = tmp_path / "city.toml"
    config.write_text(f'store = "postgres"\npostgres_dsn = "{dsn}"\n')
    try:
        yield {**env, "CITYPILOT_CONFIG": str(config)}
    finally:
        _drop_tenant_databases(dsn)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            name = conninfo_to_dict(dsn)["dbname"]
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_tenant_outlives_a_restart_and_its_pending_notification_is_sent(
    restartable: dict[str, str],
):
    data = Path(restartable["CITYPILOT_DATA_DIR"])
    entity_id, port = new_lamp_id(), free_port()  # the endpoint's: nobody listens yet
    sub = {
        "type": "Subscription",
        "entities": [{"type": "Streetlight", "id": entity_id}],
        "notification": {"endpoint": {"uri": f"http://127.0.0.1:{port}/late"}},
    }
    with server_process(data, restartable) as url:
        city = Server(url, data)
        create(city, "nord", lamp(entity_id, 3.0))
        with client(city, "nord") as c:
            location = c.post("/ngsi-ld/v1/subscriptions", json=sub).headers["Location"]
            assert c.patch(f"{E}/{entity_id}/attrs", json={"powerState": "on"}).status_code == 204
            status: dict[str, Any] = {}
            for _ in range(600):  # tried, and failed: it waits in the tenant's outbox
                status = c.get(location).json()["notification"]
                if status.get("status") == "failed":
                    break
            assert status["status"] == "failed"
    with Receiver(port=port) as late, server_process(data, restartable) as url:
        # sent by the new server before any request names the tenant
        [got] = late.wait_for(1)
        assert got.headers["ngsild-tenant"] == "nord"
        assert got.json()["data"][0]["powerState"]["value"] == "on"
        city = Server(url, data)
        with client(city, "nord") as c:  # known from its database, not from memory
            r = c.get(f"{E}/{entity_id}", params={"options": "keyValues"})
            assert r.status_code == 200, r.text
            assert r.json()["powerConsumption"] == 3.0
        with client(city, "sud") as c:
            assert c.get(f"{E}/{entity_id}").json()["type"] == NONEXISTENT_TENANT
        with client(city, None) as c:
            assert c.get(f"{E}/{entity_id}").status_code == 404


async def test_a_tenants_personal_values_are_purged_and_audited_in_the_city(tmp_path: Path):
    from citypilot.config import Settings
    from citypilot.model.builtin_types import BUILTIN_TYPES
    from citypilot.model.types import TypeRegistry
    from citypilot.security.audit import AuditQuery
    from citypilot.security.retention import purge_expired
    from citypilot.store.sqlite import SQLiteStore
    from tests.integration.test_privacy import _reader_with_history
    from tests.integration.test_store_contract import T0

    city_store = SQLiteStore(tmp_path / "city.db")
    tenant_store = SQLiteStore(tmp_path / "tenants" / "nord" / "city.db")
    await city_store.open()
    await tenant_store.open()
    try:
        await _reader_with_history(tenant_store)  # badges seen at T0 and 20 days later
        settings = Settings(data_dir=tmp_path, personal_retention_days=30)
        removed = await purge_expired(
            tenant_store,
            TypeRegistry(BUILTIN_TYPES),
            settings,
            "system:retention",
            now=T0 + 86_400 * 40,
            tenant=("nord", city_store),
        )
        assert removed == {"personalValues": 1}
        assert [f.observed_at for f in await tenant_store.find_values(["ps:k1:"])] == [
            None,
            T0 + 86_400 * 20,
        ]
        entries, _ = await city_store.query_audit(AuditQuery(action="retention"))
        assert [e.detail for e in entries] == [{"personalValues": 1, "tenant": "nord"}]
        assert (await tenant_store.query_audit(AuditQuery()))[0] == []
    finally:
        await tenant_store.close()
        await city_store.close()


def test_a_data_subject_is_found_and_erased_in_every_tenant(city: Server):
    tenant, badge = _tenant(), f"badge-{uuid.uuid4().hex[:8]}"
    reader = f"urn:ngsi-ld:AccessPoint:tenant-{uuid.uuid4().hex[:8]}"
    access = {"badge": badge, "result": "denied", "at": "2026-11-20T08:00:00Z"}
    doc = {
        "id": reader,
        "type": "AccessPoint",
        "lastAccess": {"type": "Property", "value": access},
    }
    create(city, tenant, doc)
    found = json.loads(privacy_cli(city, "export", badge))
    held = found["tenants"][tenant]
    assert [(s["entityId"], s["value"]["result"]) for s in held["state"]] == [(reader, "denied")]
    assert found["state"] == []  # the default tenant holds nothing of the subject
    privacy_cli(city, "erase", badge)
    assert "tenants" not in json.loads(privacy_cli(city, "export", badge))
    with client(city, tenant) as c:  # the fact stays
        kept = c.get(f"{E}/{reader}", params={"options": "keyValues"}).json()["lastAccess"]
    assert kept["result"] == "denied"
