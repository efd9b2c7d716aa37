"""``citypilot demo``: one command gives a living city; Ctrl-C stops it; the next run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from citypilot.bench.server import free_port
from citypilot.demo import DEMO_PASSWORD, DEMO_USER
from citypilot.model.timeutil import parse_instant


def start_demo(data_dir, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "CITYPILOT_DATA_DIR": str(data_dir), "CITYPILOT_LOG_LEVEL": "warning"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "citypilot.cli",
            "demo",
            "--scale",
            "0.1",
            "--speed",  # buses report often whatever the hour (at night they are in depot)
            "30",
            "--port",
            str(port),
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(predicate, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_demo_serves_a_live_city_with_its_recent_past_and_resumes_it(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_demo(tmp_path, port, "--history-hours", "3", "--scenario", "flood")
    try:
        wait_for(lambda: httpx.get(url + "/api/v1/health").status_code == 200, what="server")
        token = httpx.post(
            url + "/api/v1/auth/token", data={"username": DEMO_USER, "password": DEMO_PASSWORD}
        ).json()
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        lights = client.get("/api/v1/map/entities/Streetlight").json()["count"]
        buses = client.get("/api/v1/map/entities/Bus").json()
        assert lights > 1000 and buses["count"] > 0
        assert "roads" in client.get("/api/v1/map/layers").json()["layers"]

        def a_bus_reported() -> bool:
            for bus_id in buses["ids"]:
                hist = client.get(f"/api/v1/history/{bus_id}", params={"attrs": "speed"}).json()
                if len(hist["attrs"].get("speed", [])) >= 2:
                    return True
            return False

        wait_for(a_bus_reported, what="simulated bus reports in history")
        gauge = "urn:ngsi-ld:WaterLevelSensor:001"

        def the_past_was_played() -> list:
            params = {"attrs": "waterLevel", "to": "2100-01-01T00:00:00Z"}
            points = client.get(f"/api/v1/history/{gauge}", params=params).json()["attrs"]
            # the played past only: the live simulator's own readings arrive meanwhile
            started = time.time() - 120
            past = [p for p in points.get("waterLevel", []) if parse_instant(p[0], "t") < started]
            span = parse_instant(past[-1][0], "t") - parse_instant(past[0][0], "t") if past else 0
            return past if span > 2.5 * 3600 else []

        series = wait_for(the_past_was_played, timeout=240, what="3 h of history played")
        # The storm of the flood scenario began before the demo: the river rose through it.
        assert max(level for _, level in series) > series[0][1] + 0.5

        assert client.get("/api/v1/dead-letters").json()["total"] == 0
    finally:
        out = stop(proc)
    assert "Console: " in out and DEMO_USER in out
    assert "Scenario Flood" in out

    # Resumed in real time (at --speed 30 the live devices run hours behind the played
    # past, so their reports would not be the newest until they caught up).
    proc = start_demo(tmp_path, port, "--speed", "1")
    try:
        wait_for(lambda: httpx.get(url + "/api/v1/health").status_code == 200, what="restart")
        again = client.get("/api/v1/map/entities/Streetlight").json()["count"]
        assert again == lights
        # Switching a lamp off is confirmed by the simulated lamp's own report.
        # (the server is busy playing the past day into history: allow it time to answer)
        columns = client.get(
            "/api/v1/map/entities/Streetlight", params={"attrs": "status"}, timeout=60
        ).json()
        lamp = next(
            i for i, s in zip(columns["ids"], columns["attrs"]["status"], strict=True) if s == "ok"
        )
        r = client.post(
            f"/api/v1/entities/{lamp}/commands",
            json={"command": "switch", "args": {"state": "off"}},
            timeout=60,
        )
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        done = wait_for(
            lambda: client.get(location).json()["state"] == "confirmed", what="confirmation"
        )
        assert done
        cmd = client.get(location, timeout=60).json()
        assert cmd["channel"] == "simulator" and cmd["lastReported"] == {"illuminanceLevel": 0.0}
        entity = client.get(
            f"/ngsi-ld/v1/entities/{lamp}", params={"options": "keyValues"}, timeout=60
        ).json()
        assert entity["illuminanceLevel"] == 0 and entity["powerConsumption"] < 1.0
        # The health-emergency mode is confirmed by the simulated readers, buses and
        # signals, and leaving it restores them.
        r = client.post(
            "/api/v1/modes/health-emergency/enter", json={"reason": "demo test"}, timeout=60
        )
        assert r.status_code == 201, r.text
        assert {s["id"]: s["targets"] for s in r.json()["steps"]}["badges-off"] > 0

        def settled(part: str) -> dict:
            mode = client.get("/api/v1/modes/health-emergency", timeout=60).json()["activation"]
            progress = mode["progress"] if part == "enter" else mode["restore"]["progress"]
            return mode if progress["underWay"] == 0 else {}

        on = wait_for(lambda: settled("enter"), what="the mode's commands confirmed")
        doors = [d for d in on["devices"] if d["step"] == "badges-off"]
        assert all(d["state"] == "confirmed" for d in doors), doors[:3]
        assert client.get("/api/v1/modes", timeout=60).json()["level"] == 4
        r = client.post(
            "/api/v1/modes/health-emergency/leave", json={"reason": "demo test"}, timeout=60
        )
        assert r.status_code == 200, r.text
        left = wait_for(lambda: settled("leave"), what="the readers restored")
        assert left["restore"]["outcomes"].get("restored", 0) >= len(doors)
        door = client.get(f"/ngsi-ld/v1/entities/{doors[0]['entity']}", timeout=60).json()
        assert door["badgesEnabled"]["value"] is True
    finally:
        out = stop(proc)
    assert "Resuming the demo city" in out

    other = subprocess.run(
        [sys.executable, "-m", "citypilot.cli", "demo", "--seed", "8", "--scale", "0.1"],
        env={**os.environ, "CITYPILOT_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode != 0 and "--fresh" in other.stderr
