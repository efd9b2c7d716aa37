"""Privacy by design: identifiers pseudonymised at ingest, purged when their retention
ends, and a data subject's export and erasure across state, history and audit."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

from citypilot.security.privacy import ERASED, KEYS_FILE, load_keys, rotate_keys, subject_needles
from citypilot.store.base import PersonalRule, Store
from tests.conftest import ADMIN, OPERATOR, Server
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import NOW, T0, iso, make, observe

NGSI = "/ngsi-ld/v1"
store = contract.store
READER = "urn:ngsi-ld:AccessPoint:{}"


def privacy_cli(server: Server, *args: str) -> str:
    """``citypilot privacy ARGS`` on the server's data (its store, its tenants')."""
    env = {**os.environ, "CITYPILOT_DATA_DIR": str(server.data_dir)}
    if (server.data_dir / "city.toml").exists():  # the PostgreSQL store
        env["CITYPILOT_CONFIG"] = str(server.data_dir / "city.toml")
    done = subprocess.run(
        [sys.executable, "-m", "citypilot.cli", "privacy", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def test_a_badge_is_pseudonymised_exported_and_erased_end_to_end(server: Server):
    reader = READER.format(uuid.uuid4().hex[:8])
    badge = f"badge-{uuid.uuid4().hex[:8]}"
    doc = {
        "id": reader,
        "type": "AccessPoint",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5, 47]}},
    }
    with server.client(OPERATOR) as c:
        assert c.post(f"{NGSI}/entities", json=doc).status_code == 201
    access = {"badge": badge, "result": "denied", "at": "2026-11-20T08:00:00Z"}
    observation = {
        "id": reader,
        "type": "AccessPoint",
        "observedAt": "2026-11-20T08:00:00Z",
        "attrs": {"lastAccess": access, "accessCount": 1},
    }
    with server.device() as device:
        assert device.post("/api/v1/ingest", json=[observation]).status_code == 200
    pseudonym = load_keys(server.data_dir).pseudonym(badge)
    for kept in ("city.db", "audit.db"):
        assert badge.encode() not in (server.data_dir / kept).read_bytes()

    found = json.loads(privacy_cli(server, "export", badge))
    assert found["pseudonyms"] == [pseudonym]
    assert [(s["entityId"], s["value"]["badge"]) for s in found["state"]] == [(reader, pseudonym)]
    assert [(h["observedAt"], h["value"]["result"]) for h in found["history"]] == [
        ("2026-11-20T08:00:00.000Z", "denied")
    ]

    privacy_cli(server, "erase", badge)
    assert json.loads(privacy_cli(server, "export", badge))["state"] == []
    with server.client(ADMIN) as c:
        hist = c.get(f"/api/v1/history/{reader}", params={"attrs": "lastAccess"}).json()
        entries = c.get("/api/v1/audit", params={"action": "privacy"}).json()["items"]
    assert hist["attrs"]["lastAccess"][0][1]["result"] == "denied"  # the fact stays
    assert [e["action"] for e in entries[:3]] == [
        "privacy.export",
        "privacy.erase",
        "privacy.export",
    ]
    assert entries[1]["detail"] == {"values": 2}
    assert badge not in json.dumps(entries) and pseudonym not in json.dumps(entries)


def test_keys_are_private_versioned_and_rotated(tmp_path: Path):
    first = load_keys(tmp_path)
    assert stat.S_IMODE((tmp_path / KEYS_FILE).stat().st_mode) == 0o600
    old = first.pseudonym("AB-123-CD")
    assert old.startswith("ps:k1:") and first.pseudonymise(old) == old
    assert rotate_keys(tmp_path) == "k2"
    second = load_keys(tmp_path)
    new = second.pseudonymise("AB-123-CD")
    assert new.startswith("ps:k2:") and new != old
    assert subject_needles(second, "AB-123-CD") == [old, new, "AB-123-CD"]
    assert stat.S_IMODE((tmp_path / KEYS_FILE).stat().st_mode) == 0o600


async def _reader_with_history(store: Store) -> str:
    entity_id = READER.format("001")
    await store.create_entities([make({"id": entity_id, "type": "AccessPoint"})], NOW)
    for at, badge in ((T0, "ps:k1:" + "a" * 32), (T0 + 86_400 * 20, "ps:k1:" + "b" * 32)):
        access = {"badge": badge, "result": "granted", "at": iso(at)}
        await store.apply_readings(observe(entity_id, at, lastAccess=access, status="online"), NOW)
    return entity_id


async def test_retention_purges_old_identifiers_and_keeps_the_rest(store: Store) -> None:
    entity_id = await _reader_with_history(store)
    cutoff = T0 + 86_400 * 10
    rules = [
        PersonalRule("AccessPoint", "lastAccess", ("badge",), cutoff),
        PersonalRule("AccessPoint", "status", (), cutoff),
    ]
    assert await store.purge_personal(rules) == 2
    found = await store.find_values(["ps:k1:"])
    assert [(f.kept_in, f.observed_at, f.value["badge"]) for f in found] == [
        ("state", None, "ps:k1:" + "b" * 32),
        ("history", T0 + 86_400 * 20, "ps:k1:" + "b" * 32),
    ]
    from citypilot.store.base import HistoryQuery

    series = await store.history(HistoryQuery(entity_id, ("lastAccess", "status")))
    assert series["lastAccess"][0][1] == {"result": "granted", "at": iso(T0)}
    assert [t for t, _ in series["status"]] == [T0 + 86_400 * 20]
    assert await store.purge_personal(rules) == 0  # nothing left to purge


async def test_erasure_replaces_the_pseudonym_everywhere(store: Store) -> None:
    await _reader_with_history(store)
    assert await store.erase_values(["ps:k1:" + "b" * 32], ERASED) == 2
    left = await store.find_values(["ps:k1:"])
    assert [f.observed_at for f in left] == [T0]
    erased = await store.find_values([ERASED])
    assert {f.value["badge"] for f in erased} == {ERASED}


async def test_a_refused_message_with_an_identifier_is_found_and_erased(store: Store) -> None:
    from citypilot.store.base import DeadLetter

    payload = '{"id": "urn:ngsi-ld:AccessPoint:9", "attrs": {"lastAccess": {"badge": "B-77"}}}'
    await store.add_dead_letters([DeadLetter(NOW, "mqtt:gw", "bad value", "attrs", payload)])
    found = await store.find_values(["B-77"])
    assert [(f.kept_in, f.entity_id) for f in found] == [("deadLetter", "mqtt:gw")]
    assert await store.erase_values(["B-77"], ERASED) == 1
    letters, _ = await store.list_dead_letters(10, 0)
    assert "B-77" not in letters[0].payload and ERASED in letters[0].payload
