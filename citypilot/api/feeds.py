"""Public traveller information, readable without login.

* ``GET /gtfs/gtfs.zip``: the demo city's timetable (stations and platforms, routes,
  trips, stop times, calendar with the public holidays, shapes).
* ``GET /gtfs-rt/vehicle-positions``, ``/gtfs-rt/trip-updates``, ``/gtfs-rt/alerts``:
  GTFS-Realtime from the fleet's live state, joined to that timetable; protobuf, or
  the JSON debug view with ``?format=json``.
* ``GET /api/v1/traffic``: road closures and the queue at each signalled junction.
* ``GET /api/v1/transit/detours``: the lines closures detour or short-turn.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.deps import city_of, static_feed
from citypilot.api.incidents import closure_view, ops_of
from citypilot.api.openapi import answer
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.publish.fleet import read_fleet
from citypilot.publish.gtfs_rt import FeedBuilder, as_json
from citypilot.publish.traffic import traffic_document

router = APIRouter(tags=["traveller information"])
GTFS_ZIP = "application/zip"
PROTOBUF = "application/x-protobuf"
FORMATS = ("protobuf", "json")
_NO_FEED = answer(404, "This server has no transit timetable")
_RT_ANSWERS = {
    200: {
        "description": "A GTFS-Realtime FeedMessage (JSON with ?format=json)",
        "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    },
    **answer(400, "format is neither protobuf nor json"),
    **_NO_FEED,
}
#: What the public traffic feed leaves out of a closure: who closed it, for which incident.
_NOT_PUBLIC = ("closedBy", "incident")


@router.get(
    "/gtfs/gtfs.zip",
    summary="The static GTFS feed of the city's trams and buses",
    response_class=Response,
    responses={
        **answer(200, "The GTFS zip", media=GTFS_ZIP),
        **answer(304, "Unchanged since the ETag given in If-None-Match"),
        **_NO_FEED,
    },
)
async def gtfs_zip(request: Request) -> Response:
    """The timetable the real-time feeds refer to (every trip, route and stop id)."""
    zipped = static_feed(request.app).zipped()
    if zipped is None:
        raise ResourceNotFound("this server has no GTFS feed (the demo writes one)", "path")
    headers = {"ETag": zipped.etag, "Cache-Control": "public, max-age=300"}
    if request.headers.get("if-none-match") == zipped.etag:
        return Response(status_code=304, headers=headers)
    return Response(
        zipped.data,
        media_type=GTFS_ZIP,
        headers={**headers, "Content-Disposition": 'attachment; filename="gtfs.zip"'},
    )


def _builder(request: Request, fmt: str | None) -> FeedBuilder:
    if fmt is not None and fmt not in FORMATS:
        raise BadRequestData("format must be protobuf or json", "format")
    index = static_feed(request.app).index()
    if index is None:
        raise ResourceNotFound("this server has no GTFS feed to join real time to", "path")
    builder = getattr(request.app.state, "gtfs_rt_builder", None)
    if builder is None or builder.index is not index:
        builder = request.app.state.gtfs_rt_builder = FeedBuilder(index)
    return builder


def _feed(message: Any, fmt: str | None) -> Response:
    headers = {"Cache-Control": "no-cache"}
    if fmt == "json":
        return Response(
            orjson.dumps(as_json(message)), media_type="application/json", headers=headers
        )
    return Response(message.SerializeToString(), media_type=PROTOBUF, headers=headers)


async def _fleet_feed(request: Request, fmt: str | None, kind: str) -> Response:
    builder = _builder(request, fmt)
    ops = ops_of(request)
    await ops.closures.refresh()  # closures loaded, and those past their end time ended
    now = time.time()
    placed = builder.place(await read_fleet(city_of(request).broker.store), now)
    if kind == "vehicles":
        return _feed(builder.vehicle_positions(placed, now), fmt)
    skipped = ops.detours.skipped() if ops.detours is not None else {}
    return _feed(builder.trip_updates(placed, now, skipped), fmt)


@router.get(
    "/gtfs-rt/vehicle-positions",
    summary="GTFS-Realtime VehiclePositions of the trams and buses in service",
    response_class=Response,
    responses=_RT_ANSWERS,
)
async def vehicle_positions(request: Request, format: str | None = None) -> Response:
    """Each vehicle on a timetabled trip: position, bearing, speed, next stop, load."""
    return await _fleet_feed(request, format, "vehicles")


@router.get(
    "/gtfs-rt/trip-updates",
    summary="GTFS-Realtime TripUpdates: predicted times at the stops ahead",
    response_class=Response,
    responses=_RT_ANSWERS,
)
async def trip_updates(request: Request, format: str | None = None) -> Response:
    """Each running trip's delay and predicted arrival and departure at its next stops."""
    return await _fleet_feed(request, format, "trips")


@router.get(
    "/gtfs-rt/alerts",
    summary="GTFS-Realtime service Alerts (detours, short turns)",
    response_class=Response,
    responses=_RT_ANSWERS,
)
async def alerts(request: Request, format: str | None = None) -> Response:
    """The service alerts in force, with the routes and stops they affect."""
    builder = _builder(request, format)
    ops = ops_of(request)
    await ops.closures.refresh()
    items = ops.detours.alerts() if ops.detours is not None else []
    return _feed(builder.alerts(items, time.time()), format)


_DETOURS_SCHEMA = {
    "type": "object",
    "required": ["detours"],
    "properties": {"detours": {"type": "array", "items": {"type": "object"}}},
}


@router.get(
    "/api/v1/transit/detours",
    summary="Tram and bus lines detoured, short-turned or suspended by road closures",
    responses=answer(200, "The plans in force", _DETOURS_SCHEMA),
)
async def detours(request: Request) -> Response:
    """Public: for each line direction a closure cuts, what it does (``detour``,
    ``short_turn``, ``suspended``), the stops it serves and skips, and its path."""
    ops = ops_of(request)
    await ops.closures.refresh()
    book = ops.detours
    plans = [book.view(d) for d in book.detours()] if book is not None else []
    return Response(orjson.dumps({"detours": plans}), media_type="application/json")


_TRAFFIC_SCHEMA = {
    "type": "object",
    "required": ["generatedAt", "closures", "congestion", "junctions"],
    "properties": {
        "generatedAt": {"type": "string", "format": "date-time"},
        "closures": {"type": "array", "items": {"type": "object"}},
        "congestion": {"type": "object", "additionalProperties": {"type": "integer"}},
        "junctions": {"type": "array", "items": {"type": "object"}},
    },
}


@router.get(
    "/api/v1/traffic",
    summary="Road closures in force and the traffic state at each signalled junction",
    responses=answer(200, "Closures and junction queues", _TRAFFIC_SCHEMA),
)
async def traffic(request: Request) -> Response:
    """Public: the streets closed now (why, until when, as GeoJSON) and each junction's
    queue and level (free, moderate, heavy, unknown)."""
    closures = [
        {k: v for k, v in closure_view(c).items() if k not in _NOT_PUBLIC}
        for c in await ops_of(request).closures.listing()
    ]
    doc = await traffic_document(closures, city_of(request).broker.store, time.time())
    return Response(orjson.dumps(doc), media_type="application/json")
