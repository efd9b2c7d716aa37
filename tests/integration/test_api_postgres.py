"""The same API on PostgreSQL + PostGIS: ``citypilot --config`` selects it, behaviour is equal."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from citypilot.bench.server import server_process


def test_server_on_postgres_via_config_file(tmp_path, postgres_dsn):
    config = tmp_path / "city.toml"
    config.write_text(f'store = "postgres"\npostgres_dsn = "{postgres_dsn}"\n')
    env = {**os.environ, "CITYPILOT_CONFIG": str(config), "CITYPILOT_DATA_DIR": str(tmp_path)}
    keys = []
    for args in (
        ["users", "add", "op", "--role", "operator", "--password-stdin"],
        ["devices", "add", "gw"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "citypilot.cli", *args],
            env=env,
            input="pg-operator-password\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        keys.append(done.stdout.strip())
    device_key = keys[1]
    with server_process(tmp_path, {"CITYPILOT_CONFIG": str(config)}) as url:
        health = httpx.get(url + "/api/v1/health").json()
        assert health["store"] == "postgres"
        token = httpx.post(
            url + "/api/v1/auth/token", data={"username": "op", "password": "pg-operator-password"}
        ).json()
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token['access_token']}"})
        bus = {
            "id": "urn:ngsi-ld:Bus:7",
            "type": "Bus",
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [5.0, 47.0]},
            },
        }
        assert c.post("/ngsi-ld/v1/entities", json=bus).status_code == 201
        moved = [
            {
                "id": "urn:ngsi-ld:Bus:7",
                "type": "Bus",
                "observedAt": f"2026-11-20T10:0{i}:00Z",
                "attrs": {
                    "speed": 30.0 + i,
                    "delay": 60 * i,
                    "location": {"type": "Point", "coordinates": [5.0 + i / 100, 47.0]},
                },
            }
            for i in range(3)
        ]
        r = httpx.post(url + "/api/v1/ingest", json=moved, headers={"X-Device-Key": device_key})
        assert r.status_code == 200 and r.json()["accepted"] == 3
        near = c.get(
            "/ngsi-ld/v1/entities",
            params={
                "type": "Bus",
                "georel": "near;maxDistance==300",
                "geometry": "Point",
                "coordinates": "[5.02, 47.0]",
                "q": "delay>=120",
                "options": "keyValues",
            },
        ).json()
        assert [e["id"] for e in near] == ["urn:ngsi-ld:Bus:7"]
        hist = c.get("/api/v1/history/urn:ngsi-ld:Bus:7", params={"attrs": "speed"}).json()
        assert [v for _, v in hist["attrs"]["speed"]] == [30.0, 31.0, 32.0]
        layer = c.get("/api/v1/map/entities/Bus").json()
        assert layer["count"] == 1 and layer["lon"] == [5.02]
