"""Simulated devices behind an HTTP command callback, for the browser tests.

Each accepts its commands, answers at once, then reports its new state through the
ingest API with its device key, as a real gateway would: the report is what
confirms the command. ``lamp_device`` is a streetlight (level and power draw);
``mode_devices`` the badge readers, buses and signals a city mode commands.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import orjson

RATED_W = 60.0
#: What a device reports after a command: {attribute: value}, from the command.
Reaction = Callable[[dict[str, Any]], dict[str, Any]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def callback_device(server_url: str, device_key: str, react: Reaction) -> Iterator[str]:
    """Run a device gateway that accepts every command and reports ``react(command)``;
    yields its callback URL."""

    def report(cmd: dict[str, Any]) -> None:
        entity_type = cmd["entityId"].split(":")[2]
        observation = {
            "id": cmd["entityId"],
            "type": entity_type,
            "observedAt": _now(),
            "attrs": react(cmd),
        }
        with httpx.Client(base_url=server_url, headers={"X-Device-Key": device_key}) as client:
            client.post("/api/v1/ingest", json=[observation]).raise_for_status()

    class Device(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            cmd: dict[str, Any] = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = orjson.dumps({"status": "accepted", "at": _now()})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            threading.Thread(target=report, args=(cmd,), daemon=True).start()

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    httpd = HTTPServer(("127.0.0.1", 0), Device)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()


def _lamp(cmd: dict[str, Any]) -> dict[str, Any]:
    args = cmd["args"]
    if cmd["command"] == "setDimming":
        level = args["level"] / 100
    else:
        level = 1.0 if args["state"] == "on" else 0.0
    power = round(RATED_W * (0.1 + 0.9 * level) + 1.0, 1) if level > 0 else 0.3
    return {
        "illuminanceLevel": level,
        "powerConsumption": power,
        "powerState": "off" if level == 0 else ("on" if level >= 0.99 else "low"),
    }


def _mode_device(cmd: dict[str, Any]) -> dict[str, Any]:
    name, args = cmd["command"], cmd["args"]
    if name in ("disable", "enable"):
        return {"badgesEnabled": name == "enable"}
    if name == "allowGroups":
        return {"allowedGroups": args["groups"]}
    if name == "sendMessage":
        return {"displayMessage": args["text"]}
    if name == "requestPriority":
        return {"priorityApproach": args["approach"], "controlMode": "priority"}
    if name == "cancelPriority":
        return {"priorityApproach": "none", "controlMode": "actuated"}
    if name == "setPlan":
        return {"plan": args["plan"]}
    raise AssertionError(f"no simulated answer to {name}")


@contextmanager
def lamp_device(server_url: str, device_key: str) -> Iterator[str]:
    """Run the simulated lamp; yields its callback URL."""
    with callback_device(server_url, device_key, _lamp) as url:
        yield url


@contextmanager
def mode_devices(server_url: str, device_key: str) -> Iterator[str]:
    """Run simulated badge readers, buses and signals; yields their callback URL."""
    with callback_device(server_url, device_key, _mode_device) as url:
        yield url
