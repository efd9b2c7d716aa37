"""Alarms over HTTP (see docs/alarms.md).

* ``GET /api/v1/alarms?state=&severity=&rule=&entity=&shelved=&suppressed=`` (viewer):
  newest first, with the open alarms' counts by severity.
* ``GET /api/v1/alarms/figures?operators=&window=`` (viewer): ISA-18.2 figures.
* ``GET /api/v1/alarms/{id}`` (viewer): one alarm with its log and comments.
* ``POST /api/v1/alarms`` (operator): an alarm an operator raises by hand.
* ``POST /api/v1/alarms/{id}/acknowledge | shelve | unshelve | comments`` (operator).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from citypilot.api.body import read_object, refuse_body
from citypilot.api.deps import CityDep, Operator, Viewer, access, resolved
from citypilot.api.openapi import NO_BODY, json_body, problem
from citypilot.engine.alarm_model import OPEN_STATES, SEVERITIES, Alarm
from citypilot.engine.alarms import AlarmService
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.ids import check_entity_id
from citypilot.model.timeutil import parse_instant
from citypilot.security.tokens import Principal

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])
MAX_PAGE = 1000
_RAISE_SCHEMA = {
    "type": "object",
    "required": ["entity", "severity", "message"],
    "properties": {
        "entity": {"type": "string"},
        "severity": {"enum": list(SEVERITIES)},
        "message": {"type": "string"},
    },
}
_ACK_SCHEMA = {"type": "object", "properties": {"note": {"type": "string"}}}
_SHELVE_SCHEMA = {
    "type": "object",
    "required": ["reason"],
    "properties": {
        "duration": {"type": "number", "description": "seconds (or give until)"},
        "until": {"type": "string", "format": "date-time"},
        "reason": {"type": "string"},
    },
}
_COMMENT_SCHEMA = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}},
}
_CONFLICT = problem(409, "The alarm is cleared, or has too many comments")


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _service(city: Any) -> AlarmService:
    return city.alarms


def _listed(text: str | None) -> tuple[str, ...]:
    return tuple(v for v in (text or "").split(",") if v)


async def _body(request: Request, city: Any, keys: frozenset[str]) -> dict[str, Any]:
    return await read_object(request, city.settings.max_body_bytes, keys, "this request")


async def _alarm(city: Any, who: Principal, alarm_id: str, role: str = "viewer") -> Alarm:
    """The alarm, if the caller's grants cover its source (else it is answered missing)."""
    alarm = await _service(city).get(alarm_id)
    if not access(city, who, role).covers(
        alarm.source_type or "Alarm", alarm.municipality, alarm.department
    ):
        raise ResourceNotFound(f"there is no alarm {alarm_id[:80]!r}", "id")
    return alarm


@router.get("", summary="Alarms, newest first")
async def list_alarms(
    city: CityDep,
    who: Viewer,
    state: Annotated[str | None, Query(description="comma-separated; default: open ones")] = None,
    severity: str | None = None,
    rule: str | None = None,
    entity: str | None = None,
    shelved: bool | None = None,
    suppressed: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """A page of alarms and, for the open alarms the caller may see, counts by severity
    (``attention`` leaves out shelved and suppressed ones)."""
    service = _service(city)
    visible = access(city, who, "viewer")
    found, total = await service.search(
        states=_listed(state),
        severities=_listed(severity),
        rule=rule,
        entity=None if entity is None else check_entity_id(entity, "entity"),
        shelved=shelved,
        suppressed=suppressed,
        visible=visible,
        limit=limit,
        offset=offset,
    )
    open_, _ = await service.search(states=OPEN_STATES, visible=visible, limit=10**9)
    counts = Counter(a.severity for a in open_)
    attention = Counter(a.severity for a in open_ if a.shelved is None and a.suppressed is None)
    return _json(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "counts": {s: counts[s] for s in SEVERITIES},
            "attention": {s: attention[s] for s in SEVERITIES},
            "alarms": [a.to_json() for a in found],
        }
    )


@router.get("/figures", summary="Alarm-management figures (ISA-18.2)")
async def figures(
    city: CityDep,
    who: Viewer,
    operators: Annotated[int, Query(ge=1, le=1000)] = 1,
    window: Annotated[int, Query(ge=600, le=7 * 86400, description="seconds")] = 86400,
) -> Response:
    """Alarms per operator per 10 min, flood, top 10, chattering, stale, priority split,
    of the alarms the caller may see."""
    visible = access(city, who, "viewer")
    return _json(await resolved(_service(city).figures(operators, float(window), visible)))


