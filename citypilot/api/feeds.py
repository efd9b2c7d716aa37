"""Public traveller information, readable without login: the static GTFS feed.

``GET /gtfs/gtfs.zip`` serves the demo city's timetable (stations and platforms,
routes, trips, stop times, calendar with the public holidays, shapes) as the zip
journey planners and GTFS tools read.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.openapi import answer
from citypilot.model.errors import ResourceNotFound
from citypilot.publish.gtfs_static import StaticFeed

router = APIRouter(tags=["traveller information"])
GTFS_ZIP = "application/zip"


def static_feed(request: Request) -> StaticFeed:
    """The static feed of this app's data directory (made on first use)."""
    state = request.app.state
    feed = getattr(state, "gtfs_static", None)
    if feed is None:
        feed = state.gtfs_static = StaticFeed(state.city.settings.data_path / "gtfs")
    return feed


@router.get(
    "/gtfs/gtfs.zip",
    summary="The static GTFS feed of the city's trams and buses",
    response_class=Response,
    responses={
        **answer(200, "The GTFS zip", media=GTFS_ZIP),
        **answer(304, "Unchanged since the ETag given in If-None-Match"),
        **answer(404, "This server has no transit timetable"),
    },
)
async def gtfs_zip(request: Request) -> Response:
    """The timetable the real-time feeds refer to (every trip, route and stop id)."""
    zipped = static_feed(request).zipped()
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
