"""The CLI: users and device keys created from the command line work against the server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx

from citypilot.bench.server import server_process


def citypilot(data_dir, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CITYPILOT_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "citypilot.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_users_and_device_keys_from_the_command_line(tmp_path):
    added = citypilot(
        tmp_path, "users", "add", "carol", "--role", "operator", "--password-stdin",
        stdin="carol-password\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    short = citypilot(tmp_path, "users", "add", "dave", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "10 characters" in short.stderr
    device = citypilot(tmp_path, "devices", "add", "north-gateway")
    key = device.stdout.strip()
    assert device.returncode == 0 and key.startswith("cpd_")
    with server_process(tmp_path) as url:
        r = httpx.post(
            url + "/api/v1/auth/token", data={"username": "carol", "password": "carol-password"}
        )
        assert r.status_code == 200 and r.json()["role"] == "operator"
        r = httpx.post(url + "/api/v1/ingest", json=[], headers={"X-Device-Key": key})
        assert r.status_code == 200


def test_users_add_without_a_terminal_says_how_to_give_the_password(tmp_path):
    done = citypilot(tmp_path, "users", "add", "bob", stdin="")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--password-stdin" in done.stderr and "--password-file" in done.stderr


def test_a_password_is_read_from_a_file_and_never_taken_on_the_command_line(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("erin-harbour-lantern\n")
    done = citypilot(tmp_path, "users", "add", "erin", "--password-file", str(secret))
    assert done.returncode == 0, done.stderr
    refused = citypilot(tmp_path, "users", "add", "erin", "--password", "erin-harbour-lantern")
    assert refused.returncode == 2 and "visible to every local user" in refused.stderr
    with server_process(tmp_path) as url:
        r = httpx.post(
            url + "/api/v1/auth/token",
            data={"username": "erin", "password": "erin-harbour-lantern"},
        )
        assert r.status_code == 200


def test_bad_config_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 'eighty'\n")
    result = citypilot(
        tmp_path,
        "--config",
        str(bad),
        "users",
        "add",
        "x",
        "--password-stdin",
        stdin="long-enough-x",
    )
    assert result.returncode == 2 and "port" in result.stderr


def test_types_declared_in_a_file_are_registered(tmp_path):
    import asyncio

    from tests.conftest import OPERATOR, seed_accounts

    asyncio.run(seed_accounts(tmp_path))
    types = tmp_path / "types.toml"
    types.write_text(
        '[[type]]\nname = "NoiseSensor"\ndepartment = "environment"\n'
        '[type.attributes.laeq]\nvalue = "number"\nunit = "2N"\nminimum = 0\nmaximum = 200\n'
    )
    with server_process(tmp_path, {"CITYPILOT_TYPES_FILE": str(types)}) as url:
        token = httpx.post(
            url + "/api/v1/auth/token", data={"username": OPERATOR[0], "password": OPERATOR[1]}
        ).json()
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token['access_token']}"})
        ok = c.post(
            "/ngsi-ld/v1/entities",
            json={"id": "urn:ngsi-ld:NoiseSensor:1", "type": "NoiseSensor", "laeq": 58.0},
        )
        assert ok.status_code == 201, ok.text
        bad = c.post(
            "/ngsi-ld/v1/entities",
            json={"id": "urn:ngsi-ld:NoiseSensor:2", "type": "NoiseSensor", "laeq": 500},
        )
        assert bad.status_code == 400 and bad.json()["field"] == "laeq"


def test_a_broken_types_file_stops_the_server_with_the_reason(tmp_path):
    types = tmp_path / "types.toml"
    types.write_text('[[type]]\nname = "noise"\n')
    env = {**os.environ, "CITYPILOT_DATA_DIR": str(tmp_path), "CITYPILOT_TYPES_FILE": str(types)}
    result = subprocess.run(
        [sys.executable, "-m", "citypilot.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "types.toml[0].name" in result.stderr


def test_serve_on_a_port_in_use_stops_at_once_without_opening_the_city(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = citypilot(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert served.returncode != 0
    assert "address already in use" in served.stderr.lower()
    assert not (tmp_path / "city.db").exists()  # the socket is bound before the store opens
