"""Sign-in with an OpenID Connect provider: tokens checked against the provider's JWKS
(a key set generated here, served on loopback), groups mapped to CityPilot grants."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from citypilot.bench.server import server_process
from tests.conftest import Server, seed_accounts, stream_protocols
from tests.integration.test_api_entities import NGSI, light

ISSUER = "https://idp.example.test/realms/metropole"
AUDIENCE = "citypilot"
GROUPS = {
    "control-room": [{"role": "operator"}],
    "police-desk": [{"role": "viewer", "department": "police"}],
}


class Provider:
    """An identity provider's signing keys, its JWKS on loopback, and its tokens."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "key-1"
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(provider.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/jwks.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def token(self, groups: list[str], key=None, kid: str | None = None, **claims) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": uuid.uuid4().hex,
            "preferred_username": "dana",
            "groups": groups,
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        return jwt.encode(
            body, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    provider = Provider()
    yield provider
    provider.http.shutdown()


@pytest.fixture(scope="module")
def city(idp: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("oidc-data")
    asyncio.run(seed_accounts(data))
    env = {
        "CITYPILOT_OIDC_ISSUER": ISSUER,
        "CITYPILOT_OIDC_AUDIENCE": AUDIENCE,
        "CITYPILOT_OIDC_JWKS_URL": idp.url,
        "CITYPILOT_OIDC_GROUP_GRANTS": json.dumps(GROUPS),
    }
    with server_process(data, extra_env=env) as url:
        yield Server(url, data)


def call(city: Server, token: str, method: str = "GET", path: str = "/api/v1/auth/me", **kw):
    return httpx.request(
        method, city.url + path, headers={"Authorization": f"Bearer {token}"}, **kw
    )


def test_a_provider_token_signs_in_with_the_grants_of_its_groups(city: Server, idp: Provider):
    operator = idp.token(["control-room", "unrelated"])
    me = call(city, operator)
    assert me.status_code == 200 and me.json() == {"username": "oidc:dana", "role": "operator"}
    created = call(city, operator, "POST", f"{NGSI}/entities", json=light(uuid.uuid4().hex[:10]))
    assert created.status_code == 201
    police = idp.token(["police-desk"])
    assert call(city, police).json()["role"] == "viewer"
    write = call(city, police, "POST", f"{NGSI}/entities", json=light(uuid.uuid4().hex[:10]))
    assert write.status_code == 403


def test_tokens_the_provider_did_not_sign_for_us_are_refused(city: Server, idp: Provider):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    refused = {
        "another key": idp.token(["control-room"], key=other_key),
        "an unknown key id": idp.token(["control-room"], kid="key-9"),
        "another audience": idp.token(["control-room"], aud="someone-else"),
        "another issuer": idp.token(["control-room"], iss="https://evil.example.test"),
        "expired": idp.token(["control-room"], iat=now - 900, exp=now - 600),
    }
    for why, token in refused.items():
        r = call(city, token)
        assert r.status_code == 401, (why, r.text)
    no_group = call(city, idp.token(["visitors"]))
    assert no_group.status_code == 403 and "maps to a CityPilot role" in no_group.json()["detail"]


def test_local_users_sign_in_beside_the_provider(city: Server):
    with city.client() as c:
        assert c.get("/api/v1/auth/me").json()["role"] == "operator"


def test_a_provider_token_opens_the_live_stream(city: Server, idp: Provider):
    async def hello() -> dict:
        url = city.url.replace("http", "ws") + "/api/v1/stream"
        protocols = stream_protocols(idp.token(["control-room"]))
        async with websockets.connect(url, subprotocols=protocols) as ws:
            return json.loads(await ws.recv())

    assert asyncio.run(hello())["type"] == "hello"
