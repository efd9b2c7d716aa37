"""The city's side of the 311 desk: operators answer citizens' service requests."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.access import require_entity
from citypilot.api.body import read_json
from citypilot.api.deps import CityDep, Operator
from citypilot.api.open311 import desk_of, request_view
from citypilot.api.openapi import json_body
from citypilot.model.errors import BadRequestData
from citypilot.model.ids import entity_id
from citypilot.ops.service_requests import REQUEST_TYPE

router = APIRouter(prefix="/api/v1/service-requests", tags=["311"])
_ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["open", "closed"]},
        "notes": {"type": "string", "maxLength": 4000},
        "expectedAt": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
}


def _text(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequestData(f"{name} must be a string", name)
    return value


@router.post(
    "/{service_request_id}/answer",
    summary="Answer a service request: status, notes for the citizen, expected date",
    openapi_extra=json_body(_ANSWER_SCHEMA),
)
async def answer(
    service_request_id: str, request: Request, city: CityDep, who: Operator
) -> Response:
    """Record the city's answer; the citizen sees it through Open311 at once."""
    body = await read_json(request, city.settings.max_body_bytes)
    # only an operator of the request's municipality and department may answer it
    request_entity = entity_id(REQUEST_TYPE, service_request_id)
    if await city.broker.store.get_entity(request_entity) is not None:
        await require_entity(city, who, request_entity, "operator")
    if not isinstance(body, dict):
        raise BadRequestData("body must be an object with status, notes, expectedAt", "body")
    unknown = set(body) - {"status", "notes", "expectedAt"}
    if unknown:
        raise BadRequestData(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
    entity = await desk_of(request).answer(
        service_request_id, _text(body, "status"), _text(body, "notes"), _text(body, "expectedAt")
    )
    return Response(orjson.dumps(request_view(entity)), media_type="application/json")
