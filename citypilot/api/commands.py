"""Device commands over HTTP: submit, follow, acknowledge; desired beside reported.

* ``POST /api/v1/entities/{id}/commands`` (operator): 202 with the command and its
  ``Location``; the same ``idempotencyKey`` twice gives the same command.
* ``GET /api/v1/commands/{id}`` (viewer): the command with every transition.
* ``GET /api/v1/commands?entity=&state=&since=&limit=&offset=`` (viewer): newest first.
* ``POST /api/v1/commands/{id}/ack`` (device key or operator): an HTTP device's answer.
* ``GET /api/v1/entities/{id}/desired`` (viewer): what was commanded beside what the
  device reports.
* ``GET|PUT|DELETE /api/v1/commands/endpoints[/{target}]`` (admin): HTTP callbacks.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

import citypilot.api.uri_paths  # noqa: F401  (registers the uri path convertor)
from citypilot.api.access import require_command_entity, require_entity
from citypilot.api.body import read_json, read_object
from citypilot.api.deps import Admin, CityDep, Ingestor, Operator, Viewer, access
from citypilot.api.openapi import json_body
from citypilot.engine.commands import CommandService, read_answer
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.ids import check_entity_id
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.store.commands import TransitionRow

router = APIRouter(prefix="/api/v1", tags=["commands"])
MAX_PAGE = 1000
_SUBMIT_SCHEMA = {
    "type": "object",
    "required": ["command"],
    "properties": {
        "command": {"type": "string"},
        "args": {"type": "object"},
        "reason": {"type": "string"},
        "idempotencyKey": {"type": "string"},
        "deadline": {"type": "string", "format": "date-time"},
    },
}
_ACK_SCHEMA = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["accepted", "rejected"]},
        "reason": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
    },
}
_SUBMIT_KEYS = frozenset(_SUBMIT_SCHEMA["properties"])  # type: ignore[arg-type]


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _service(city: Any) -> CommandService:
    return city.commands


def _transition(t: TransitionRow) -> dict[str, Any]:
    return {"at": format_instant(t.at), "state": t.state, "by": t.actor, "detail": t.detail}


@router.post(
    "/entities/{entity_id:uri}/commands",
    status_code=202,
    summary="Send a command to an entity's device",
    openapi_extra=json_body(_SUBMIT_SCHEMA),
)
async def submit(entity_id: str, request: Request, city: CityDep, who: Operator) -> Response:
    """Check the command against the entity's type and start delivering it."""
    await require_entity(city, who, check_entity_id(entity_id, "id"), "operator")
    doc = await read_object(
        request, city.settings.max_body_bytes, _SUBMIT_KEYS, "a command request"
    )
    deadline = doc.get("deadline")
    cmd = await _service(city).submit(
        check_entity_id(entity_id, "id"),
        doc.get("command"),  # type: ignore[arg-type]
        doc.get("args"),
        reason=doc.get("reason", ""),
        requested_by=who.name,
        idempotency_key=doc.get("idempotencyKey"),
        deadline=None if deadline is None else parse_instant(deadline, "deadline"),
    )
    location = f"/api/v1/commands/{cmd.id}"
    return _json(cmd.to_json(), 202, {"Location": location})


@router.get("/entities/{entity_id:uri}/desired", summary="Desired beside reported state")
async def desired(entity_id: str, city: CityDep, who: Viewer) -> Response:
    """What was commanded of the entity, what its device reports, and where they differ."""
    await require_entity(city, who, check_entity_id(entity_id, "id"))
    return _json(await _service(city).desired(entity_id))


@router.get("/commands", summary="Commands, newest first")
async def list_commands(
    city: CityDep,
    who: Viewer,
    entity: str | None = None,
    state: str | None = None,
    since: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """A page of the commands of entities the caller may see; ``state`` may list several
    (``state=sent,acknowledged``)."""
    states = state.split(",") if state else None
    found, total = await _service(city).list(
        None if entity is None else check_entity_id(entity, "entity"),
        states,
        None if since is None else parse_instant(since, "since"),
        limit,
        offset,
        access(city, who, "viewer"),
    )
    body = {
        "total": total,
        "limit": limit,
        "offset": offset,
        "commands": [c.to_json() for c in found],
    }
    return _json(body)


@router.get("/commands/endpoints", summary="HTTP command callbacks")
async def list_endpoints(city: CityDep, _: Admin) -> Response:
    """Every registered callback: entity id or type → URL."""
    return _json(await _service(city).log.endpoints())


@router.put(
    "/commands/endpoints/{target}",
    summary="Register an HTTP command callback",
    openapi_extra=json_body({"type": "object", "required": ["url"]}),
)
async def put_endpoint(target: str, request: Request, city: CityDep, _: Admin) -> Response:
    """Commands for the entity (an id) or the type (a name) are POSTed to ``url``."""
    doc = await read_json(request, city.settings.max_body_bytes)
    url = doc.get("url") if isinstance(doc, dict) else None
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestData("url must be an http:// or https:// URL", "url")
    if target not in city.broker.registry:
        check_entity_id(target, "target")
    await city.command_callbacks.register(target, url)
    return _json({"target": target, "url": url})


@router.delete("/commands/endpoints/{target}", status_code=204, summary="Remove a callback")
async def delete_endpoint(target: str, city: CityDep, _: Admin) -> Response:
    """Commands for the target go back to the other channels."""
    if target not in await _service(city).log.endpoints():
        raise ResourceNotFound(f"no callback is registered for {target[:120]}", "target")
    await city.command_callbacks.register(target, None)
    return Response(status_code=204)


@router.get("/commands/{command_id}", summary="One command with its transitions")
async def get_command(command_id: str, city: CityDep, who: Viewer) -> Response:
    """The command, and every state it went through: when, by whom, what the device said."""
    service = _service(city)
    cmd = await service.get(command_id)
    await require_command_entity(city, who, cmd.entity_id, cmd.entity_type)
    body = cmd.to_json()
    body["transitions"] = [_transition(t) for t in await service.transitions(command_id)]
    return _json(body)


@router.post(
    "/commands/{command_id}/ack",
    summary="A device's answer to a command",
    openapi_extra=json_body(_ACK_SCHEMA),
)
async def acknowledge(command_id: str, request: Request, city: CityDep, who: Ingestor) -> Response:
    """Accept or reject a command that was POSTed to an HTTP device."""
    try:
        known = await _service(city).get(command_id)
    except ResourceNotFound:
        known = None  # the answer to an unknown command is kept as a dead letter below
    if known is not None:
        await require_command_entity(city, who, known.entity_id, known.entity_type, "operator")
    raw = await read_json(request, city.settings.max_body_bytes)
    _, answer = read_answer(raw)
    cmd = await _service(city).acknowledge(
        command_id, answer, source=f"http:{who.name}", payload=raw
    )
    if cmd is None:
        raise ResourceNotFound(
            f"command {command_id[:80]} was never sent; the answer is kept as a dead letter",
            "id",
        )
    return _json(cmd.to_json())
