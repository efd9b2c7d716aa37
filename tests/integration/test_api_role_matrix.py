"""Every operation of the OpenAPI description × every kind of caller: the answer is the
one the operation's declared security (``security``, ``x-citypilot-role``) implies.

The operations come from the description itself, so a new endpoint is covered the day
it is added. A public operation must answer every caller as it answers one without
credential (it ignores bearer tokens and device keys). Each request is harmless: path
parameters name nothing that exists and a JSON body is ``{}``, so an admitted caller
gets a 2xx or a 4xx other than 401/403 and nothing is changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from citypilot.api.app import create_app
from citypilot.config import Settings
from citypilot.security.roles import role_allows
from tests.conftest import ADMIN, DEVICE_KEY, OPERATOR, VIEWER, Server

ABSENT = "urn:ngsi-ld:Streetlight:role-matrix-absent"
ALLOWED = "allowed"  # any answer but 401 and 403
PUBLIC = "as without credential"  # a public operation ignores credentials


def _description() -> dict[str, Any]:
    """The description the server under test serves (same code, no server needed)."""
    return create_app(Settings(data_dir="/nonexistent/role-matrix")).openapi()


OPERATIONS = [
    (method.upper(), path, op)
    for path, ops in _description()["paths"].items()
    for method, op in ops.items()
]


@dataclass(frozen=True)
class Caller:
    """A kind of caller: how its request is authenticated, and what it may do."""

    headers: Callable[[Server], dict[str, str]]
    expect: Callable[[dict[str, Any]], str | int]


def _schemes(op: dict[str, Any]) -> set[str]:
    return {scheme for requirement in op["security"] for scheme in requirement}


def _no_credential(op: dict[str, Any]) -> str | int:
    return 401 if op["security"] else PUBLIC


def _person(role: str) -> Callable[[dict[str, Any]], str | int]:
    def expect(op: dict[str, Any]) -> str | int:
        if not op["security"]:
            return PUBLIC
        if "bearerAuth" not in _schemes(op):
            return 401
        return ALLOWED if role_allows(role, op["x-citypilot-role"]) else 403

    return expect


def _device(op: dict[str, Any]) -> str | int:
    if not op["security"]:
        return PUBLIC
    return ALLOWED if "deviceKey" in _schemes(op) else 401


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _resigned(server: Server, key: str | None, **claims: Any) -> dict[str, str]:
    """A real viewer's token with ``claims`` changed, signed with ``key`` (None: the
    server's own key), whatever claims the token format carries."""
    token = server.token(VIEWER)
    header = jwt.get_unverified_header(token)
    payload = {**jwt.decode(token, options={"verify_signature": False}), **claims}
    signing_key = key or Settings(data_dir=server.data_dir).signing_key()
    return _bearer(jwt.encode(payload, signing_key, algorithm=header["alg"]))


CALLERS: dict[str, Caller] = {
    "no credential": Caller(lambda s: {}, _no_credential),
    "invalid token": Caller(lambda s: _bearer("not-a-token"), _no_credential),
    "expired token": Caller(
        lambda s: _resigned(s, None, exp=int(time.time()) - 60), _no_credential
    ),
    "forged token": Caller(
        lambda s: _resigned(s, "not-the-server-key-" * 3, role="admin"), _no_credential
    ),
    "viewer": Caller(lambda s: _bearer(s.token(VIEWER)), _person("viewer")),
    "operator": Caller(lambda s: _bearer(s.token(OPERATOR)), _person("operator")),
    "admin": Caller(lambda s: _bearer(s.token(ADMIN)), _person("admin")),
    "device key": Caller(lambda s: {"X-Device-Key": DEVICE_KEY}, _device),
    # Scoped callers go here, each with the rule of what it may do, e.g. an operator of
    # another municipality and a police officer (see security/scopes.py).
}


def _request(server: Server, method: str, path: str, op: dict[str, Any]) -> httpx.Request:
    """A harmless request for the operation: absent resources, an empty JSON body."""
    for param in op.get("parameters", []):
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", ABSENT)
    content = op.get("requestBody", {}).get("content", {})
    kwargs: dict[str, Any] = {}
    if "application/json" in content:
        kwargs["json"] = {}
    elif "application/x-www-form-urlencoded" in content:
        kwargs["data"] = {}
    return httpx.Request(method, server.url + path, **kwargs)


def _outcome(response: httpx.Response, expected: str | int, anonymous: int) -> str | int:
    if expected == PUBLIC:
        return PUBLIC if response.status_code == anonymous else response.status_code
    return response.status_code if response.status_code in (401, 403) else ALLOWED


@pytest.mark.parametrize(
    ("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_each_caller_gets_what_the_description_declares(
    server: Server, method: str, path: str, op: dict[str, Any]
):
    wrong = {}
    with httpx.Client(timeout=30) as client:
        anonymous = client.send(_request(server, method, path, op)).status_code
        for name, caller in CALLERS.items():
            request = _request(server, method, path, op)
            request.headers.update(caller.headers(server))
            response = client.send(request)
            assert response.status_code < 500, (name, response.text)
            expected = caller.expect(op)
            if _outcome(response, expected, anonymous) != expected:
                wrong[name] = (response.status_code, response.text[:200])
            elif expected != PUBLIC and response.status_code in (401, 403):
                assert response.headers["content-type"] == "application/problem+json"
    assert not wrong, f"expected {[(n, c.expect(op)) for n, c in CALLERS.items()]}: {wrong}"


def test_the_server_serves_the_description_the_matrix_is_built_from(server: Server):
    served = httpx.get(server.url + "/openapi.json").json()
    assert [(m, p) for m, p, _ in OPERATIONS] == [
        (method.upper(), path) for path, ops in served["paths"].items() for method in ops
    ]