@router.post(
    "",
    status_code=201,
    summary="Raise an alarm by hand",
    openapi_extra=json_body(_RAISE_SCHEMA),
)
async def raise_alarm(request: Request, city: CityDep, who: Operator) -> Response:
    """An alarm an operator raises about an entity (rule ``operator``); raising it again
    while it is open counts a repeat."""
    doc = await _body(request, city, frozenset(_RAISE_SCHEMA["properties"]))  # type: ignore[arg-type]
    source = check_entity_id(doc.get("entity"), "entity")
    found = await city.broker.store.get_entity(source)
    if found is None:
        raise BadRequestData(f"entity {source} does not exist", "entity")
    message = doc.get("message")
    if not isinstance(message, str) or not message.strip() or len(message) > 1000:
        raise BadRequestData("message must be a text of 1 to 1000 characters", "message")
    severity = doc.get("severity")
    if severity not in SEVERITIES:
        raise BadRequestData(f"severity must be one of {', '.join(SEVERITIES)}", "severity")
    refs = await city.broker.store.entity_scopes([source])
    scope = refs.get(source)
    if scope is None or not access(city, who, "operator").covers(*scope):
        raise BadRequestData(f"entity {source} does not exist", "entity")
    alarm = await _service(city).raise_alarm(
        "operator", source, severity, message.strip(), by=who.name
    )
    return _json(alarm.to_json(), 201)


@router.get("/{alarm_id}", summary="One alarm with its log and comments")
async def get_alarm(alarm_id: str, city: CityDep, who: Viewer) -> Response:
    """The alarm: state, who acknowledged or shelved it, every transition."""
    return _json((await _alarm(city, who, alarm_id)).to_json())


@router.post(
    "/{alarm_id}/acknowledge",
    summary="Acknowledge an alarm (idempotent)",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": _ACK_SCHEMA}}}},
)
async def acknowledge(alarm_id: str, request: Request, city: CityDep, who: Operator) -> Response:
    """Active alarms stay active, acknowledged; cleared ones close. Twice is once."""
    alarm = await _alarm(city, who, alarm_id, "operator")
    note = ""
    if await request.body():
        note = (await _body(request, city, frozenset({"note"}))).get("note", "")
    return _json((await _service(city).acknowledge(alarm.id, who.name, note)).to_json())


@router.post(
    "/{alarm_id}/shelve",
    summary="Shelve an alarm for a time",
    responses=_CONFLICT,
    openapi_extra=json_body(_SHELVE_SCHEMA),
)
async def shelve(alarm_id: str, request: Request, city: CityDep, who: Operator) -> Response:
    """Hide the alarm until ``until`` (or for ``duration`` seconds); it returns by itself."""
    alarm = await _alarm(city, who, alarm_id, "operator")
    doc = await _body(request, city, frozenset(_SHELVE_SCHEMA["properties"]))  # type: ignore[arg-type]
    service = _service(city)
    if ("duration" in doc) == ("until" in doc):
        raise BadRequestData("give either duration (seconds) or until (a date-time)", "duration")
    if "until" in doc:
        duration = parse_instant(doc["until"], "until") - service.clock()
        if duration <= 0:
            raise BadRequestData("until must lie in the future", "until")
    else:
        duration = doc["duration"]
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise BadRequestData("duration must be a number of seconds", "duration")
    reason = doc.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise BadRequestData("reason must say why the alarm is shelved", "reason")
    return _json((await service.shelve(alarm.id, who.name, float(duration), reason)).to_json())


@router.post("/{alarm_id}/unshelve", summary="End an alarm's shelving now", openapi_extra=NO_BODY)
async def unshelve(alarm_id: str, request: Request, city: CityDep, who: Operator) -> Response:
    """The alarm returns to the list at once."""
    alarm = await _alarm(city, who, alarm_id, "operator")
    await refuse_body(request, city.settings.max_body_bytes, "an unshelve request")
    return _json((await _service(city).unshelve(alarm.id, who.name)).to_json())


@router.post(
    "/{alarm_id}/comments",
    status_code=201,
    summary="Comment on an alarm",
    responses=_CONFLICT,
    openapi_extra=json_body(_COMMENT_SCHEMA),
)
async def comment(alarm_id: str, request: Request, city: CityDep, who: Operator) -> Response:
    """Add a comment (who and when are kept)."""
    alarm = await _alarm(city, who, alarm_id, "operator")
    doc = await _body(request, city, frozenset({"text"}))
    return _json((await _service(city).comment(alarm.id, who.name, doc.get("text"))).to_json(), 201)
