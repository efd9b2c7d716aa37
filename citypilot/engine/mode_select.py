"""Which entities a mode's step acts on: a selection resolved within a scope.

A scope is the whole metropole, one municipality (entities whose
``refMunicipality`` names it) or a zone polygon (entities whose location lies in
it: a ``Zone`` entity's polygon, or a GeoJSON polygon given when entering). A
selection (``mode_model.Selection``) narrows a type by a condition, a
relationship, nearness to a map layer's lines, or lying in zones of some
categories. Everything here reads; nothing writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import LineString, Point, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from citypilot.engine.mode_model import Near, Selection
from citypilot.model.entity import Entity
from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import validate_geometry
from citypilot.store.base import EntityQuery
from citypilot.store.query import QueryNode, Term
from citypilot.twin.geo import to_metric

PAGE = 1000
SCOPE_KINDS = ("metropole", "municipality", "zone")


@dataclass(frozen=True)
class Scope:
    """Where a mode applies: the metropole, a municipality (its id) or a zone polygon."""

    kind: str = "metropole"
    municipality: str | None = None
    zone: str | None = None
    area: BaseGeometry | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The scope as the API shows it (and as it is stored)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.municipality is not None:
            out["municipality"] = self.municipality
        if self.zone is not None:
            out["zone"] = self.zone
        if self.area is not None:
            out["geometry"] = shapely.geometry.mapping(self.area)
        return out

    def holds(self, entity: Entity) -> bool:
        """Whether the entity lies in the scope."""
        if self.kind == "municipality":
            ref = entity.attrs.get("refMunicipality")
            return ref is not None and ref.value == self.municipality
        if self.area is not None:
            point = representative_point(entity)
            return point is not None and self.area.covers(point)
        return True


def representative_point(entity: Entity) -> Point | None:
    """A point of the entity's location (the point itself, or one inside its shape)."""
    loc = entity.attrs.get("location")
    if loc is None or not isinstance(loc.value, dict):
        return None
    if loc.value.get("type") == "Point":
        lon, lat = loc.value["coordinates"][:2]
        return Point(lon, lat)
    return shape(loc.value).representative_point()


async def parse_scope(doc: Any, store: Any) -> Scope:
    """A checked scope from ``{"kind", "municipality" | "zone" | "geometry"}`` (None:
    the metropole); BadRequestData naming ``scope.<field>`` otherwise."""
    if doc is None:
        return Scope()
    if not isinstance(doc, dict):
        raise BadRequestData("scope must be an object with kind", "scope")
    kind = doc.get("kind", "metropole")
    if kind not in SCOPE_KINDS:
        raise BadRequestData(f"scope.kind must be one of {', '.join(SCOPE_KINDS)}", "scope.kind")
    allowed = {"kind", {"metropole": "", "municipality": "municipality", "zone": "zone"}[kind]}
    if kind == "zone":
        allowed.add("geometry")
    extra = sorted(set(doc) - allowed)
    if extra:
        raise BadRequestData(
            f"scope.{extra[0]} is not a field of a {kind} scope", f"scope.{extra[0]}"
        )
    if kind == "metropole":
        return Scope()
    if kind == "municipality":
        muni = doc.get("municipality")
        found = await store.get_entity(muni) if isinstance(muni, str) and muni else None
        if found is None or found.type != "Municipality":
            raise BadRequestData(
                f"scope.municipality must name a Municipality entity, not {str(muni)[:80]!r}",
                "scope.municipality",
            )
        return Scope("municipality", municipality=found.id)
    if ("zone" in doc) == ("geometry" in doc):
        raise BadRequestData("a zone scope needs zone (a Zone id) or geometry", "scope.zone")
    if "zone" in doc:
        zone_id = doc["zone"]
        found = await store.get_entity(zone_id) if isinstance(zone_id, str) and zone_id else None
        if found is None or found.type != "Zone" or "location" not in found.attrs:
            raise BadRequestData(
                f"scope.zone must name a Zone entity, not {str(zone_id)[:80]!r}", "scope.zone"
            )
        return Scope("zone", zone=found.id, area=shape(found.attrs["location"].value))
    geometry = doc["geometry"]
    validate_geometry(geometry, "scope.geometry")
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise BadRequestData("scope.geometry must be a Polygon or MultiPolygon", "scope.geometry")
    return Scope("zone", area=shape(geometry))


async def query_all(store: Any, type_name: str, q: QueryNode | None) -> list[Entity]:
    """Every entity of a type matching ``q``, page by page."""
    out: list[Entity] = []
    offset = 0
    while True:
        page, _ = await store.query_entities(
            EntityQuery(types=(type_name,), q=q, limit=PAGE, offset=offset)
        )
        out.extend(page)
        offset += len(page)
        if len(page) < PAGE:
            return out


