"""Local metric plane of the generated city and its conversion to WGS84 lon/lat.

The generator works in metres east (x) and north (y) of the city centre; only the
output is in degrees. The equirectangular projection is exact enough over a
metropole of a few tens of kilometres.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

#: Centre of the synthetic metropole (a Burgundy-like plain; not any real city).
CENTRE_LON = 5.04
CENTRE_LAT = 47.32
#: Decimal places of coordinates in entity documents (~0.1 m) and map layers (~1 m).
ENTITY_DECIMALS = 6
LAYER_DECIMALS = 5

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(CENTRE_LAT))


def to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert metric coordinates (arrays) to longitude and latitude arrays."""
    return CENTRE_LON + np.asarray(x) / _M_PER_DEG_LON, CENTRE_LAT + np.asarray(y) / _M_PER_DEG_LAT


def to_metric(lon: np.ndarray | float, lat: np.ndarray | float) -> tuple[Any, Any]:
    """Convert longitude and latitude (scalars or arrays) to metric coordinates."""
    return (
        (np.asarray(lon) - CENTRE_LON) * _M_PER_DEG_LON,
        (np.asarray(lat) - CENTRE_LAT) * _M_PER_DEG_LAT,
    )


def point_xy(x: float, y: float, decimals: int = ENTITY_DECIMALS) -> dict[str, Any]:
    """A GeoJSON Point for one metric position, rounded to ``decimals``."""
    lon, lat = to_lonlat(x, y)
    return {
        "type": "Point",
        "coordinates": [round(float(lon), decimals), round(float(lat), decimals)],
    }


def geometry_to_lonlat(geom: BaseGeometry, decimals: int = ENTITY_DECIMALS) -> dict[str, Any]:
    """A metric shapely geometry as valid GeoJSON in degrees, snapped to ``decimals``.

    Snapping goes through ``shapely.set_precision`` so that polygons stay valid
    (no self-intersection created by rounding).
    """
    ll = shapely.transform(geom, _metric_to_lonlat_coords)
    ll = shapely.set_precision(ll, 10.0**-decimals)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        ll = polygonal(ll)
    return _rounded_mapping(ll, decimals)


def _metric_to_lonlat_coords(coords: np.ndarray) -> np.ndarray:
    lon, lat = to_lonlat(coords[:, 0], coords[:, 1])
    return np.column_stack([lon, lat])


def _round_ring(coords: Any, decimals: int) -> list[list[float]]:
    return [[round(float(c[0]), decimals), round(float(c[1]), decimals)] for c in coords]


def _rounded_mapping(geom: BaseGeometry, decimals: int) -> dict[str, Any]:
    kind = geom.geom_type
    if kind == "Point":
        return {"type": "Point", "coordinates": _round_ring(geom.coords, decimals)[0]}
    if kind == "LineString":
        return {"type": "LineString", "coordinates": _round_ring(geom.coords, decimals)}
    if kind == "Polygon":
        rings = [geom.exterior, *geom.interiors]
        return {"type": "Polygon", "coordinates": [_round_ring(r.coords, decimals) for r in rings]}
    if kind == "MultiPolygon":
        return {
            "type": "MultiPolygon",
            "coordinates": [_rounded_mapping(p, decimals)["coordinates"] for p in geom.geoms],
        }
    if kind == "MultiLineString":
        return {
            "type": "MultiLineString",
            "coordinates": [_round_ring(g.coords, decimals) for g in geom.geoms],
        }
    raise ValueError(f"unsupported geometry {kind}")


def polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Keep only the polygonal part of a geometry (intersections can add slivers of lines)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def lonlat_point(x: float, y: float) -> dict[str, Any]:
    """A GeoJSON Point (entity precision) for one metric position; fast scalar path."""
    return {
        "type": "Point",
        "coordinates": [
            round(CENTRE_LON + x / _M_PER_DEG_LON, ENTITY_DECIMALS),
            round(CENTRE_LAT + y / _M_PER_DEG_LAT, ENTITY_DECIMALS),
        ],
    }
