"""GeoJSON geometries: validation (ranges, closed rings, no self-intersection) and bounds.

Points, the hot case (vehicles move), are checked by hand; every other shape goes
through shapely, which also finds self-intersections.
"""

from __future__ import annotations

import math
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.validation import explain_validity

from citypilot.model.errors import BadRequestData

GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
Bounds = tuple[float, float, float, float]  # (min_lon, min_lat, max_lon, max_lat)


def _check_position(pos: Any, field: str) -> tuple[float, float]:
    if (
        not isinstance(pos, list | tuple)
        or len(pos) not in (2, 3)
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in pos)
    ):
        raise BadRequestData(f"{field} must be a [longitude, latitude] pair of numbers", field)
    lon, lat = float(pos[0]), float(pos[1])
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise BadRequestData(f"{field}: longitude {lon} is outside -180..180", field)
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise BadRequestData(f"{field}: latitude {lat} is outside -90..90", field)
    return lon, lat


def _walk_positions(coords: Any, depth: int, field: str) -> list[tuple[float, float]]:
    """Check a nested coordinate array of the given depth and return its positions."""
    if depth == 0:
        return [_check_position(coords, field)]
    if not isinstance(coords, list) or not coords:
        raise BadRequestData(f"{field} must be a non-empty array", field)
    out: list[tuple[float, float]] = []
    for i, item in enumerate(coords):
        out.extend(_walk_positions(item, depth - 1, f"{field}[{i}]"))
    return out


_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}


def validate_geometry(geom: Any, field: str = "location") -> Bounds:
    """Validate a GeoJSON geometry object and return its bounds.

    Raises BadRequestData naming ``field`` for an unknown type, malformed or
    out-of-range coordinates, unclosed rings or a self-intersecting shape.
    """
    if not isinstance(geom, dict):
        raise BadRequestData(f"{field} must be a GeoJSON geometry object", field)
    gtype = geom.get("type")
    if gtype not in GEOMETRY_TYPES:
        raise BadRequestData(
            f"{field}.type must be one of {sorted(GEOMETRY_TYPES)}, not {gtype!r}", field
        )
    coords = geom.get("coordinates")
    positions = _walk_positions(coords, _DEPTH[gtype], f"{field}.coordinates")
    if gtype == "Point":
        lon, lat = positions[0]
        return (lon, lat, lon, lat)
    if gtype in ("Polygon", "MultiPolygon"):
        polygons = [coords] if gtype == "Polygon" else coords
        for p, rings in enumerate(polygons):
            for r, ring in enumerate(rings):
                where = (
                    f"{field}.coordinates[{p}][{r}]"
                    if gtype == "MultiPolygon"
                    else (f"{field}.coordinates[{r}]")
                )
                if len(ring) < 4 or list(ring[0][:2]) != list(ring[-1][:2]):
                    raise BadRequestData(
                        f"{where}: a linear ring needs at least 4 positions, first equal to last",
                        where,
                    )
    if gtype in ("LineString",) and len(positions) < 2:
        raise BadRequestData(f"{field}.coordinates: a LineString needs 2 positions", field)
    try:
        geometry = shape(geom)
    except (ValueError, TypeError, shapely.errors.GEOSException) as exc:
        raise BadRequestData(f"{field} is not a valid geometry: {exc}", field) from None
    if not geometry.is_valid:
        raise BadRequestData(
            f"{field} is not a valid geometry: {explain_validity(geometry)}", field
        )
    min_lon = min(p[0] for p in positions)
    min_lat = min(p[1] for p in positions)
    max_lon = max(p[0] for p in positions)
    max_lat = max(p[1] for p in positions)
    return (min_lon, min_lat, max_lon, max_lat)


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two WGS84 positions."""
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def degrees_box_around(lon: float, lat: float, metres: float) -> Bounds:
    """A lon/lat box that surely contains the circle of ``metres`` around a point."""
    dlat = metres / 111_000.0
    dlon = metres / (111_000.0 * max(math.cos(math.radians(lat)), 0.01))
    return (lon - dlon, lat - dlat, lon + dlon, lat + dlat)
