"""Helpers both store backends share: attribute rows, entity assembly, exact geo filters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson
import shapely
import shapely.ops
from shapely.geometry import shape

from citypilot.model.entity import Attribute, Entity
from citypilot.model.geometry import validate_geometry
from citypilot.model.observation import Reading
from citypilot.store.base import GeoQuery

EARTH_RADIUS_M = 6_371_008.8


def attribute_readings(entity_id: str, attrs: dict[str, Attribute], now: float) -> list[Reading]:
    """The readings (state and history rows) of attributes written through the entity API.

    An attribute without ``observedAt`` keeps ``observed_at=None``: state stores it
    without an observation time (any later reading may overwrite it) and history
    stamps it with the time of the write.
    """
    return [
        Reading(
            entity_id,
            name,
            attr.kind,
            orjson.dumps(attr.value).decode(),
            attr.num,
            attr.observed_at,
            attr.unit_code,
            attr.value,
        )
        for name, attr in attrs.items()
    ]


def history_value(reading: Reading) -> str | None:
    """What history keeps beside ``num``: the JSON text, unless ``num`` says it all."""
    if reading.num is not None and reading.value[0] not in "tf":
        return None
    return reading.value


def history_point(num: float | None, value: str | None) -> Any:
    """Turn a stored history row back into the value it recorded."""
    if value is None:
        return int(num) if num is not None and num.is_integer() else num
    return orjson.loads(value)


def newest_per_key(readings: Sequence[Reading]) -> list[Reading]:
    """One reading per (entity, attribute): the newest; later ones win ties."""
    best: dict[tuple[str, str], Reading] = {}
    for r in readings:
        key = (r.entity_id, r.name)
        old = best.get(key)
        if (
            old is None
            or r.observed_at is None
            or (old.observed_at is not None and r.observed_at >= old.observed_at)
        ):
            best[key] = r
    return list(best.values())


def point_of(geometry: dict[str, Any]) -> tuple[float, float]:
    """A representative point: the point itself, or the centre of the bounds."""
    min_lon, min_lat, max_lon, max_lat = validate_geometry(geometry)
    return ((min_lon + max_lon) / 2, (min_lat + max_lat) / 2)


def assemble_entity(
    entity_id: str,
    type_name: str,
    created_at: float,
    modified_at: float,
    attr_rows: Iterable[tuple[str, str, str, float | None, float | None, str | None]],
) -> Entity:
    """Build an Entity from its row and its (name, kind, value, num, observed_at, unit) rows."""
    attrs: dict[str, Attribute] = {}
    newest = modified_at
    for name, kind, value, num, observed_at, unit in attr_rows:
        attrs[name] = Attribute(kind, orjson.loads(value), observed_at, unit, num)
        if observed_at is not None and observed_at > newest:
            newest = observed_at
    return Entity(entity_id, type_name, dict(sorted(attrs.items())), created_at, newest)


def geo_mask(
    geo: GeoQuery,
    xs: np.ndarray,
    ys: np.ndarray,
    is_point: np.ndarray,
    geometry_of: Any,  # callable(index) -> GeoJSON dict, for non-point candidates
) -> np.ndarray:
    """Which candidates (already inside ``geo.bounds``) truly match the geo-query.

    ``xs``/``ys`` are exact point coordinates where ``is_point`` holds; other
    candidates are tested on their full geometry.
    """
    n = len(xs)
    if n == 0:
        return np.zeros(0, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    if geo.georel == "near":
        qlon, qlat = geo.geometry["coordinates"][:2]
        mask[is_point] = _haversine(qlon, qlat, xs[is_point], ys[is_point]) <= geo.max_distance
        others = np.flatnonzero(~is_point)
        if len(others):
            centre = shapely.Point(qlon, qlat)
            for i in others:
                nearest = shapely.ops.nearest_points(shape(geometry_of(i)), centre)[0]
                mask[i] = _haversine(qlon, qlat, nearest.x, nearest.y) <= geo.max_distance
        return mask
    query_shape = shape(geo.geometry)
    shapely.prepare(query_shape)
    # for a point, lying within a shape and intersecting it are the same thing
    mask[is_point] = shapely.intersects_xy(query_shape, xs[is_point], ys[is_point])
    test = query_shape.covers if geo.georel == "within" else query_shape.intersects
    for i in np.flatnonzero(~is_point):
        mask[i] = test(shape(geometry_of(i)))
    return mask


def _haversine(lon: float, lat: float, lons: Any, lats: Any) -> Any:
    p1, p2 = np.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(np.asarray(lons) - lon)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))