@dataclass(frozen=True)
class Target:
    """An entity a step acts on, with what its selection learnt of it (``approach``)."""

    entity_id: str
    refs: dict[str, Any] = field(default_factory=dict)


class Selector:
    """Resolves selections against the store and the map layers of the data directory."""

    def __init__(self, store: Any, layers: Path | None) -> None:
        self.store = store
        self.layers = layers
        self._lines: dict[tuple[str, bytes], list[LineString]] = {}

    async def zones(self, categories: tuple[str, ...], scope: Scope) -> BaseGeometry | None:
        """The union of the zones of these categories, cut to the scope (None: none)."""
        q = Term("category", "==", tuple(categories))
        shapes = []
        for zone in await query_all(self.store, "Zone", q):
            loc = zone.attrs.get("location")
            if loc is None:
                continue
            area = shape(loc.value)
            if scope.kind == "municipality" and not scope.holds(zone):
                continue
            if scope.area is not None:
                area = area.intersection(scope.area)
            if not area.is_empty:
                shapes.append(area)
        return unary_union(shapes) if shapes else None

    async def select(self, selection: Selection, scope: Scope) -> list[Target]:
        """The entities a selection matches in the scope, in id order."""
        found = [
            e for e in await query_all(self.store, selection.type, selection.q) if scope.holds(e)
        ]
        if selection.via is not None:
            via = selection.via
            wanted = {e.id for e in await query_all(self.store, via.type, via.q)}
            found = [e for e in found if via.attr in e.attrs and e.attrs[via.attr].value in wanted]
        if selection.in_zones:
            area = await self.zones(selection.in_zones, scope)
            found = [] if area is None else [e for e in found if _in(area, e)]
        found.sort(key=lambda e: e.id)
        if selection.near is None:
            return [Target(e.id) for e in found]
        return self._near(selection.near, found)

    def _near(self, near: Near, found: list[Entity]) -> list[Target]:
        lines = self._layer_lines(near)
        if not lines:
            return []
        tree = shapely.STRtree(lines)
        out = []
        for e in found:
            point = representative_point(e)
            if point is None:
                continue
            x, y = to_metric(point.x, point.y)
            here = Point(float(x), float(y))
            k = tree.nearest(here)
            line = lines[int(k)]
            if line.distance(here) <= near.distance_m:
                out.append(Target(e.id, {"approach": approach_on(line, here)}))
        return out

    def _layer_lines(self, near: Near) -> list[LineString]:
        key = (near.layer, orjson.dumps(dict(near.where), option=orjson.OPT_SORT_KEYS))
        if key in self._lines:
            return self._lines[key]
        path = None if self.layers is None else self.layers / f"{near.layer}.geojson"
        lines: list[LineString] = []
        if path is not None and path.is_file():
            for feature in orjson.loads(path.read_bytes()).get("features", []):
                props = feature.get("properties") or {}
                if any(props.get(k) != v for k, v in near.where.items()):
                    continue
                geom = shape(feature["geometry"])
                for part in getattr(geom, "geoms", [geom]):
                    if isinstance(part, LineString) and len(part.coords) >= 2:
                        xy = np.asarray(part.coords)
                        mx, my = to_metric(xy[:, 0], xy[:, 1])
                        lines.append(LineString(np.column_stack([mx, my])))
        self._lines[key] = lines
        return lines


def _in(area: BaseGeometry, entity: Entity) -> bool:
    point = representative_point(entity)
    return point is not None and area.covers(point)


def approach_on(line: LineString, here: Point) -> str:
    """The side a vehicle travelling along ``line`` comes from at ``here``
    (north, east, south or west), from the direction of the line there."""
    at = line.project(here)
    a = line.interpolate(max(0.0, at - 5.0))
    b = line.interpolate(min(line.length, at + 5.0))
    dx, dy = b.x - a.x, b.y - a.y
    if math.hypot(dx, dy) < 1e-9:
        return "north"
    if abs(dy) >= abs(dx):
        return "south" if dy > 0 else "north"
    return "west" if dx > 0 else "east"


def edges_in(network: Any, area: BaseGeometry) -> list[int]:
    """The street segments of the road network whose midpoint lies in ``area``."""
    e = network.edge_count
    lon = (network.lon[network.arc_from[:e]] + network.lon[network.arc_to[:e]]) / 2
    lat = (network.lat[network.arc_from[:e]] + network.lat[network.arc_to[:e]]) / 2
    return np.nonzero(shapely.contains_xy(area, lon, lat))[0].tolist()
