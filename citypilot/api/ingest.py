"""Device ingest over HTTP: batches of compact observations, JSON array or NDJSON."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.body import JSON_TYPES, NDJSON_TYPES, media_type, parse_json, read_body
from citypilot.api.deps import CityDep, Ingestor, access
from citypilot.api.openapi import (
    INGEST_RESULT_SCHEMA,
    OBSERVATION_SCHEMA,
    answer,
    array_of,
    json_body,
)
from citypilot.broker import ItemError
from citypilot.model.errors import (
    BadRequestData,
    CityPilotError,
    Forbidden,
    UnsupportedMediaType,
)
from citypilot.model.json_limits import check_depth, depth_error, max_depth, too_deep_at
from citypilot.security.tokens import Principal

router = APIRouter(prefix="/api/v1", tags=["ingest"])
_DEAD_LETTER_PAYLOAD_MAX = 65_536


def _ndjson(body: bytes, limit: int) -> tuple[list, list[bytes], list[ItemError]]:
    """Parse NDJSON lines; a line that is not JSON, or nests too deep, becomes an item
    error, not a failure."""
    items, raws, errors = [], [], []
    for line in body.split(b"\n"):
        line = line.strip()
        if not line:
            continue
        index = len(items)
        try:
            doc = orjson.loads(line)
            check_depth(line, doc, limit, f"[{index}]")
            items.append(doc)
        except orjson.JSONDecodeError as exc:
            items.append(None)
            errors.append(
                ItemError(
                    index,
                    None,
                    BadRequestData(f"line {index + 1} is not valid JSON: {exc}", f"[{index}]"),
                )
            )
        except CityPilotError as exc:
            items.append(None)
            errors.append(ItemError(index, None, exc))
        raws.append(line)
    return items, raws, errors


async def refused_by_scope(
    city: CityDep, who: Principal, items: list, skip: set[int]
) -> list[ItemError]:
    """An item error for each observation of an entity outside the person's operator
    scopes (unknown entities are left to the broker, which answers 404)."""
    ids = _item_ids(items, skip)
    scopes = await city.broker.store.entity_scopes(set(ids.values()))
    change = access(city, who, "operator")
    refused = []
    for i, entity_id in ids.items():
        found = scopes.get(entity_id)
        if found is not None and not change.covers(*found):
            where = f"[{i}].id"
            err = Forbidden(f"{where}: {entity_id} is outside the scopes of {who.name!r}", where)
            refused.append(ItemError(i, entity_id, err))
    return refused


async def refused_by_binding(
    city: CityDep, who: Principal, items: list, skip: set[int]
) -> list[ItemError]:
    """An item error for each observation of an entity the device key is not bound to
    (unknown entities are left to the broker, which answers 404)."""
    binding = who.binding
    assert binding is not None
    ids = _item_ids(items, skip)
    scopes = await city.broker.store.entity_scopes(set(ids.values()))
    refused = []
    for i, entity_id in ids.items():
        found = scopes.get(entity_id)
        if found is None:
            continue
        entity_type, municipality, _ = found
        why = binding.refusal(entity_id, entity_type, municipality)
        if why is not None:
            where = f"[{i}].id"
            err = Forbidden(f"{where}: {entity_id} {why} ({who.name!r})", where)
            refused.append(ItemError(i, entity_id, err))
    return refused


def _item_ids(items: list, skip: set[int]) -> dict[int, str]:
    """The entity id of each item (by index) that is not in ``skip``."""
    return {
        i: item["id"]
        for i, item in enumerate(items)
        if i not in skip and isinstance(item, dict) and isinstance(item.get("id"), str)
    }


def _too_deep_items(body: bytes, items: list, limit: int) -> list[ItemError]:
    """The items of a JSON array body that nest deeper than ``limit`` (the array is a level)."""
    if max_depth(body, limit) <= limit:
        return []
    errors = []
    for i, item in enumerate(items):
        path = too_deep_at(item, limit - 1, f"[{i}]")
        if path is not None:
            errors.append(ItemError(i, None, depth_error(path, limit)))
    return errors


@router.post(
    "/ingest",
    summary="Ingest a batch of device observations",
    responses={
        **answer(200, "Every observation was accepted", INGEST_RESULT_SCHEMA),
        **answer(207, "Some were refused (kept as dead letters)", INGEST_RESULT_SCHEMA),
    },
    openapi_extra=json_body(array_of(OBSERVATION_SCHEMA), ndjson=True),
)
async def ingest(request: Request, city: CityDep, who: Ingestor) -> Response:
    """Accept observations; 200 if all were accepted, 207 with per-item errors otherwise.

    Each observation is accepted or refused whole; refused ones are kept as dead letters.
    """
    settings = city.settings
    kind = media_type(request)
    if kind not in JSON_TYPES + NDJSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json or application/x-ndjson, not {kind!r}",
            "Content-Type",
        )
    body = await read_body(request, settings.max_body_bytes)
    source = f"http:{who.name}"
    parse_errors: list[ItemError] = []
    raws = None
    depth = settings.max_json_depth
    if kind in NDJSON_TYPES:
        items, raws, parse_errors = _ndjson(body, depth)
    else:
        try:
            items = parse_json(body, None)
            if not isinstance(items, list):
                check_depth(body, items, depth)
                items = [items]
        except CityPilotError as exc:
            await city.broker.dead_letter(
                [None],
                [ItemError(0, None, exc)],
                source,
                [body[:_DEAD_LETTER_PAYLOAD_MAX]],
            )
            raise
        parse_errors = _too_deep_items(body, items, depth)
    if len(items) > settings.max_batch_items:
        raise BadRequestData(
            f"a batch holds at most {settings.max_batch_items} observations; "
            f"this one has {len(items)}",
            "body",
        )
    skip = {e.index for e in parse_errors}
    if who.role != "device":  # a person ingests only into entities of their scopes
        parse_errors += await refused_by_scope(city, who, items, skip)
    elif who.binding is not None and not who.binding.is_open:  # a key, into its binding
        parse_errors += await refused_by_binding(city, who, items, skip)
    if parse_errors:
        await city.broker.dead_letter(items, parse_errors, source, raws)
    bad = {e.index for e in parse_errors}
    positions = [i for i in range(len(items)) if i not in bad]
    result = await city.broker.ingest(
        [items[i] for i in positions] if bad else items,
        source,
        ([raws[i] for i in positions] if bad else raws) if raws is not None else None,
        positions if bad else None,
    )
    result.errors = sorted(result.errors + parse_errors, key=lambda e: e.index)
    body_out = {
        "accepted": result.accepted,
        "rejected": len(result.errors),
        "readings": result.readings,
        "errors": [e.to_json() for e in result.errors[:1000]],
    }
    if result.errors and not result.accepted:
        problem = BadRequestData(
            f"all {len(result.errors)} observations were refused; see errors", "body"
        ).to_problem()
        return Response(
            orjson.dumps({**problem, **body_out}), 400, media_type="application/problem+json"
        )
    status = 207 if result.errors else 200
    return Response(orjson.dumps(body_out), status, media_type="application/json")
