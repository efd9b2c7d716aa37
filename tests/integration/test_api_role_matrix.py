"""Every operation of the OpenAPI description × every kind of caller: the answer is the
one the operation's declared security (``security``, ``x-citypilot-role``) implies.

The operations come from the description itself, so a new endpoint is covered the day
it is added. A public operation must answer every caller as it answers one without
credential (it ignores bearer tokens and device keys). Each request is harmless: path
parameters name nothing that exists and a JSON body is ``{}``, so an admitted caller
gets a 2xx or a 4xx other than 401/403 and nothing is changed.

Scoped callers name real things in their path parameters: an operator of municipality
B names A's streetlight, alarm, command, incident, service request and subscription,
and must find each missing (404: what a caller may not see does not exist for it, see
``api/access.py``) and change nothing; a viewer of the whole metropole names the
police's camera and finds it missing; the police read their own unit. Every listing
they may call (every operation without path parameters) must not mention what they
may not see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from citypilot.api.app import create_app
from citypilot.bench.server import server_process
from citypilot.config import Settings
from citypilot.security.roles import role_allows
from citypilot.security.scopes import Grant
from tests.conftest import ADMIN, DEVICE_KEY, OPERATOR, VIEWER, Server, seed_accounts

ABSENT = "urn:ngsi-ld:Streetlight:role-matrix-absent"
ALLOWED = "allowed"  # any answer but 401 and 403 (and, naming a real thing, 404)
HIDDEN = "missing"  # 404: the caller may not see what the path names
PUBLIC = "as without credential"  # a public operation ignores credentials
NGSI = "/ngsi-ld/v1"
MUNI_A = "urn:ngsi-ld:Municipality:matrix-a"
MUNI_B = "urn:ngsi-ld:Municipality:matrix-b"
LIGHT_A = "urn:ngsi-ld:Streetlight:matrix-a"
LIGHT_B = "urn:ngsi-ld:Streetlight:matrix-b"
UNIT_A = "urn:ngsi-ld:PoliceUnit:matrix-a"
CAMERA_B = "urn:ngsi-ld:Camera:matrix-b"
REQUEST_A = "matrix-sr-a"
SUBSCRIPTION_A = "urn:ngsi-ld:Subscription:matrix-a"
PASSWORD = "correct-horse-battery-staple"
OPERATOR_B = ("operator-b", PASSWORD)
POLICE = ("police", PASSWORD)
OPERATOR_A = ("operator-a", PASSWORD)
#: the scoped people, beside the test people of every server
SCOPED = {
    OPERATOR_A[0]: (Grant("operator", MUNI_A),),
    OPERATOR_B[0]: (Grant("operator", MUNI_B),),
    POLICE[0]: (Grant("operator", department="police"),),
}


def _description() -> dict[str, Any]:
    """The description the server under test serves (same code, no server needed)."""
    return create_app(Settings(data_dir="/nonexistent/role-matrix")).openapi()


def _square(lon: float) -> dict[str, Any]:
    ring = [[lon, 47.0], [lon + 0.1, 47.0], [lon + 0.1, 47.1], [lon, 47.1], [lon, 47.0]]
    return {"type": "Polygon", "coordinates": [ring]}


def _point(lon: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, 47.05]}


def _doc(entity_id: str, municipality: str, lon: float, **attrs: Any) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": entity_id.split(":")[2],
        "location": {"type": "GeoProperty", "value": _point(lon)},
        "refMunicipality": {"type": "Relationship", "object": municipality},
        **attrs,
    }


async def _seed_people(data_dir: Path) -> None:
    from citypilot.security.passwords import hash_password
    from citypilot.store.base import Account
    from citypilot.store.sqlite import SQLiteStore

    await seed_accounts(data_dir)
    store = SQLiteStore(data_dir / "city.db")
    await store.open()
    hashed = hash_password(PASSWORD)
    for name, grants in SCOPED.items():
        await store.put_account(Account(name, hashed, "operator", grants=grants))
    await store.close()


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202, 204), response.text
    return response.json() if response.content else {}


def _seed_city(town: Server) -> dict[str, str]:
    """Municipalities A and B, a streetlight in each, the police's unit in A and camera in
    B, and in A an alarm, a command, an incident, a service request and a subscription;
    the ids of A's things by the path parameter that names them."""
    light = {"illuminanceLevel": {"type": "Property", "value": 0.5}}
    docs = [
        {
            "id": m,
            "type": "Municipality",
            "name": {"type": "Property", "value": m[-8:]},
            "location": {"type": "GeoProperty", "value": _square(lon)},
        }
        for m, lon in ((MUNI_A, 5.0), (MUNI_B, 5.2))
    ]
    docs += [_doc(LIGHT_A, MUNI_A, 5.05, **light), _doc(LIGHT_B, MUNI_B, 5.25, **light)]
    docs += [_doc(UNIT_A, MUNI_A, 5.06), _doc(CAMERA_B, MUNI_B, 5.26)]
    docs.append(
        {
            "id": f"urn:ngsi-ld:ServiceRequest:{REQUEST_A}",
            "type": "ServiceRequest",
            "refMunicipality": {"type": "Relationship", "object": MUNI_A},
            "status": {"type": "Property", "value": "open"},
        }
    )
    with town.client(ADMIN) as c:
        _created(c.post(f"{NGSI}/entityOperations/upsert", json=docs))
        alarm = _created(
            c.post(
                "/api/v1/alarms",
                json={"entity": LIGHT_A, "severity": "low", "message": "matrix"},
            )
        )
        command = _created(
            c.post(
                f"/api/v1/entities/{LIGHT_A}/commands",
                json={"command": "switch", "args": {"state": "on"}},
            )
        )
        incident = _created(
            c.post(
                "/api/v1/incidents",
                json={"type": "other", "location": _point(5.07)},
            )
        )
    with town.client(OPERATOR_A) as c:
        subscription = {
            "id": SUBSCRIPTION_A,
            "type": "Subscription",
            "entities": [{"type": "Streetlight", "id": LIGHT_A}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/matrix"}},
        }
        _created(c.post(f"{NGSI}/subscriptions", json=subscription))
    return {
        "entity_id": LIGHT_A,
        "attr": "illuminanceLevel",
        "alarm_id": alarm["id"],
        "command_id": command["id"],
        "incident_id": incident["id"],
        "service_request_id": REQUEST_A,
        "subscription_id": SUBSCRIPTION_A,
    }


@dataclass
class World:
    """The matrix's own server and the ids of municipality A's things."""

    server: Server
    of_a: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A server of its own (the scoped people and A's things are the matrix's alone)."""
    data = tmp_path_factory.mktemp("role-matrix")
    asyncio.run(_seed_people(data))
    with server_process(data) as url:
        town = Server(url, data)
        yield World(town, _seed_city(town))


OPERATIONS = [
    (method.upper(), path, op)
    for path, ops in _description()["paths"].items()
    for method, op in ops.items()
]


@dataclass(frozen=True)
class Caller:
    """A kind of caller: how its request is authenticated, and what it may do.

    ``names``: what its path parameters name, by parameter (``A``: municipality A's thing
    of that kind; else an id), for operations it is expected to be refused with
    ``HIDDEN`` or, with ``reads``, to read; ``hides``: the ids its listings must not
    mention.
    """

    headers: Callable[[Server], dict[str, str]]
    expect: Callable[[dict[str, Any]], str | int]
    names: dict[str, str] = field(default_factory=dict)
    reads: bool = False
    hides: tuple[str, ...] = ()


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


def _path_params(op: dict[str, Any]) -> set[str]:
    return {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}


def _scoped(
    role: str, names: set[str], reads: bool = False, metropole: bool = False
) -> Callable[[dict[str, Any]], str | int]:
    """A scoped person with ``role``: as any person of that role, except that where the
    path names a thing it may not see (``names``) the thing is missing (with ``reads``,
    it reads those things), and that without a grant over the whole ``metropole`` an
    operation that needs one (``x-citypilot-scope: metropole``) is forbidden."""
    person = _person(role)

    def expect(op: dict[str, Any]) -> str | int:
        expected = person(op)
        if expected != ALLOWED:
            return expected
        if not metropole and op.get("x-citypilot-scope") == "metropole":
            return 403
        if not _path_params(op) & names:
            return expected
        return ALLOWED if reads else HIDDEN

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


#: the path parameters that name one of A's things (see ``_seed_city``)
_OF_A = dict.fromkeys(
    (
        "entity_id",
        "attr",
        "alarm_id",
        "command_id",
        "incident_id",
        "service_request_id",
        "subscription_id",
    ),
    "A",
)

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
    "operator of another municipality": Caller(
        lambda s: _bearer(s.token(OPERATOR_B)),
        _scoped("operator", set(_OF_A)),
        names=_OF_A,
        hides=(
            LIGHT_A,
            UNIT_A,
            CAMERA_B,
            REQUEST_A,
            SUBSCRIPTION_A,
            "alarm_id",
            "command_id",
            "incident_id",
        ),
    ),
    "viewer on police data": Caller(
        lambda s: _bearer(s.token(VIEWER)),
        _scoped("viewer", {"entity_id"}, metropole=True),
        names={"entity_id": CAMERA_B},
        hides=(UNIT_A, CAMERA_B),
    ),
    "police": Caller(
        lambda s: _bearer(s.token(POLICE)),
        _scoped("operator", {"entity_id"}, reads=True),
        names={"entity_id": UNIT_A},
        reads=True,
        hides=(LIGHT_A, LIGHT_B, "alarm_id", "command_id"),
    ),
}


def _named(world: World, caller: Caller | None, method: str, op: dict[str, Any]) -> dict[str, str]:
    """What the caller's path parameters name for this operation (nothing: absent ids)."""
    if caller is None or not caller.names or not op["security"]:
        return {}
    if caller.reads and method != "GET":
        return {}
    if caller.expect(op) not in (HIDDEN, ALLOWED) or not _path_params(op) & set(caller.names):
        return {}
    return {k: world.of_a[k] if v == "A" else v for k, v in caller.names.items()}


def _request(
    server: Server, method: str, path: str, op: dict[str, Any], named: dict[str, str] | None = None
) -> httpx.Request:
    """A harmless request for the operation: absent resources (or those ``named``), an
    empty JSON body."""
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = (named or {}).get(param["name"], ABSENT)
            path = path.replace("{" + param["name"] + "}", value)
    content = op.get("requestBody", {}).get("content", {})
    kwargs: dict[str, Any] = {}
    if "application/json" in content:
        kwargs["json"] = {}
    elif "application/x-www-form-urlencoded" in content:
        kwargs["data"] = {}
    return httpx.Request(method, server.url + path, **kwargs)


def _outcome(
    response: httpx.Response, expected: str | int, anonymous: int, named: bool
) -> str | int:
    if expected == PUBLIC:
        return PUBLIC if response.status_code == anonymous else response.status_code
    if response.status_code in (401, 403):
        return response.status_code
    return HIDDEN if named and response.status_code == 404 else ALLOWED


@pytest.mark.parametrize(
    ("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_each_caller_gets_what_the_description_declares(
    world: World, method: str, path: str, op: dict[str, Any]
):
    server = world.server
    wrong = {}
    with httpx.Client(timeout=30) as client:
        anonymous = client.send(_request(server, method, path, op)).status_code
        for name, caller in CALLERS.items():
            named = _named(world, caller, method, op)
            request = _request(server, method, path, op, named)
            request.headers.update(caller.headers(server))
            response = client.send(request)
            assert response.status_code < 500, (name, response.text)
            expected = caller.expect(op)
            if _outcome(response, expected, anonymous, bool(named)) != expected:
                wrong[name] = (response.status_code, response.text[:200])
            elif expected != PUBLIC and response.status_code in (401, 403):
                assert response.headers["content-type"] == "application/problem+json"
    assert not wrong, f"expected {[(n, c.expect(op)) for n, c in CALLERS.items()]}: {wrong}"


LISTINGS = [
    (m, p, op) for m, p, op in OPERATIONS if m == "GET" and op["security"] and not _path_params(op)
]
SCOPED_CALLERS = [name for name, caller in CALLERS.items() if caller.hides]


@pytest.mark.parametrize("caller_name", SCOPED_CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "op"), LISTINGS, ids=[f"{m} {p}" for m, p, _ in LISTINGS]
)
def test_listings_mention_nothing_outside_the_scope(
    world: World, caller_name: str, method: str, path: str, op: dict[str, Any]
):
    """Every listing the caller may call, plain and by each hidden thing's type where the
    listing takes ``type``, answers without a word of what the caller may not see."""
    caller = CALLERS[caller_name]
    hidden = [world.of_a.get(h, h) for h in caller.hides]
    types = {h.split(":")[2] for h in hidden if h.startswith("urn:ngsi-ld:")}
    queries: list[dict[str, str]] = [{}]
    if any(p["name"] == "type" and p["in"] == "query" for p in op.get("parameters", [])):
        queries += [{"type": t} for t in sorted(types)]
    with httpx.Client(base_url=world.server.url, timeout=30) as client:
        for params in queries:
            r = client.get(path, params=params, headers=caller.headers(world.server))
            assert r.status_code < 500, r.text
            leaked = [h for h in hidden if h in r.text]
            assert not leaked, (params, r.status_code, leaked, r.text[:300])


@pytest.mark.parametrize(
    ("who", "type_name", "seen"),
    [
        (OPERATOR_B, "Streetlight", [LIGHT_B]),
        (POLICE, "PoliceUnit", [UNIT_A]),
        (POLICE, "Camera", [CAMERA_B]),
        (VIEWER, "Camera", []),
    ],
)
def test_a_scoped_listing_holds_what_the_scope_covers(
    world: World, who: tuple[str, str], type_name: str, seen: list[str]
):
    with world.server.client(who) as c:
        r = c.get(f"{NGSI}/entities", params={"type": type_name, "limit": 100})
    assert r.status_code == 200, r.text
    assert sorted(e["id"] for e in r.json() if ":matrix-" in e["id"]) == seen


def test_the_scoped_callers_changed_nothing_of_a(world: World):
    with world.server.client(ADMIN) as c:
        light = c.get(f"{NGSI}/entities/{LIGHT_A}", params={"options": "keyValues"})
        alarm = c.get(f"/api/v1/alarms/{world.of_a['alarm_id']}")
        subscription = c.get(f"{NGSI}/subscriptions/{SUBSCRIPTION_A}")
    assert light.status_code == 200 and light.json()["illuminanceLevel"] == 0.5
    assert alarm.status_code == 200 and alarm.json()["state"] == "active-unacknowledged"
    assert subscription.status_code == 200


def test_the_server_serves_the_description_the_matrix_is_built_from(world: World):
    served = httpx.get(world.server.url + "/openapi.json").json()
    assert [(m, p) for m, p, _ in OPERATIONS] == [
        (method.upper(), path) for path, ops in served["paths"].items() for method in ops
    ]
