"""Time series of an entity's attributes: raw, or bucketed and aggregated server-side."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

import citypilot.api.uri_paths  # noqa: F401  (registers the uri path convertor)
from citypilot.api.access import mask_values, may_see_history
from citypilot.api.deps import CityDep, Viewer
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.ids import check_entity_id, type_of_id
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.store.base import HistoryQuery

router = APIRouter(prefix="/api/v1/history", tags=["history"])
_BUCKET = re.compile(r"^(\d{1,12})(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Widest bucket: 100 years (far wider than any stored range; no store overflows).
MAX_BUCKET_S = 36_500 * 86_400


def parse_bucket(text: str) -> int:
    """A bucket width like ``15m`` or ``1h`` in seconds (at most MAX_BUCKET_S)."""
    match = _BUCKET.match(text)
    if match is None or int(match.group(1)) == 0:
        raise BadRequestData("bucket must be a number and a unit: 30s, 15m, 1h, 1d", "bucket")
    width = int(match.group(1)) * _UNIT_S[match.group(2)]
    if width > MAX_BUCKET_S:
        raise BadRequestData(f"bucket is wider than {MAX_BUCKET_S // 86400} days", "bucket")
    return width


@router.get("/{entity_id:uri}", summary="Attribute history of an entity")
async def history(
    entity_id: str,
    city: CityDep,
    who: Viewer,
    attrs: str | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    bucket: str | None = None,
    agg: Literal["avg", "min", "max", "count", "sum"] = "avg",
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """``{"entityId", "attrs": {name: [[instant, value], ...]}}`` between ``from`` and ``to``."""
    check_entity_id(entity_id)
    found = (await city.broker.store.entity_scopes([entity_id])).get(entity_id)
    if not may_see_history(city, who, entity_id, found):
        raise ResourceNotFound(f"no history for {entity_id}", "entity_id")
    start = parse_instant(from_, "from") if from_ is not None else None
    end = parse_instant(to, "to") if to is not None else None
    if start is not None and end is not None and start >= end:
        raise BadRequestData("from must be before to", "from")
    names = tuple(a for a in attrs.split(",") if a) if attrs else None
    query = HistoryQuery(
        entity_id, names, start, end, parse_bucket(bucket) if bucket else None, agg, limit
    )
    series = await city.broker.store.history(query)
    if not series and found is None:
        raise ResourceNotFound(f"no history for {entity_id}", "entity_id")
    shown = mask_values(city, who, found[0] if found else type_of_id(entity_id), found)
    body = {
        "entityId": entity_id,
        "bucket": bucket,
        "agg": agg if bucket else None,
        "attrs": {
            n: [[format_instant(t), v if bucket else shown(n, v)] for t, v in pts]
            for n, pts in series.items()
        },
    }
    return Response(orjson.dumps(body), media_type="application/json")
