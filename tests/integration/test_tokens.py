"""Short-lived access tokens with refresh, checked against the account on each request:
a disabled, demoted or re-passworded person's tokens stop at once, and so does their
live stream."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets

from citypilot.bench.processes import wait_until
from tests.conftest import ADMIN, Server, stream_protocols
from tests.integration.test_accounts import STRONG, cli
from tests.integration.test_api_entities import NGSI, light

TOKEN, REFRESH = "/api/v1/auth/token", "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"


def person(server: Server, role: str = "operator") -> tuple[str, dict]:
    """A new person of ``role`` and their login answer."""
    name = f"p{uuid.uuid4().hex[:10]}"
    with server.client(ADMIN) as c:
        r = c.post("/api/v1/users", json={"username": name, "password": STRONG, "role": role})
        assert r.status_code == 201, r.text
    answer = httpx.post(server.url + TOKEN, data={"username": name, "password": STRONG})
    assert answer.status_code == 200
    return name, answer.json()


def writes(server: Server, access: str) -> int:
    """The status of an entity creation with this access token."""
    doc = light(uuid.uuid4().hex[:12])
    r = httpx.post(
        server.url + f"{NGSI}/entities", json=doc, headers={"Authorization": f"Bearer {access}"}
    )
    return r.status_code


def test_login_gives_a_short_access_token_and_a_refresh_token(server: Server):
    _, answer = person(server)
    assert answer["expires_in"] == 15 * 60 and answer["refresh_expires_in"] == 12 * 3600
    fresh = httpx.post(server.url + REFRESH, data={"refresh_token": answer["refresh_token"]})
    assert fresh.status_code == 200 and fresh.headers["cache-control"] == "no-store"
    assert writes(server, fresh.json()["access_token"]) == 201
    # neither token does the other's job
    as_refresh = httpx.post(server.url + REFRESH, data={"refresh_token": answer["access_token"]})
    assert as_refresh.status_code == 401
    assert writes(server, answer["refresh_token"]) == 401


def test_a_demoted_persons_tokens_stop_at_once_and_the_new_role_applies(server: Server):
    name, answer = person(server)
    assert writes(server, answer["access_token"]) == 201
    with server.client(ADMIN) as c:
        assert c.patch(f"/api/v1/users/{name}", json={"role": "viewer"}).status_code == 200
    assert writes(server, answer["access_token"]) == 401  # revoked, not a stale operator
    refused = httpx.post(server.url + REFRESH, data={"refresh_token": answer["refresh_token"]})
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    again = httpx.post(server.url + TOKEN, data={"username": name, "password": STRONG}).json()
    assert again["role"] == "viewer" and writes(server, again["access_token"]) == 403


def test_a_disabled_or_repassworded_persons_tokens_stop(server: Server):
    name, answer = person(server)
    with server.client(ADMIN) as c:
        c.put(f"/api/v1/users/{name}/password", json={"password": "Birch-granite-oar-31"})
    assert writes(server, answer["access_token"]) == 401
    other_name, other = person(server)
    with server.client(ADMIN) as c:
        c.patch(f"/api/v1/users/{other_name}", json={"disabled": True})
    assert writes(server, other["access_token"]) == 401
    refused = httpx.post(server.url + REFRESH, data={"refresh_token": other["refresh_token"]})
    assert refused.status_code == 401


def test_a_change_from_the_cli_reaches_the_running_server(server: Server):
    name, answer = person(server)
    assert cli(server, "users", "disable", name).returncode == 0
    wait_until(
        lambda: writes(server, answer["access_token"]) == 401,
        "the server to see the account disabled by the CLI",
        10,
    )


@pytest.mark.parametrize(
    ("ending", "said"), [("disable", "disabled"), ("sign out", "session has ended")]
)
def test_a_live_stream_closes_when_its_credential_ends(server: Server, ending: str, said: str):
    name, answer = person(server, "viewer")

    async def scenario() -> tuple[dict, int | None]:
        url = server.url.replace("http", "ws") + "/api/v1/stream"
        protocols = stream_protocols(answer["access_token"])
        async with websockets.connect(url, subprotocols=protocols) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            async with httpx.AsyncClient(
                base_url=server.url, headers={"Authorization": f"Bearer {server.token(ADMIN)}"}
            ) as admin:
                if ending == "disable":
                    r = await admin.patch(f"/api/v1/users/{name}", json={"disabled": True})
                else:
                    r = await admin.post(LOGOUT, data={"refresh_token": answer["refresh_token"]})
                assert r.is_success
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["type"] == "error":
                    break
            with_code = None
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except websockets.ConnectionClosed as closed:
                with_code = closed.rcvd.code if closed.rcvd else None
            return message, with_code

    message, code = asyncio.run(scenario())
    assert message["error"]["status"] == 401 and said in message["error"]["detail"]
    assert code == 1008


def _refresh(server: Server, refresh_token: str) -> httpx.Response:
    return httpx.post(server.url + REFRESH, data={"refresh_token": refresh_token})


def _audit(server: Server, **params: str) -> list[dict]:
    with server.client(ADMIN) as c:
        return c.get("/api/v1/audit", params=params).json()["items"]


def test_a_refresh_token_is_good_once_and_a_reuse_ends_its_session(server: Server):
    name, answer = person(server)
    rotated = _refresh(server, answer["refresh_token"])
    assert rotated.status_code == 200
    fresh = rotated.json()
    assert fresh["refresh_token"] != answer["refresh_token"]
    assert writes(server, fresh["access_token"]) == 201
    # the spent token once more, as whoever stole it would: the whole session ends
    reused = _refresh(server, answer["refresh_token"])
    assert reused.status_code == 401 and "used already" in reused.json()["detail"]
    assert _refresh(server, fresh["refresh_token"]).status_code == 401
    assert writes(server, fresh["access_token"]) == 401
    assert writes(server, answer["access_token"]) == 401
    [entry] = _audit(server, who=name, action="session.reuse")
    assert entry["outcome"] == "denied"
    # a new login is a new session
    again = httpx.post(server.url + TOKEN, data={"username": name, "password": STRONG})
    assert writes(server, again.json()["access_token"]) == 201


def test_logging_out_ends_the_session_and_its_tokens(server: Server):
    name, answer = person(server)
    _, other = person(server)  # someone else's session is not touched
    assert writes(server, answer["access_token"]) == 201
    out = httpx.post(server.url + LOGOUT, data={"refresh_token": answer["refresh_token"]})
    assert out.status_code == 204
    assert writes(server, answer["access_token"]) == 401
    assert _refresh(server, answer["refresh_token"]).status_code == 401
    assert writes(server, other["access_token"]) == 201
    # twice is once; an access token or a forged one is no refresh token
    again = httpx.post(server.url + LOGOUT, data={"refresh_token": answer["refresh_token"]})
    assert again.status_code == 204
    assert (
        httpx.post(server.url + LOGOUT, data={"refresh_token": other["access_token"]}).status_code
        == 401
    )
    assert [e["action"] for e in _audit(server, who=name, action="logout")] == ["logout"]
