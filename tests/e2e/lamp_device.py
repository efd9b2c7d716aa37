"""A simulated streetlight behind an HTTP command callback, for the browser tests.

It accepts ``setDimming`` and ``switch``, answers at once, then reports its new level
and power draw through the ingest API with its device key, as a real lamp's gateway
would: the report is what confirms the command.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import orjson

RATED_W = 60.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def lamp_device(server_url: str, device_key: str) -> Iterator[str]:
    """Run the simulated lamp; yields its callback URL."""

    def report(entity_id: str, level: float) -> None:
        power = round(RATED_W * (0.1 + 0.9 * level) + 1.0, 1) if level > 0 else 0.3
        attrs = {
            "illuminanceLevel": level,
            "powerConsumption": power,
            "powerState": "off" if level == 0 else ("on" if level >= 0.99 else "low"),
        }
        observation = {"id": entity_id, "type": "Streetlight", "observedAt": _now(), "attrs": attrs}
        with httpx.Client(base_url=server_url, headers={"X-Device-Key": device_key}) as client:
            client.post("/api/v1/ingest", json=[observation]).raise_for_status()

    class Lamp(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            cmd: dict[str, Any] = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            args = cmd["args"]
            if cmd["command"] == "setDimming":
                level = args["level"] / 100
            else:
                level = 1.0 if args["state"] == "on" else 0.0
            body = orjson.dumps({"status": "accepted", "at": _now()})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            threading.Thread(target=report, args=(cmd["entityId"], level), daemon=True).start()

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    httpd = HTTPServer(("127.0.0.1", 0), Lamp)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()
