"""The command API over real HTTP: submit, follow, idempotency, roles, bad input, HTTP devices."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import orjson
import pytest

from tests.conftest import ADMIN, VIEWER, Server
from tests.integration.test_api_entities import NGSI, light, problem, uid

BOUND_S = 30.0


def now_iso() -> str:
    """The present instant, as a device would stamp it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_light(server: Server) -> str:
    """A streetlight in the store; no channel reaches it unless a test registers one."""
    doc = light(uid(), illuminanceLevel={"type": "Property", "value": 1.0})
    with server.client() as c:
        assert c.post(f"{NGSI}/entities", json=doc).status_code == 201
    return doc["id"]


def until_state(server: Server, command_id: str, state: str) -> dict[str, Any]:
    """The command once it reached ``state`` (bounded wait on the server's own work)."""
    deadline = time.monotonic() + BOUND_S
    with server.client() as c:
        while True:
            body = c.get(f"/api/v1/commands/{command_id}").json()
            if body["state"] == state:
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.02)


def test_submit_answers_202_with_location_and_the_command_is_kept(server: Server):
    lamp = new_light(server)
    with server.client() as c:
        r = c.post(
            f"/api/v1/entities/{lamp}/commands",
            json={"command": "setDimming", "args": {"level": 40}, "reason": "quiet street"},
        )
        assert r.status_code == 202, r.text
        cmd = r.json()
        assert r.headers["location"] == f"/api/v1/commands/{cmd['id']}"
        assert cmd["state"] == "pending" and cmd["requestedBy"] == "operator"
        assert cmd["expected"] == {"illuminanceLevel": 0.4}
        got = c.get(r.headers["location"]).json()
        assert got["reason"] == "quiet street"
        assert got["transitions"][0]["state"] == "pending"
        assert got["transitions"][0]["by"] == "operator"
        page = c.get("/api/v1/commands", params={"entity": lamp}).json()
        assert page["total"] == 1 and page["commands"][0]["id"] == cmd["id"]
        assert (
            c.get("/api/v1/commands", params={"entity": lamp, "state": "confirmed"}).json()["total"]
            == 0
        )


def test_the_same_idempotency_key_twice_makes_one_command(server: Server):
    lamp = new_light(server)
    body = {"command": "switch", "args": {"state": "off"}, "idempotencyKey": uid("key")}
    with server.client() as c:
        one = c.post(f"/api/v1/entities/{lamp}/commands", json=body).json()
        two = c.post(f"/api/v1/entities/{lamp}/commands", json=body).json()
        assert one["id"] == two["id"]
        assert c.get("/api/v1/commands", params={"entity": lamp}).json()["total"] == 1


def test_viewers_may_read_but_not_command(server: Server):
    lamp = new_light(server)
    with server.client(VIEWER) as c:
        r = c.post(f"/api/v1/entities/{lamp}/commands", json={"command": "switch"})
        problem(r, 403, "Forbidden")
        assert c.get("/api/v1/commands").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": "explode"}, "command"),
        ({"command": "setDimming", "args": {"level": 101}}, "args.level"),
        ({"command": "setDimming", "args": {"level": "half"}}, "args.level"),
        ({"command": "disable"}, "command"),  # an AccessPoint command
        ({"command": "switch", "args": {"state": "on"}, "colour": 1}, "colour"),
        ({"command": "switch", "args": {"state": "on"}, "deadline": "soon"}, "deadline"),
    ],
)
def test_bad_commands_get_400_naming_the_field(server: Server, body: dict, field: str):
    lamp = new_light(server)
    with server.client() as c:
        problem(
            c.post(f"/api/v1/entities/{lamp}/commands", json=body), 400, "BadRequestData", field
        )
        assert c.get("/api/v1/commands", params={"entity": lamp}).json()["total"] == 0


def test_unknown_entity_and_command_are_404(server: Server):
    with server.client() as c:
        r = c.post(
            "/api/v1/entities/urn:ngsi-ld:Streetlight:none/commands",
            json={"command": "switch", "args": {"state": "on"}},
        )
        problem(r, 404, "ResourceNotFound")
        problem(c.get("/api/v1/commands/cmd-none"), 404, "ResourceNotFound")
        problem(c.get("/api/v1/commands", params={"state": "lost"}), 400, "BadRequestData", "state")


