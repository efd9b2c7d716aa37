"""Incidents, dispatch and road closures: ``/api/v1/incidents``, ``/api/v1/units``,
``/api/v1/closures``.

Operators open incidents, move their status, get the nearest available units by
road travel time and dispatch them, and close streets; viewers read. Every write
is in the audit log (the audit middleware) and on the incident's timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from citypilot.api.access import require_entity
from citypilot.api.body import read_json
from citypilot.api.deps import CityDep, Operator, Viewer, access, static_feed
from citypilot.api.openapi import json_body, problem
from citypilot.model.entity import Entity
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.timeutil import parse_instant
from citypilot.ops.closures import MAX_CLOSURE_RADIUS_M, ClosureBook
from citypilot.ops.detours import DetourBook, transit_lines
from citypilot.ops.dispatch import MAX_RECOMMENDED, Dispatcher
from citypilot.ops.incidents import (
    INCIDENT_KINDS,
    SEVERITIES,
    STATUSES,
    IncidentBook,
    NewIncident,
    parse_new_incident,
    point_of,
    value,
)
from citypilot.ops.priority import PriorityRun, SignalStop, route_progress
from citypilot.ops.routing import Route
from citypilot.ops.units import UNIT_STATUSES, assignments, dispatch_status, fleet, kind_of
from citypilot.security.tokens import Principal

router = APIRouter(tags=["incidents"])

#: Which 311 services open an incident, as what kind and how severe.

_NEW_SCHEMA = {
    "type": "object",
    "required": ["type", "location"],
    "properties": {
        "type": {"type": "string", "enum": list(INCIDENT_KINDS)},
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "location": {"type": "object", "description": "GeoJSON Point"},
        "description": {"type": "string", "maxLength": 4000},
        "radius": {"type": "number", "description": "Affected area radius, metres"},
    },
}
_STATUS_SCHEMA = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": list(STATUSES)},
        "note": {"type": "string", "maxLength": 1000},
    },
}
_DISPATCH_SCHEMA = {
    "type": "object",
    "required": ["units"],
    "properties": {"units": {"type": "array", "items": {"type": "string"}}},
}
_CLOSURE_SCHEMA = {
    "type": "object",
    "required": ["endsAt"],
    "properties": {
        "edges": {"type": "array", "items": {"type": "integer"}},
        "location": {"type": "object", "description": "GeoJSON Point (with radius)"},
        "radius": {"type": "number"},
        "endsAt": {"type": "string", "format": "date-time"},
        "reason": {"type": "string"},
        "incident": {"type": "string"},
    },
}


class IncidentOps:
    """The incident book, closure book, dispatcher and transit detours of one running app."""

    def __init__(self, city: Any, routing: Any, detours: DetourBook | None = None) -> None:
        self.incidents = IncidentBook(city.broker)
        # one book per city: the flood mode closes roads through it too
        self.closures = city.closures or ClosureBook(city.broker, routing)
        self.dispatcher = Dispatcher(self.incidents, self.closures, routing)
        # transit lines that cross a closure detour or short-turn (with a timetable)
        self.detours = detours
        if detours is not None:
            self.closures.listen(detours.update)


def _detour_book(app: Any, routing: Any) -> DetourBook | None:
    """Detours over the road graph for the lines of the static GTFS, when both exist."""
    index = static_feed(app).index()
    if routing is None or index is None:
        return None
    return DetourBook(
        transit_lines(index, routing.network),
        routing,
        index,
        lambda: getattr(app.state, "detour_listeners", ()),  # the demo's simulator
    )


def ops_for(app: Any) -> IncidentOps:
    """The app's incident services, built on first use (its city, road graph, timetable)."""
    ops = getattr(app.state, "incident_ops", None)
    if ops is None:
        routing = getattr(app.state, "routing", None)
        ops = IncidentOps(app.state.city, routing, _detour_book(app, routing))
        app.state.incident_ops = ops
    return ops


