"""People and device keys managed from the CLI and the admin API: weak passwords refused,
secrets never on the command line, keys generated only, a rotated or revoked key refused
at once, a key bound to what it may write."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.conftest import ADMIN, OPERATOR, Server
from tests.integration.test_api_entities import NGSI, light, problem

STRONG = "Larch-quartz-sail-77"
MUNI = "urn:ngsi-ld:Municipality:07"


def uid() -> str:
    return uuid.uuid4().hex[:10]


def cli(server: Server, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """``citypilot ARGS`` on the test server's data directory."""
    return subprocess.run(
        [sys.executable, "-m", "citypilot.cli", *args],
        env={**os.environ, "CITYPILOT_DATA_DIR": str(server.data_dir)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def login(server: Server, name: str, password: str) -> httpx.Response:
    return httpx.post(
        server.url + "/api/v1/auth/token",
        data={"username": name, "password": password},
        headers={"X-Forwarded-For": f"192.0.2.{uuid.uuid4().int % 200}"},
    )


def ingest(server: Server, key: str, *entities: tuple[str, str]) -> httpx.Response:
    batch = [
        {
            "id": eid,
            "type": etype,
            "observedAt": "2026-12-01T10:00:00Z",
            "attrs": {"powerConsumption": 1.0},
        }
        for eid, etype in entities
    ]
    return httpx.post(server.url + "/api/v1/ingest", json=batch, headers={"X-Device-Key": key})


@pytest.mark.parametrize("weak", ["password", "12345678", "password1234", "qwertyuiop123"])
def test_common_and_short_passwords_are_refused(server: Server, weak: str):
    done = cli(server, "users", "add", f"w{uid()}", "--password-stdin", stdin=weak + "\n")
    assert done.returncode == 2 and "password" in done.stderr and "Traceback" not in done.stderr
    with server.client(ADMIN) as c:
        r = c.post(
            "/api/v1/users", json={"username": f"w{uid()}", "password": weak, "role": "viewer"}
        )
        problem(r, 400, "BadRequestData", "password")


def test_users_from_the_cli_disable_enable_set_role_reset_password(server: Server):
    name = f"u{uid()}"
    assert cli(server, "users", "add", name, "--password-stdin", stdin=STRONG).returncode == 0
    assert login(server, name, STRONG).json()["role"] == "viewer"
    assert name in cli(server, "users", "list").stdout
    assert cli(server, "users", "disable", name).returncode == 0
    assert login(server, name, STRONG).status_code == 401
    assert cli(server, "users", "enable", name).returncode == 0
    assert cli(server, "users", "set-role", name, "operator").returncode == 0
    assert login(server, name, STRONG).json()["role"] == "operator"
    other = "Birch-granite-oar-31"
    done = cli(server, "users", "reset-password", name, "--password-stdin", stdin=other)
    assert done.returncode == 0, done.stderr
    assert login(server, name, STRONG).status_code == 401
    assert login(server, name, other).status_code == 200
    missing = cli(server, "users", "disable", f"nobody{uid()}")
    assert missing.returncode == 2 and "no user" in missing.stderr


def test_users_through_the_api(server: Server):
    name = f"api{uid()}"
    with server.client(ADMIN) as c:
        r = c.post("/api/v1/users", json={"username": name, "password": STRONG, "role": "viewer"})
        assert r.status_code == 201 and r.json() == {
            "username": name, "role": "viewer", "disabled": False, "grants": []
        }  # fmt: skip
        again = c.post(
            "/api/v1/users", json={"username": name, "password": STRONG, "role": "viewer"}
        )
        problem(again, 409, "AlreadyExists", "username")
        problem(
            c.patch(f"/api/v1/users/{name}", json={"role": "chief"}), 400, "BadRequestData", "role"
        )
        assert c.patch(f"/api/v1/users/{name}", json={"disabled": True}).json()["disabled"] is True
        assert login(server, name, STRONG).status_code == 401
        c.patch(f"/api/v1/users/{name}", json={"disabled": False, "role": "operator"})
        assert any(
            u["username"] == name and u["role"] == "operator" for u in c.get("/api/v1/users").json()
        )
        weak = c.put(f"/api/v1/users/{name}/password", json={"password": "letmein"})
        problem(weak, 400, "BadRequestData", "password")
        assert (
            c.put(
                f"/api/v1/users/{name}/password", json={"password": "Birch-granite-oar-31"}
            ).status_code
            == 204
        )
        problem(c.patch(f"/api/v1/users/nobody{uid()}", json={}), 404, "ResourceNotFound")
    assert login(server, name, "Birch-granite-oar-31").status_code == 200
    with server.client(OPERATOR) as c:
        problem(c.get("/api/v1/users"), 403, "Forbidden")


def test_device_keys_are_generated_only_and_a_rotated_key_is_refused_at_once(server: Server):
    name = f"gw{uid()}"
    assert cli(server, "devices", "add", name, "--key", "a").returncode == 2
    added = cli(server, "devices", "add", name)
    old = added.stdout.strip()
    assert added.returncode == 0 and old.startswith("cpd_") and len(old) > 40
    eid = f"urn:ngsi-ld:Streetlight:{uid()}"
    with server.client() as c:
        c.post(f"{NGSI}/entities", json=light(eid.rsplit(":", 1)[1]))
    assert ingest(server, old, (eid, "Streetlight")).status_code == 200  # the key is now known
    new = cli(server, "devices", "rotate", name).stdout.strip()
    assert ingest(server, old, (eid, "Streetlight")).status_code == 401
    assert ingest(server, new, (eid, "Streetlight")).status_code == 200
    with server.client(ADMIN) as c:
        assert any(d["name"] == name for d in c.get("/api/v1/devices").json())
        newer = c.post(f"/api/v1/devices/{name}/rotate").json()["key"]
        assert ingest(server, new, (eid, "Streetlight")).status_code == 401
        assert ingest(server, newer, (eid, "Streetlight")).status_code == 200
        assert c.delete(f"/api/v1/devices/{name}").status_code == 204
    assert ingest(server, newer, (eid, "Streetlight")).status_code == 401
    assert cli(server, "devices", "revoke", name).returncode == 2  # gone already


def test_a_device_key_writes_only_what_it_is_bound_to(server: Server):
    inside, outside = uid(), uid()
    with server.client() as c:
        in_muni = light(inside, refMunicipality={"type": "Relationship", "object": MUNI})
        assert c.post(f"{NGSI}/entities", json=in_muni).status_code == 201
        assert c.post(f"{NGSI}/entities", json=light(outside)).status_code == 201
    lights = [(f"urn:ngsi-ld:Streetlight:{x}", "Streetlight") for x in (inside, outside)]
    with server.client(ADMIN) as c:
        by_muni = c.post(
            "/api/v1/devices", json={"name": f"m{uid()}", "binding": {"municipality": MUNI}}
        ).json()
        by_entity = c.post(
            "/api/v1/devices", json={"name": f"e{uid()}", "binding": {"entities": [lights[1][0]]}}
        ).json()
        by_type = c.post(
            "/api/v1/devices", json={"name": f"t{uid()}", "binding": {"type": "TrafficSignal"}}
        ).json()
        bad = c.post("/api/v1/devices", json={"name": f"b{uid()}", "binding": {"types": ["x"]}})
        problem(bad, 400, "BadRequestData", "binding")
    assert by_muni["binding"] == {"municipality": MUNI}
    for key, allowed in ((by_muni["key"], 0), (by_entity["key"], 1)):
        r = ingest(server, key, *lights)
        assert r.status_code == 207, r.text
        errors = r.json()["errors"]
        assert [e["index"] for e in errors] == [1 - allowed]
        assert errors[0]["error"]["status"] == 403 and "bound to" in errors[0]["error"]["detail"]
    r = ingest(server, by_type["key"], *lights)
    assert r.status_code == 400 and r.json()["rejected"] == 2
