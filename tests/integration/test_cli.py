"""The CLI: users and device keys created from the command line work against the server."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from citypilot.bench.server import server_process


def citypilot(data_dir, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CITYPILOT_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "citypilot.cli", *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_users_and_device_keys_from_the_command_line(tmp_path):
    added = citypilot(tmp_path, "users", "add", "carol", "--role", "operator", "--password",
                      "carol-password")
    assert added.returncode == 0, added.stderr
    short = citypilot(tmp_path, "users", "add", "dave", "--password", "short")
    assert short.returncode == 2 and "8 characters" in short.stderr
    device = citypilot(tmp_path, "devices", "add", "north-gateway")
    key = device.stdout.strip()
    assert device.returncode == 0 and key.startswith("cpd_")
    with server_process(tmp_path) as url:
        r = httpx.post(url + "/api/v1/auth/token",
                       data={"username": "carol", "password": "carol-password"})
        assert r.status_code == 200 and r.json()["role"] == "operator"
        r = httpx.post(url + "/api/v1/ingest", json=[], headers={"X-Device-Key": key})
        assert r.status_code == 200


def test_bad_config_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 'eighty'\n")
    result = citypilot(tmp_path, "--config", str(bad), "users", "add", "x", "--password",
                       "long-enough")
    assert result.returncode == 2 and "port" in result.stderr