def ops_of(request: Request) -> IncidentOps:
    """The incident services of the request's app."""
    return ops_for(request.app)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def incident_view(e: Entity, timeline: bool = True) -> dict[str, Any]:
    """An incident as the API shows it."""
    out = {
        "id": e.id,
        "type": value(e, "incidentType"),
        "severity": value(e, "severity"),
        "status": value(e, "status"),
        "location": value(e, "location"),
        "affectedArea": value(e, "affectedArea"),
        "description": value(e, "description"),
        "source": value(e, "source"),
        "reportedBy": value(e, "reportedBy"),
        "reportedAt": value(e, "reportedAt"),
        "updatedAt": value(e, "updatedAt"),
        "municipality": value(e, "refMunicipality"),
        "assignments": {
            unit: {k: v for k, v in job.items() if k != "routeNodes"}
            for unit, job in (value(e, "assignments", {}) or {}).items()
        },
        "links": value(e, "links", {}),
        "prioritySavedSeconds": value(e, "prioritySavedSeconds", 0),
    }
    if timeline:
        out["timeline"] = value(e, "timeline", [])
    return out


def closure_view(e: Entity) -> dict[str, Any]:
    """A road closure as the API shows it."""
    return {
        "id": e.id,
        "status": value(e, "status"),
        "name": value(e, "name"),
        "reason": value(e, "reason"),
        "edges": value(e, "edges", []),
        "startsAt": value(e, "startsAt"),
        "endsAt": value(e, "endsAt"),
        "closedBy": value(e, "closedBy"),
        "incident": value(e, "refIncident"),
        "geometry": value(e, "location"),
    }


async def _visible_incident(
    request: Request, city: Any, who: Principal, incident_id: str, needed: str = "viewer"
) -> Entity:
    incident = await ops_of(request).incidents.get(incident_id)
    await require_entity(city, who, incident.id, needed)
    return incident


async def _seen(city: Any, who: Principal, ids: list[str]) -> set[str]:
    """Those of ``ids`` the caller may see (the others are answered as missing)."""
    scopes = await city.broker.store.entity_scopes(ids)
    seen = access(city, who, "viewer")
    return {i for i in ids if i in scopes and seen.covers(*scopes[i])}


async def _exists(city: Any, entity_id: str) -> bool:
    return await city.broker.store.get_entity(entity_id) is not None


