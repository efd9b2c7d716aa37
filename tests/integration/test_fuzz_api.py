"""Fuzz every endpoint's parameters and bodies against a real server: never a 5xx.

The operations come from the server's own OpenAPI description, so an endpoint
added later is fuzzed the day it exists. Values are drawn by hypothesis from
hostile shapes — huge and float-spelled integers, out-of-range instants, regex
bombs, deep nesting, odd unicode — mixed with plausible ones. Any answer of 500
or more fails the test with the request that caused it (issue 7, defect 7).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citypilot.bench.server import server_process
from tests.conftest import ADMIN, Server, seed_accounts

EXISTING = "urn:ngsi-ld:Streetlight:fuzz-1"
#: Parameter values that broke (or could break) something once.
HOSTILE = [
    "",
    "0",
    "-1",
    "1e21",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "NaN",
    "Infinity",
    "0x10",
    "100000000000000000000d",
    "36501d",
    "0s",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-11-20T10:00:00",
    "2026-02-30T10:00:00Z",
    "(a+)+b",
    r"(a)\1",
    "(?=x)",
    "[",
    "a" * 5000,
    "x{1001}",
    'status~="(a+)+b"',
    "a==1..2..3",
    "((((((((((a))))))))))",
    "near;maxDistance==1e400",
    "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]",
    "[5,47]",
    "1,2,3,4",
    "-180,-90,180,90",
    "keyValues,sysAttrs",
    "urn:ngsi-ld:Streetlight:fuzz-1",
    EXISTING + ",urn:ngsi-ld:X:y",
    "\u0000",
    "\ud7ff\ue000",
    "%00",
    "../../etc/passwd",
]
INTEGERS = st.integers(min_value=-(2**70), max_value=2**70).map(str)
VALUES = st.one_of(st.sampled_from(HOSTILE), INTEGERS, st.floats().map(repr), st.text(max_size=40))
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


BODIES = st.one_of(
    JSON.map(lambda v: orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY)),
    st.sampled_from(
        [
            b"",
            b"[{}]",
            b"[[1]]",
            b"[null]",
            nested(300),
            nested(1100),
            b'{"id":"' + EXISTING.encode() + b'","type":"Streetlight","junk":' + nested(500) + b"}",
            b'[{"id":"%s","type":"Streetlight","observedAt":"0001-01-01T00:00:00+14:00",'
            b'"attrs":{"powerConsumption":1}}]' % EXISTING.encode(),
            b'{"powerConsumption":{"type":"Property","value":1e308,"observedAt":"9999-01-01T00:00:00Z"}}',
            b"\xff\xfe",
            b"1e400",
        ]
    ),
)


class Fuzzed:
    """The fuzzed server and the operations its OpenAPI description lists."""

    def __init__(self, server: Server, spec: dict[str, Any]) -> None:
        self.server = server
        # every (method, path, parameters, has body) but signing in (argon2 is slow by design)
        self.operations = [
            (method.upper(), path, op.get("parameters", []), "requestBody" in op)
            for path, ops in spec["paths"].items()
            for method, op in ops.items()
            if path != "/api/v1/auth/token"
        ]

    def __repr__(self) -> str:
        return f"Fuzzed({self.server.url}, {len(self.operations)} operations)"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """A server of its own (the fuzzer writes and deletes) and its OpenAPI operations."""
    data = tmp_path_factory.mktemp("fuzz")
    asyncio.run(seed_accounts(data))
    with server_process(data) as url:
        server = Server(url, data)
        with server.client(ADMIN) as c:
            yield Fuzzed(server, c.get("/openapi.json").json())


def check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code} {response.text[:300]}"
    if response.status_code >= 400 and not response.url.path.startswith("/open311/"):
        # (Open311 answers errors in its own GeoReport format, by its spec)
        assert response.headers["content-type"].startswith("application/problem+json"), what
        assert response.json()["detail"], what


def ensure_entity(client: httpx.Client) -> None:
    doc = {"id": EXISTING, "type": "Streetlight", "powerState": {"type": "Property", "value": "on"}}
    client.post("/ngsi-ld/v1/entities", json=doc)


FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.data())
def test_parameters_never_cause_a_server_error(fuzzed: Fuzzed, data: st.DataObject) -> None:
    server = fuzzed.server
    method, path, parameters, has_body = data.draw(st.sampled_from(fuzzed.operations))
    query: dict[str, str] = {}
    url = path
    for param in parameters:
        if param["in"] == "path":
            value = data.draw(st.one_of(st.just(EXISTING), st.just("Streetlight"), VALUES))
            url = url.replace("{" + param["name"] + "}", quote(value, safe="") or "x")
        elif param["in"] == "query" and data.draw(st.booleans()):
            query[param["name"]] = data.draw(VALUES, label=param["name"])
    body = b"{}" if has_body else None
    with server.client(ADMIN) as c:
        ensure_entity(c)
        r = c.request(
            method,
            server.url + url,
            params=query,
            content=body,
            headers={"Content-Type": "application/json"},
        )
        check(r, f"{method} {url} {query}")


BODY_PATHS = [
    "/api/v1/ingest",
    "/ngsi-ld/v1/entities",
    "/ngsi-ld/v1/entities/{id}/attrs",
    "/ngsi-ld/v1/entityOperations/create",
    "/ngsi-ld/v1/entityOperations/upsert",
    "/ngsi-ld/v1/entityOperations/update",
    "/ngsi-ld/v1/entityOperations/delete",
    "/api/v1/types",
    "/open311/v2/requests.json",
]


@FUZZ
@given(path=st.sampled_from(BODY_PATHS), body=BODIES, ndjson=st.booleans())
def test_bodies_never_cause_a_server_error(
    fuzzed: Fuzzed, path: str, body: bytes, ndjson: bool
) -> None:
    server = fuzzed.server
    url = path.replace("{id}", EXISTING)
    kind = "application/x-ndjson" if ndjson and path == "/api/v1/ingest" else "application/json"
    with server.client(ADMIN) as c:
        ensure_entity(c)
        r = c.post(url, content=body, headers={"Content-Type": kind})
        check(r, f"POST {url} {body[:200]!r}")
        # whatever was refused, the entity still reads
        check(c.get(f"/ngsi-ld/v1/entities/{EXISTING}"), f"read after POST {url} {body[:200]!r}")
