"""The audit log: writes, logins and permission changes on record, read and exported by
metropole admins, and append-only in both stores."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from citypilot.security import audit
from citypilot.security.audit import MIN_RETENTION_DAYS, AuditQuery
from citypilot.store.base import Store
from citypilot.store.postgres import PostgresStore
from citypilot.store.sqlite import SQLiteStore
from tests.conftest import ADMIN, OPERATOR, VIEWER, Server
from tests.integration import test_store_contract as contract

NGSI = "/ngsi-ld/v1"
store = contract.store


def _light(local: str) -> dict:
    return {
        "id": f"urn:ngsi-ld:Streetlight:{local}",
        "type": "Streetlight",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5, 47]}},
    }


def _audit(server: Server, **params: object) -> dict:
    with server.client(ADMIN) as c:
        r = c.get("/api/v1/audit", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_logins_are_recorded_with_their_outcome_and_address(server: Server):
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    r = httpx.post(server.url + "/api/v1/auth/token", data={"username": name, "password": "x"})
    assert r.status_code == 401
    entries = _audit(server, who=name)["items"]
    assert [(e["action"], e["outcome"], e["client"]) for e in entries] == [
        ("login.failed", "denied", "127.0.0.1")
    ]
    server._tokens.pop(VIEWER[0], None)
    server.token(VIEWER)
    logins = _audit(server, who=VIEWER[0], action="login")["items"]
    assert logins[0]["action"] == "login" and logins[0]["outcome"] == "ok"


def test_every_api_write_is_recorded_once_with_who_what_and_outcome(server: Server):
    local = uuid.uuid4().hex[:10]
    entity_id = f"urn:ngsi-ld:Streetlight:{local}"
    with server.client(OPERATOR) as c:
        assert c.post(f"{NGSI}/entities", json=_light(local)).status_code == 201
        attrs = {"powerState": {"type": "Property", "value": "on"}}
        assert c.post(f"{NGSI}/entities/{entity_id}/attrs", json=attrs).status_code == 204
    with server.client(VIEWER) as c:
        assert c.delete(f"{NGSI}/entities/{entity_id}").status_code == 403
    entries = _audit(server, entity=entity_id)["items"]
    got = [(e["actor"], e["action"], e["outcome"], e["detail"]["status"]) for e in entries]
    assert got == [
        (VIEWER[0], "DELETE /ngsi-ld/v1/entities/{entity_id}", "denied", 403),
        (OPERATOR[0], "POST /ngsi-ld/v1/entities/{entity_id}/attrs", "ok", 204),
    ]
    created = _audit(server, who=OPERATOR[0], action="POST /ngsi-ld/v1/entities")["items"]
    assert created[0]["outcome"] == "ok" and created[0]["client"] == "127.0.0.1"


def test_a_write_in_a_tenant_is_recorded_with_its_tenant(server: Server):
    local = uuid.uuid4().hex[:10]
    with server.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/entities", json=_light(local), headers={"NGSILD-Tenant": "nord"})
        assert r.status_code == 201, r.text
        assert c.post(f"{NGSI}/entities", json=_light(local)).status_code == 201
    entries = _audit(server, who=OPERATOR[0], action="POST /ngsi-ld/v1/entities")["items"]
    assert [e["detail"].get("tenant") for e in entries[:2]] == [None, "nord"]


def test_a_configuration_change_keeps_what_it_replaced(server: Server):
    name = f"Gauge{uuid.uuid4().hex[:6]}"
    doc = {"name": name, "department": "environment", "attributes": {}}
    with server.client(ADMIN) as c:
        assert c.post("/api/v1/types", json=doc).status_code == 201
        doc["attributes"] = {"level": {"value": "number"}}
        assert c.post("/api/v1/types", json=doc).status_code == 200  # a new version
    changes = _audit(server, entity=name)["items"]
    assert changes[0]["detail"]["before"]["attributes"].get("level") is None
    assert changes[0]["detail"]["after"]["attributes"]["level"]["value"] == "number"
    assert changes[1]["detail"]["before"] is None


def test_the_audit_log_is_for_metropole_admins_filtered_and_paged(server: Server):
    with server.client(OPERATOR) as c:
        assert c.get("/api/v1/audit").status_code == 403
    start = _audit(server, limit=1)
    assert start["total"] >= 1 and len(start["items"]) == 1
    later = _audit(server, since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00Z")
    assert later == {"total": 0, "items": []}
    with server.client(ADMIN) as c:
        r = c.get("/api/v1/audit", params={"since": "yesterday"})
    assert r.status_code == 400 and r.json()["field"] == "since"


def test_the_audit_log_exports_as_ndjson_and_csv(server: Server):
    with server.client(ADMIN) as c:
        nd = c.get("/api/v1/audit", params={"format": "ndjson", "action": "login"})
        table = c.get("/api/v1/audit", params={"format": "csv", "action": "login"})
    assert nd.headers["content-disposition"] == 'attachment; filename="audit.ndjson"'
    lines = [json.loads(line) for line in nd.text.splitlines()]
    assert lines and all(e["action"].startswith("login") for e in lines)
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [r["id"] for r in rows] == [str(e["id"]) for e in lines]


def test_a_permission_change_from_the_cli_is_recorded(server: Server):
    name = f"carol{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "CITYPILOT_DATA_DIR": str(server.data_dir)}
    for role in ("viewer", "operator"):
        subprocess.run(
            [sys.executable, "-m", "citypilot.cli", "users", "add", name, "--role", role,
             "--password-stdin"],
            env=env, check=True, capture_output=True, input=b"a-long-enough-password\n",
        )  # fmt: skip
    entries = _audit(server, entity=name, action="account.permissions")["items"]
    assert [(e["detail"]["before"], e["detail"]["after"]["role"]) for e in entries] == [
        ({"role": "viewer", "disabled": False, "grants": []}, "operator"),
        (None, "viewer"),
    ]
    assert "password" not in json.dumps(entries)


# -- append-only, in both stores -------------------------------------------------


def _raw(store: Store, statement: str) -> None:
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.audit_path) as conn:
            conn.execute(statement)
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.dsn, autocommit=True) as conn:
            conn.execute(statement)


async def test_entries_cannot_be_changed_or_deleted_until_they_are_old(store: Store) -> None:
    now = time.time()
    actor = f"eve-{uuid.uuid4().hex[:6]}"
    await audit.record(store, actor, "login.failed", client="10.0.0.9", outcome="denied")
    await audit.record(store, actor, "login", at=now - (MIN_RETENTION_DAYS + 30) * 86_400)
    for statement in (
        f"UPDATE audit_log SET actor = 'mallory' WHERE actor = '{actor}'",
        f"DELETE FROM audit_log WHERE actor = '{actor}'",
    ):
        with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="append-only"):
            await asyncio.to_thread(_raw, store, statement)
    with pytest.raises(Exception, match="append-only"):
        await store.purge_audit(time.time() + 1)  # would take a young one too: refused
    assert await store.purge_audit(now - MIN_RETENTION_DAYS * 86_400) == 1
    entries, total = await store.query_audit(AuditQuery(actor=actor))
    assert total == 1 and entries[0].action == "login.failed" and entries[0].client == "10.0.0.9"


def test_the_audit_file_holds_the_triggers(tmp_path: Path) -> None:
    async def make() -> None:
        s = SQLiteStore(tmp_path / "city.db")
        await s.open()
        await s.close()

    asyncio.run(make())
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {"audit_no_update", "audit_no_delete"} <= names
