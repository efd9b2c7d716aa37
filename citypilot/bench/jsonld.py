"""``citypilot bench jsonld``: what the NGSI-LD JSON-LD edge costs, in-process.

Three figures, each against its baseline in the same run: the middleware's fast path
(a GET by id without context) against the same empty ASGI app without the middleware;
compacting a page of entities with a user @context against parsing and writing the
same page untouched; processing a new @context (PyLD) against finding it cached.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from citypilot.config import Settings

console = Console()
_GET_BY_ID = {
    "type": "http",
    "method": "GET",
    "path": "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:b0000001",
    "raw_path": b"/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:b0000001",
    "query_string": b"",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"*/*"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"user-agent", b"python-httpx/0.28.1"),
        (b"authorization", b"Bearer " + b"x" * 200),
    ],
}


def add_jsonld_bench(bench: Any) -> None:
    """Register ``bench jsonld``."""
    p = bench.add_parser("jsonld", help="JSON-LD edge: middleware fast path, compaction")
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--pages", type=int, default=500)
    p.set_defaults(func=bench_jsonld)


async def _empty(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _per_request(app: Any, n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(_message: Any) -> None:
        return None

    start = time.perf_counter()
    for _ in range(n):
        await app(dict(_GET_BY_ID), receive, send)
    return (time.perf_counter() - start) / n


def _page() -> bytes:
    """A page of 100 normalised streetlights, as the API writes it."""
    entity = {
        "id": "urn:ngsi-ld:Streetlight:b0000001",
        "type": "Streetlight",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5, 47]}},
        "powerState": {"type": "Property", "value": "on", "observedAt": "2026-01-01T00:00:00Z"},
        "powerConsumption": {"type": "Property", "value": 40.0, "unitCode": "WTT"},
        "refMunicipality": {"type": "Relationship", "object": "urn:ngsi-ld:Municipality:1"},
    }
    return orjson.dumps([{**entity, "id": f"{entity['id'][:-1]}{i}"} for i in range(100)])


def bench_jsonld(args: argparse.Namespace, settings: Settings) -> int:
    """Measure and print the three figures with their baselines."""
    from citypilot.api.jsonld import JsonLdEdge, LdRequest, compact_answer
    from citypilot.model.ldcontext import DEFAULT_VOCAB, ContextCache

    bare = asyncio.run(_per_request(_empty, args.requests))
    edge = asyncio.run(_per_request(JsonLdEdge(_empty), args.requests))
    words = {"Lamp": DEFAULT_VOCAB + "Streetlight", "watts": DEFAULT_VOCAB + "powerConsumption"}
    cache = ContextCache()
    start = time.perf_counter()
    terms = cache.process(words, "@context")
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(1000):
        cache.process(dict(words), "@context")
    cached = (time.perf_counter() - start) / 1000
    page, ld = _page(), LdRequest(terms, "http://127.0.0.1/ctx")
    start = time.perf_counter()
    for _ in range(args.pages):
        orjson.dumps(orjson.loads(page))
    untouched = (time.perf_counter() - start) / args.pages
    start = time.perf_counter()
    for _ in range(args.pages):
        orjson.dumps(compact_answer(orjson.loads(page), "entities", ld, False, False))
    compacted = (time.perf_counter() - start) / args.pages
    table = Table(title="bench jsonld (in-process)")
    for col in ("what", "time", "baseline", "ratio"):
        table.add_column(col, justify="right")
    rows = (
        ("middleware, GET by id without context", edge, bare, "empty ASGI app alone"),
        ("a page of 100 entities, user @context", compacted, untouched, "parse + write only"),
        ("a new @context processed (PyLD)", first, cached, "the same, cached"),
    )
    for what, took, base, label in rows:
        table.add_row(
            what, f"{took * 1e6:,.1f} µs", f"{base * 1e6:,.1f} µs ({label})", f"{took / base:.1f}"
        )
    console.print(table)
    console.print(f"middleware fast path: +{(edge - bare) * 1e6:.1f} µs a request")
    return 0
