"""What the console's map needs in bulk: every entity of a type at once, and the city layers.

``GET /api/v1/map/entities/{type}`` answers one compact, column-oriented document per
type (ids, positions and scalar attributes as parallel arrays), far smaller and faster to
draw than NGSI-LD pages when a layer has 45,000 streetlights.
``GET /api/v1/map/layers`` lists the city's background layers (municipalities, roads,
river, ...) kept as GeoJSON files in ``<data_dir>/layers``; ``/layers/{name}`` serves one.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from citypilot.api.deps import CityDep, Viewer
from citypilot.model.errors import ResourceNotFound
from citypilot.model.timeutil import format_instant

router = APIRouter(prefix="/api/v1/map", tags=["map"])
_LAYER_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


@router.get("/entities/{type_name}", summary="Every entity of a type, column-oriented")
async def entities_of_type(type_name: str, city: CityDep, _: Viewer) -> Response:
    """``{"type", "count", "ids", "lon", "lat", "modifiedAt", "attrs": {name: [...]}}``.

    ``attrs`` holds every scalar attribute of the type (null where an entity lacks it);
    objects such as addresses are left out (read them from the NGSI-LD API).
    """
    entity_type = city.broker.registry.get(type_name, "type_name")
    entities = await city.broker.store.scan_entities(entity_type.name)
    names = sorted(
        n
        for n, spec in entity_type.attributes.items()
        if spec.kind != "GeoProperty" and spec.value not in ("object", "array")
    )
    ids, lons, lats, modified = [], [], [], []
    columns: dict[str, list[Any]] = {n: [] for n in names}
    for entity in entities:
        loc = entity.attrs.get("location")
        point = _point(loc.value) if loc is not None else (None, None)
        ids.append(entity.id)
        lons.append(point[0])
        lats.append(point[1])
        modified.append(format_instant(entity.modified_at) if entity.modified_at else None)
        for n in names:
            attr = entity.attrs.get(n)
            columns[n].append(attr.value if attr is not None and _scalar(attr.value) else None)
    body = {
        "type": entity_type.name,
        "department": entity_type.department,
        "count": len(ids),
        "ids": ids,
        "lon": lons,
        "lat": lats,
        "modifiedAt": modified,
        "attrs": {n: col for n, col in columns.items() if any(v is not None for v in col)},
    }
    return Response(orjson.dumps(body), media_type="application/json")


def _point(geometry: dict[str, Any]) -> tuple[float | None, float | None]:
    if geometry.get("type") == "Point":
        return geometry["coordinates"][0], geometry["coordinates"][1]
    from citypilot.store.common import point_of

    return point_of(geometry)


@router.get("/layers", summary="The city's background map layers")
async def list_layers(city: CityDep, _: Viewer) -> Response:
    """Names of the GeoJSON layers in the data directory's ``layers`` folder."""
    folder = city.settings.data_path / "layers"
    names = sorted(p.stem for p in folder.glob("*.geojson")) if folder.is_dir() else []
    return Response(orjson.dumps({"layers": names}), media_type="application/json")


@router.get("/layers/{name}", summary="One background map layer (GeoJSON)")
async def get_layer(name: str, city: CityDep, _: Viewer) -> Response:
    """One GeoJSON layer file."""
    path = city.settings.data_path / "layers" / f"{name}.geojson"
    if not _LAYER_NAME.match(name) or not path.is_file():
        raise ResourceNotFound(f"no map layer called {name!r}", "name")
    return FileResponse(path, media_type="application/geo+json")
