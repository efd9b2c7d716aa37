"""City modes over HTTP: what is on, enter, leave (``engine/modes.py`` does the work).

* ``GET /api/v1/modes`` (viewer): the operational level, the active modes with the
  progress of their commands, every mode the city knows, and the latest activations.
* ``GET /api/v1/modes/{name}`` (viewer): the mode's definition and its open (else
  latest) activation with every device it commanded and what leaving did to it.
* ``POST /api/v1/modes/{name}/enter`` ``{"scope", "reason"}`` (operator, over the
  whole scope): 201 with the activation.
* ``POST /api/v1/modes/{name}/leave`` ``{"reason"}`` (operator): the activation, restoring.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.body import read_json
from citypilot.api.deps import CityDep, Operator, Viewer, resolved
from citypilot.api.openapi import json_body, problem
from citypilot.engine.mode_model import LEVELS
from citypilot.engine.modes import ModeService
from citypilot.model.errors import BadRequestData, Forbidden
from citypilot.security.scopes import metropole_grant
from citypilot.security.tokens import Principal

router = APIRouter(prefix="/api/v1/modes", tags=["modes"])
RECENT = 20  # activations listed, newest first, open or left

_SCOPE = {
    "type": "object",
    "description": "metropole (default), a municipality, or a zone (Zone id or polygon)",
    "properties": {
        "kind": {"enum": ["metropole", "municipality", "zone"]},
        "municipality": {"type": "string"},
        "zone": {"type": "string"},
        "geometry": {"type": "object", "description": "GeoJSON Polygon or MultiPolygon"},
    },
}
_ENTER = {
    "type": "object",
    "required": ["reason"],
    "properties": {"scope": _SCOPE, "reason": {"type": "string", "maxLength": 500}},
}
_LEAVE = {
    "type": "object",
    "required": ["reason"],
    "properties": {"reason": {"type": "string", "maxLength": 500}},
}


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _service(city: Any) -> ModeService:
    return city.modes


async def _body(request: Request, city: Any, fields: set[str]) -> dict[str, Any]:
    doc = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(doc, dict):
        raise BadRequestData(f"body must be a JSON object with {', '.join(sorted(fields))}", "body")
    for key in doc:
        if key not in fields:
            raise BadRequestData(f"{str(key)[:60]} is not a field here", str(key)[:60])
    return doc


def _check_scope(who: Principal, scope: Any) -> None:
    """A mode commands every silo: the caller needs an operator grant over every
    department of the scope (the metropole for a metropole or zone scope)."""
    muni = scope.get("municipality") if isinstance(scope, dict) else None
    kind = scope.get("kind", "metropole") if isinstance(scope, dict) else "metropole"
    for grant in who.grants or (metropole_grant(who.role),):
        if grant.department is not None or grant.role not in ("operator", "admin"):
            continue
        if grant.municipality is None or (kind == "municipality" and grant.municipality == muni):
            return
    raise Forbidden(
        "entering a mode needs an operator grant over every department of its scope", "scope"
    )


@router.get("", summary="Operational level, active modes and their progress")
async def list_modes(city: CityDep, _: Viewer) -> Response:
    """What holds the city now, and what it could switch to."""
    service = _service(city)
    level = await resolved(service.level())
    active = await resolved(service.active())
    on = {a["name"] for a in active}
    body = {
        "level": level,
        "levelName": LEVELS[level],
        "levels": {str(k): v for k, v in LEVELS.items()},
        "active": active,
        "modes": [{**m.to_json(), "active": m.name in on} for m in service.definitions.values()],
        "recent": await service.history(RECENT),
    }
    return _json(body)


@router.get(
    "/{name}", summary="A mode and its latest activation", responses=problem(404, "No such mode")
)
async def get_mode(name: str, city: CityDep, _: Viewer) -> Response:
    """The definition, and the open (else latest) activation with every device."""
    service = _service(city)
    mode = service.definition(name)
    return _json({**mode.to_json(), "activation": await service.last(name)})


@router.post(
    "/{name}/enter",
    status_code=201,
    summary="Enter a mode for a scope",
    responses={**problem(404, "No such mode"), **problem(409, "The mode is active already")},
    openapi_extra=json_body(_ENTER),
)
async def enter(name: str, request: Request, city: CityDep, who: Operator) -> Response:
    """Send the mode's commands in the scope, close its roads, switch its rules."""
    doc = await _body(request, city, {"scope", "reason"})
    _service(city).definition(name)
    _check_scope(who, doc.get("scope"))
    client = request.client.host if request.client else None
    activation = await _service(city).enter(
        name, doc.get("scope"), doc.get("reason"), who.name, client
    )
    return _json(activation, 201)


@router.post(
    "/{name}/leave",
    summary="Leave a mode, restoring each device",
    responses={**problem(404, "No such mode"), **problem(409, "The mode is not active")},
    openapi_extra=json_body(_LEAVE),
)
async def leave(name: str, request: Request, city: CityDep, who: Operator) -> Response:
    """Restore each device to its state before the mode (an operator's change wins)."""
    doc = await _body(request, city, {"reason"})
    _service(city).definition(name)
    scope = await resolved(_service(city).scope_of(name))
    if scope is not None:  # a mode that is not on is answered 409 by the service
        _check_scope(who, scope)
    client = request.client.host if request.client else None
    return _json(await _service(city).leave(name, doc.get("reason"), who.name, client))
