"""Which entities a query names: the NGSI-LD selection parameters of ``GET /entities``
(type, id, idPattern, q, scopeQ, geo-query or bbox, count, limit, offset), read once for every
endpoint that chooses entities the same way."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Query

from citypilot.api.deps import CityDep
from citypilot.api.paging import Offset
from citypilot.model.entity import entity_type_of
from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import Bounds, degrees_box_around, validate_geometry
from citypilot.model.ids import check_entity_id
from citypilot.model.patterns import check_pattern
from citypilot.store.base import EntityQuery, GeoQuery
from citypilot.store.query import parse_q
from citypilot.store.scope_query import parse_scope_q

MAX_LIMIT = 1000


def parse_geo(
    georel: str | None, geometry: str | None, coordinates: str | None, geoproperty: str | None
) -> GeoQuery | None:
    """Read the NGSI-LD geo-query parameters; BadRequestData naming the wrong one."""
    if georel is None and geometry is None and coordinates is None:
        return None
    if georel is None or geometry is None or coordinates is None:
        raise BadRequestData(
            "a geo-query needs georel, geometry and coordinates together", "georel"
        )
    if geoproperty not in (None, "location"):
        raise BadRequestData("only geoproperty=location is supported", "geoproperty")
    try:
        coords = orjson.loads(coordinates)
    except orjson.JSONDecodeError:
        raise BadRequestData("coordinates must be a JSON array", "coordinates") from None
    shape = {"type": geometry, "coordinates": coords}
    bounds = validate_geometry(shape, "coordinates")
    rel, *params = georel.split(";")
    if rel == "near":
        if geometry != "Point":
            raise BadRequestData("georel=near needs geometry=Point", "geometry")
        return _near(shape, bounds, params)
    if params:
        raise BadRequestData(f"georel={rel} takes no distance", "georel")
    if rel == "within" and geometry not in ("Polygon", "MultiPolygon"):
        raise BadRequestData("georel=within needs a Polygon or MultiPolygon", "geometry")
    if rel in ("within", "contains", "intersects", "overlaps", "equals"):
        return GeoQuery(rel, shape, bounds)
    if rel == "disjoint":
        return GeoQuery(rel, shape, None)  # matches lie anywhere outside the shape
    raise BadRequestData(
        "georel must be near, within, contains, intersects, disjoint, overlaps or equals",
        "georel",
    )


def _near(shape: dict[str, Any], bounds: Bounds, params: list[str]) -> GeoQuery:
    """``near;maxDistance==m`` and/or ``near;minDistance==m`` around a point."""
    distances: dict[str, float] = {}
    for p in params:
        key, _, value = p.partition("==")
        if key not in ("maxDistance", "minDistance") or key in distances:
            raise BadRequestData(f"unknown or repeated near modifier {key!r}", "georel")
        try:
            distances[key] = float(value)
        except ValueError:
            distances[key] = -1.0
        if not 0 <= distances[key] <= 1e7:
            raise BadRequestData(f"{key} must be metres in 0..10,000,000", "georel")
    if not distances:
        raise BadRequestData(
            "georel=near needs maxDistance==<metres> or minDistance==<metres>", "georel"
        )
    most, least = distances.get("maxDistance"), distances.get("minDistance")
    if most is not None and least is not None and least > most:
        raise BadRequestData("minDistance is beyond maxDistance", "georel")
    box = None if most is None else degrees_box_around(*bounds[:2], most)
    return GeoQuery("near", shape, box, most, least)


def bbox_geo(bbox: str) -> GeoQuery:
    """The ``bbox=minLon,minLat,maxLon,maxLat`` shortcut as an intersects geo-query."""
    try:
        x0, y0, x1, y1 = (float(v) for v in bbox.split(","))
    except ValueError:
        raise BadRequestData("bbox must be minLon,minLat,maxLon,maxLat", "bbox") from None
    if not (x0 < x1 and y0 < y1):
        raise BadRequestData("bbox must have minLon < maxLon and minLat < maxLat", "bbox")
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    shape = {"type": "Polygon", "coordinates": [ring]}
    return GeoQuery("intersects", shape, validate_geometry(shape, "bbox"))


async def entity_selection(
    city: CityDep,
    type: str | None = None,
    id: str | None = None,
    idPattern: str | None = None,
    q: str | None = None,
    scopeQ: str | None = None,
    georel: str | None = None,
    geometry: str | None = None,
    coordinates: str | None = None,
    geoproperty: str | None = None,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat")] = None,
    count: bool = False,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 20,
    offset: Offset = 0,
) -> EntityQuery:
    """The entity query the parameters give (without the caller's scope); BadRequestData
    naming the wrong parameter."""
    types = tuple(t for t in type.split(",") if t) if type else None
    for t in types or ():
        entity_type_of(city.broker.registry, t, "type", city.broker.strict_types)
    ids = tuple(check_entity_id(i, "id") for i in id.split(",")) if id else None
    if idPattern is not None:
        check_pattern(idPattern, "idPattern")
    geo = parse_geo(georel, geometry, coordinates, geoproperty)
    if bbox is not None:
        if geo is not None:
            raise BadRequestData("give either bbox or a geo-query, not both", "bbox")
        geo = bbox_geo(bbox)
    return EntityQuery(
        types=types,
        ids=ids,
        id_pattern=idPattern,
        q=parse_q(q) if q else None,
        scope_q=parse_scope_q(scopeQ) if scopeQ is not None else None,
        geo=geo,
        limit=limit,
        offset=offset,
        count=count,
    )


Selection = Annotated[EntityQuery, Depends(entity_selection)]
