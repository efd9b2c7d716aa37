"""Reading request bodies: size limit, content type, JSON (bounded nesting) or NDJSON."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from citypilot.model.errors import (
    BadRequestData,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from citypilot.model.json_limits import DEFAULT_MAX_DEPTH, check_depth

JSON_TYPES = ("application/json", "application/ld+json")
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}", "body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes", "body")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, max_depth: int | None = DEFAULT_MAX_DEPTH) -> Any:
    """Parse a JSON body nesting at most ``max_depth`` levels (None: the caller checks);
    InvalidRequest saying where it breaks, BadRequestData naming where it nests too deep."""
    if not body:
        raise InvalidRequest("the body is empty; a JSON document is expected", "body")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", "body") from None
    if max_depth is not None:
        check_depth(body, doc, max_depth)
    return doc


async def read_json(request: Request, limit: int) -> Any:
    """Read and parse a JSON or JSON-LD body (415 for any other content type), nesting
    at most ``max_json_depth`` levels (the setting); an NGSI-LD body is checked against
    its content type and its terms expanded (``api.jsonld.ld_body``)."""
    kind = media_type(request)
    if kind not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json or application/ld+json, not {kind!r}",
            "Content-Type",
        )
    depth = request.app.state.city.settings.max_json_depth
    doc = parse_json(await read_body(request, limit), depth)
    if request.url.path.startswith("/ngsi-ld/"):
        from citypilot.api.jsonld import ld_body

        doc = await ld_body(request, doc)
    return doc


async def read_object(request: Request, limit: int, fields: frozenset[str], what: str) -> dict:
    """A JSON object body whose members are all among ``fields`` (BadRequestData naming
    the first that is not, or ``body`` when it is not an object); ``what`` names the
    request in errors ("a command request")."""
    doc = await read_json(request, limit)
    if not isinstance(doc, dict):
        raise BadRequestData(f"body must be a JSON object ({what})", "body")
    for key in doc:
        if key not in fields:
            raise BadRequestData(f"{str(key)[:60]} is not a field of {what}", key)
    return doc


async def refuse_body(request: Request, limit: int, what: str) -> None:
    """For an action that takes no body: nothing or ``{}``, else BadRequestData."""
    if await request.body():
        await read_object(request, limit, frozenset(), what)