def _listed(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


# -- incidents --------------------------------------------------------------------------
@router.post(
    "/api/v1/incidents",
    summary="Open an incident",
    status_code=201,
    openapi_extra=json_body(_NEW_SCHEMA),
)
async def create_incident(request: Request, city: CityDep, who: Operator) -> Response:
    """Open an incident at a point of the metropole, in status ``reported``."""
    new = parse_new_incident(await read_json(request, city.settings.max_body_bytes))
    incident = await ops_of(request).incidents.open(new, who.name, "operator")
    return _json(incident_view(incident), 201)


@router.get("/api/v1/incidents", summary="List incidents")
async def list_incidents(
    request: Request,
    city: CityDep,
    who: Viewer,
    status: str | None = Query(None, description="comma-separated statuses"),
    type: str | None = Query(None, description="comma-separated incident types"),
    severity: str | None = Query(None, description="comma-separated severities"),
    limit: int = Query(100, ge=1, le=1000),
) -> Response:
    """Incidents matching the filters, newest first (those the caller may see)."""
    found = await ops_of(request).incidents.search(
        _listed(status), _listed(type), _listed(severity), limit=10_000
    )
    seen = await _seen(city, who, [e.id for e in found])
    shown = [e for e in found if e.id in seen][:limit]
    return _json([incident_view(e, timeline=False) for e in shown])


@router.get("/api/v1/incidents/{incident_id}", summary="One incident with its timeline")
async def get_incident(incident_id: str, request: Request, city: CityDep, who: Viewer) -> Response:
    """The incident, its assignments, links and timeline."""
    return _json(incident_view(await _visible_incident(request, city, who, incident_id)))


@router.get("/api/v1/incidents/{incident_id}/timeline", summary="An incident's timeline")
async def get_timeline(incident_id: str, request: Request, city: CityDep, who: Viewer) -> Response:
    """Every action on the incident, oldest first."""
    incident = await _visible_incident(request, city, who, incident_id)
    return _json(value(incident, "timeline", []))


@router.post(
    "/api/v1/incidents/{incident_id}/status",
    summary="Move an incident's status",
    responses=problem(409, "The status machine does not allow this move"),
    openapi_extra=json_body(_STATUS_SCHEMA),
)
async def set_status(incident_id: str, request: Request, city: CityDep, who: Operator) -> Response:
    """reported → dispatched → on_scene → resolved → closed; any other move is a 409."""
    incident = await _visible_incident(request, city, who, incident_id, "operator")
    body = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise BadRequestData("body must be an object with status", "status")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 1000:
        raise BadRequestData("note must be a text of at most 1000 characters", "note")
    updated = await ops_of(request).incidents.set_status(
        incident.id, body["status"], who.name, note
    )
    return _json(incident_view(updated))


# -- dispatch ---------------------------------------------------------------------------
@router.get(
    "/api/v1/incidents/{incident_id}/recommendation",
    summary="The nearest available units by road travel time",
    responses={
        **problem(409, "Road closures leave no open road from any available unit"),
        **problem(503, "The server has no road graph"),
    },
)
async def recommendation(
    incident_id: str,
    request: Request,
    city: CityDep,
    who: Viewer,
    count: int = Query(3, ge=1, le=MAX_RECOMMENDED),
    kind: str | None = Query(None, description="comma-separated unit kinds (police, fireEngine…)"),
) -> Response:
    """Available units ranked by ETA over the road graph, each with its route."""
    incident = await _visible_incident(request, city, who, incident_id)
    ops = ops_of(request)
    kinds = _listed(kind) or None
    candidates = await ops.dispatcher.recommend(incident, count=count * 4, kinds=kinds)
    seen = await _seen(city, who, [c.unit.id for c in candidates])
    shown = [c for c in candidates if c.unit.id in seen]
    now = time.time()
    return _json({"incident": incident.id, "units": [c.to_json(now) for c in shown[:count]]})


@router.post(
    "/api/v1/incidents/{incident_id}/dispatch",
    summary="Send units to an incident",
    responses={
        **problem(409, "A unit is not available or cut off, or the incident is resolved or closed"),
        **problem(503, "The server has no road graph"),
    },
    openapi_extra=json_body(_DISPATCH_SCHEMA),
)
async def dispatch(incident_id: str, request: Request, city: CityDep, who: Operator) -> Response:
    """Dispatch the units named: their status follows and the timeline records it."""
    body = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(body, dict) or set(body) - {"units"}:
        raise BadRequestData("body must be an object with units (a list of unit ids)", "units")
    incident = await _visible_incident(request, city, who, incident_id, "operator")
    units = body.get("units")
    if isinstance(units, list):  # a unit the caller may not see is answered as missing
        named = [u for u in units if isinstance(u, str)]
        seen = await _seen(city, who, named)
        for k, unit_id in enumerate(units):
            if isinstance(unit_id, str) and unit_id not in seen and await _exists(city, unit_id):
                raise ResourceNotFound(f"units[{k}]: there is no unit {unit_id!r}", f"units[{k}]")
    updated, sent, stops = await ops_of(request).dispatcher.dispatch(
        incident.id, body.get("units"), who.name
    )
    routes = {c.unit.id: c.route for c in sent}
    start_priority(request, city, incident.id, who.name, stops, routes)
    rehearsals: dict[str, dict[str, Any]] = {}
    for driver in getattr(request.app.state, "unit_drivers", ()):  # the demo's simulator
        for c in sent:
            with contextlib.suppress(KeyError):  # a unit the simulator does not drive
                rehearsal = driver(c.unit.id, list(c.route.nodes), incident.id)
                if rehearsal is not None:  # the same drive, with and without priority
                    rehearsals[c.unit.id] = rehearsal.to_json()
    if rehearsals:
        updated = await ops_of(request).dispatcher.record_rehearsals(
            incident.id, rehearsals, "digital twin"
        )
    return _json(
        {"incident": incident_view(updated), "units": [c.to_json(time.time()) for c in sent]}
    )


@router.get("/api/v1/units", summary="Response units and their dispatch status")
async def list_units(
    request: Request,
    city: CityDep,
    who: Viewer,
    status: str | None = Query(None, description="comma-separated dispatch statuses"),
) -> Response:
    """Police units and technical vehicles with position, kind and dispatch status."""
    wanted = _listed(status)
    for s in wanted:
        if s not in UNIT_STATUSES:
            raise BadRequestData(f"status {s!r} is not one of {', '.join(UNIT_STATUSES)}", "status")
    units = await fleet(city.broker)
    jobs = await assignments(city.broker)
    seen = await _seen(city, who, [u.id for u in units])
    out = []
    for u in units:
        if u.id not in seen:
            continue
        state = dispatch_status(u, jobs.get(u.id))
        if wanted and state not in wanted:
            continue
        out.append(
            {
                "id": u.id,
                "unitType": u.type,
                "kind": kind_of(u),
                "callSign": value(u, "callSign"),
                "status": state,
                "reportedStatus": value(u, "status"),
                "location": value(u, "location"),
                "incident": jobs.get(u.id, {}).get("incident"),
            }
        )
    return _json(out)


def start_priority(
    request: Request,
    city: Any,
    incident_id: str,
    by: str,
    stops: dict[str, list[SignalStop]],
    routes: dict[str, Route],
) -> None:
    """Request signal priority along each dispatched unit's route through the command
    service, and release each signal once the unit's reported position has passed it,
    recording every command on the incident's timeline (a city without a command
    service records the plan only)."""
    commands = getattr(city, "commands", None)
    book = ops_of(request).incidents
    if commands is None:
        return
    runs = getattr(request.app.state, "priority_runs", None)
    if runs is None:
        runs = request.app.state.priority_runs = set()

    async def submit(signal: str, command: str, args: dict[str, Any], reason: str) -> str:
        sent = await commands.submit(signal, command, args, reason=reason, requested_by=by)
        return str(sent.id)

    async def record(action: str, detail: str, command_id: str) -> None:
        refs = {"commands": [command_id]} if command_id else {}
        await book.record(incident_id, "signal priority", action, detail, refs=refs)

    def locate(unit_id: str) -> Any:
        async def where() -> tuple[float, float] | None:
            unit = await city.broker.store.get_entity(unit_id)
            return point_of(unit) if unit is not None else None

        return where

    routing = ops_of(request).dispatcher.routing
    if routing is None:  # dispatch needs the road graph: never here
        return
    network = routing.network
    for unit_id, unit_stops in stops.items():
        if unit_stops:
            follow = route_progress(network, routes[unit_id], locate(unit_id))
            run = PriorityRun(
                unit_id, unit_stops, submit, record, city.settings.priority_lead_s, progress=follow
            )
            task = asyncio.get_running_loop().create_task(run.run())
            runs.add(task)
            task.add_done_callback(runs.discard)


# -- closures ---------------------------------------------------------------------------
async def _closure_edges(ops: IncidentOps, body: dict[str, Any]) -> list[int]:
    if "edges" in body:
        edges = body["edges"]
        if not isinstance(edges, list):
            raise BadRequestData("edges must be a list of segment ids", "edges")
        return edges
    location = body.get("location")
    if not isinstance(location, dict) or location.get("type") != "Point":
        raise BadRequestData("give edges, or location (a GeoJSON Point) and radius", "edges")
    probe = parse_new_incident({"type": "other", "location": location})
    radius = body.get("radius", 30)
    if (
        isinstance(radius, bool)
        or not isinstance(radius, int | float)
        or not (1 <= radius <= MAX_CLOSURE_RADIUS_M)
    ):
        raise BadRequestData(
            f"radius must be a number of metres, 1 to {MAX_CLOSURE_RADIUS_M:g}", "radius"
        )
    edges = ops.closures.edges_near(probe.lon, probe.lat, float(radius))
    if not edges:
        raise BadRequestData("no street segment lies within radius of location", "location")
    return edges


async def _close(
    request: Request, city: Any, who: Principal, body: Any, incident: Entity | None
) -> Response:
    if not isinstance(body, dict):
        raise BadRequestData("body must be an object with edges or location, and endsAt", "body")
    unknown = sorted(set(body) - {"edges", "location", "radius", "endsAt", "reason", "incident"})
    if unknown:
        raise BadRequestData(f"unknown field {unknown[0]!r}", unknown[0])
    ops = ops_of(request)
    if incident is None and body.get("incident") is not None:
        if not isinstance(body["incident"], str):
            raise BadRequestData("incident must be an incident id", "incident")
        incident = await _visible_incident(request, city, who, body["incident"], "operator")
    if incident is not None and value(incident, "status") == "closed":
        raise BadRequestData(f"incident {incident.id} is closed", "incident")
    ends_at = parse_instant(body.get("endsAt"), "endsAt")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise BadRequestData("reason must be a text", "reason")
    edges = await _closure_edges(ops, body)
    closure = await ops.closures.close(
        edges, ends_at, reason, who.name, incident.id if incident is not None else None
    )
    if incident is not None:
        await ops.incidents.record(
            incident.id,
            who.name,
            "closure",
            f"closed {value(closure, 'name')} until {value(closure, 'endsAt')}",
            refs={"closures": [closure.id]},
        )
    return _json(closure_view(closure), 201)


@router.post(
    "/api/v1/closures",
    summary="Close street segments until an end time",
    responses=problem(404, "The incident named does not exist"),
    status_code=201,
    openapi_extra=json_body(_CLOSURE_SCHEMA),
)
async def create_closure(request: Request, city: CityDep, who: Operator) -> Response:
    """Close segments (by id, or within a radius of a point); routing avoids them at once."""
    return await _close(
        request, city, who, await read_json(request, city.settings.max_body_bytes), None
    )


@router.post(
    "/api/v1/incidents/{incident_id}/closures",
    summary="Close streets for an incident",
    status_code=201,
    openapi_extra=json_body(_CLOSURE_SCHEMA),
)
async def create_incident_closure(
    incident_id: str, request: Request, city: CityDep, who: Operator
) -> Response:
    """A closure caused by the incident, linked on its timeline."""
    incident = await _visible_incident(request, city, who, incident_id, "operator")
    body = await read_json(request, city.settings.max_body_bytes)
    return await _close(request, city, who, body, incident)


@router.get("/api/v1/closures", summary="Road closures")
async def list_closures(
    request: Request, city: CityDep, who: Viewer, all: bool = Query(False)
) -> Response:
    """The closures in force (``all=true``: those ended too)."""
    found = await ops_of(request).closures.listing(active_only=not all)
    return _json([closure_view(e) for e in found])


@router.post(
    "/api/v1/closures/{closure_id}/end",
    summary="Reopen a closure's streets now",
    openapi_extra=json_body(
        {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 1000}}}
    ),
)
async def end_closure(closure_id: str, request: Request, city: CityDep, who: Operator) -> Response:
    """End a closure before its time (``{"reason": ...}``): routing uses its streets again."""
    body = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(body, dict) or set(body) - {"reason"}:
        raise BadRequestData("body must be an object with an optional reason", "body")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 1000:
        raise BadRequestData("reason must be a text of at most 1000 characters", "reason")
    ended = await ops_of(request).closures.end(closure_id, who.name)
    incident = value(ended, "refIncident")
    if incident:
        await ops_of(request).incidents.record(
            incident,
            who.name,
            "closure ended",
            f"reopened {value(ended, 'name')}" + (f": {reason}" if reason else ""),
            refs={"closures": [ended.id]},
        )
    return _json(closure_view(ended))


# -- 311 ---------------------------------------------------------------------------------
async def incident_from_request(
    request: Request, service_request: Entity, opens: tuple[str, str] | None
) -> Entity | None:
    """Open the incident (``opens``: type, severity) a 311 request's service calls for."""
    where = point_of(service_request)
    if opens is None or where is None:
        return None
    new = NewIncident(
        kind=opens[0],
        severity=opens[1],
        lon=where[0],
        lat=where[1],
        description=value(service_request, "description"),
        links={"serviceRequests": [service_request.id]},
    )
    return await ops_of(request).incidents.open(
        new, f"311 request {service_request.id}", source="open311"
    )