class Device(BaseHTTPRequestHandler):
    """An HTTP device: answers ``Device.answer`` and keeps what it was sent."""

    answer: tuple[int, bytes] = (200, b'{"status": "accepted"}')
    received: list[dict[str, Any]] = []  # noqa: RUF012 (shared by the test and the server)

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Device.received.append(orjson.loads(self.rfile.read(length)))
        status, body = Device.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def device() -> Iterator[str]:
    """A local HTTP device; its URL."""
    Device.received = []
    httpd = HTTPServer(("127.0.0.1", 0), Device)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/commands"
    httpd.shutdown()


def test_an_http_device_answers_at_once_and_its_report_confirms(server: Server, device: str):
    lamp = new_light(server)
    Device.answer = (200, b'{"status": "accepted"}')
    with server.client(ADMIN) as admin:
        r = admin.put(f"/api/v1/commands/endpoints/{lamp}", json={"url": device})
        assert r.status_code == 200
    with server.client() as c:
        cmd = c.post(
            f"/api/v1/entities/{lamp}/commands",
            json={"command": "switch", "args": {"state": "off"}},
        ).json()
    acked = until_state(server, cmd["id"], "acknowledged")
    assert acked["channel"] == "http"
    assert Device.received[0]["id"] == cmd["id"] and Device.received[0]["args"] == {"state": "off"}
    with server.device() as d:
        report = {
            "id": lamp,
            "type": "Streetlight",
            "observedAt": now_iso(),
            "attrs": {"illuminanceLevel": 0.0, "powerState": "off"},
        }
        assert d.post("/api/v1/ingest", json=[report]).status_code == 200
    confirmed = until_state(server, cmd["id"], "confirmed")
    states = [t["state"] for t in confirmed["transitions"]]
    assert states == ["pending", "sent", "acknowledged", "confirmed"]
    with server.client(VIEWER) as c:
        view = c.get(f"/api/v1/entities/{lamp}/desired").json()
    assert view["desired"]["illuminanceLevel"]["value"] == 0.0
    assert view["reported"]["illuminanceLevel"]["value"] == 0.0 and view["diverged"] == []


def test_an_http_device_may_answer_later_and_a_forged_answer_is_a_dead_letter(
    server: Server, device: str
):
    lamp = new_light(server)
    Device.answer = (202, b"")
    with server.client(ADMIN) as admin:
        admin.put(f"/api/v1/commands/endpoints/{lamp}", json={"url": device})
        r = admin.put(f"/api/v1/commands/endpoints/{lamp}", json={"url": "ftp://x"})
        problem(r, 400, "BadRequestData", "url")
    with server.client() as c:
        cmd = c.post(
            f"/api/v1/entities/{lamp}/commands",
            json={"command": "setDimming", "args": {"level": 5}},
        ).json()
    until_state(server, cmd["id"], "sent")
    with server.device() as d:
        r = d.post(
            f"/api/v1/commands/{cmd['id']}/ack", json={"status": "rejected", "reason": "busy"}
        )
        assert r.status_code == 200 and r.json()["state"] == "rejected"
        problem(
            d.post(f"/api/v1/commands/{cmd['id']}/ack", json={"status": "maybe"}),
            400,
            "BadRequestData",
            "body.status",
        )
        r = d.post("/api/v1/commands/cmd-forged/ack", json={"status": "accepted"})
        problem(r, 404, "ResourceNotFound")
    with server.client() as c:
        letters = c.get("/api/v1/dead-letters").json()
    text = orjson.dumps(letters).decode()
    assert "cmd-forged" in text and "never sent" in text


def test_a_device_key_answers_only_for_the_entities_it_is_bound_to(server: Server, device: str):
    lamp, elsewhere = new_light(server), new_light(server)
    Device.answer = (202, b"")
    with server.client(ADMIN) as admin:
        admin.put(f"/api/v1/commands/endpoints/{lamp}", json={"url": device})
        body = {"name": f"gw-{uid()}", "binding": {"entities": [elsewhere]}}
        key = admin.post("/api/v1/devices", json=body).json()["key"]
    with server.client() as c:
        cmd = c.post(
            f"/api/v1/entities/{lamp}/commands", json={"command": "switch", "args": {"state": "on"}}
        ).json()
    until_state(server, cmd["id"], "sent")
    with server.client(None) as anonymous:
        r = anonymous.post(
            f"/api/v1/commands/{cmd['id']}/ack",
            json={"status": "accepted"},
            headers={"X-Device-Key": key},
        )
    problem(r, 404, "ResourceNotFound")
    with server.client() as c:
        assert c.get(f"/api/v1/commands/{cmd['id']}").json()["state"] == "sent"
