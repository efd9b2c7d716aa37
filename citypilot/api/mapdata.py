"""What the console's map needs in bulk: every entity of a type at once, and the city layers.

``GET /api/v1/map/entities/{type}`` answers one compact, column-oriented document per
type (ids, positions and scalar attributes as parallel arrays), far smaller and faster to
draw than NGSI-LD pages when a layer has 45,000 streetlights.
``GET /api/v1/map/layers`` lists the city's background layers (municipalities, roads,
river, ...) kept as GeoJSON files in ``<data_dir>/layers``; ``/layers/{name}`` serves one.
"""

from __future__ import annotations

import re

import orjson
from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from citypilot.api.deps import CityDep, Viewer, access
from citypilot.api.openapi import answer
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.timeutil import format_instant

router = APIRouter(prefix="/api/v1/map", tags=["map"])
_LAYER_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")


@router.get("/entities/{type_name}", summary="Every entity of a type, column-oriented")
async def entities_of_type(
    type_name: str, city: CityDep, who: Viewer, attrs: str | None = None
) -> Response:
    """``{"type", "department", "count", "ids", "lon", "lat", "modifiedAt", "attrs": {...}}``.

    ``attrs`` (comma-separated) chooses the columns; by default every scalar attribute
    of the type (objects such as addresses are left out: read them from the NGSI-LD API;
    so are personal identifiers). Only the entities the caller's grants cover are listed.
    A column holds null where an entity lacks the attribute; a column nobody has is left
    out. Values are spliced in as stored, so a 45,000-entity layer is not re-encoded.
    """
    entity_type = city.broker.registry.get(type_name, "type_name")
    scalar = [
        n
        for n, spec in sorted(entity_type.attributes.items())
        if spec.kind != "GeoProperty"
        and spec.value not in ("object", "array")
        and spec.personal is None
    ]
    if attrs is None:
        names = scalar
    else:
        names = [a for a in attrs.split(",") if a]
        unknown = [a for a in names if a not in scalar]
        if unknown:
            raise BadRequestData(
                f"attrs: {', '.join(unknown)} is not a scalar attribute of {type_name}", "attrs"
            )
    layer = await city.broker.store.scan_columns(
        entity_type.name, names, access(city, who, "viewer")
    )
    head = orjson.dumps(
        {
            "type": entity_type.name,
            "department": entity_type.department,
            "count": len(layer.ids),
            "ids": layer.ids,
            "lon": layer.lon,
            "lat": layer.lat,
            "modifiedAt": [format_instant(t) for t in layer.modified_at],
        }
    )
    columns = [
        b'"'
        + name.encode()
        + b'":['
        + b",".join(b"null" if v is None else v.encode() for v in values)
        + b"]"
        for name, values in layer.values.items()
        if any(v is not None for v in values)
    ]
    body = head[:-1] + b',"attrs":{' + b",".join(columns) + b"}}"
    return Response(body, media_type="application/json")


@router.get("/layers", summary="The city's background map layers")
async def list_layers(city: CityDep, _: Viewer) -> Response:
    """Names of the GeoJSON layers in the data directory's ``layers`` folder."""
    folder = city.settings.data_path / "layers"
    names = sorted(p.stem for p in folder.glob("*.geojson")) if folder.is_dir() else []
    return Response(orjson.dumps({"layers": names}), media_type="application/json")


@router.get(
    "/layers/{name}",
    summary="One background map layer (GeoJSON)",
    response_class=Response,
    responses=answer(200, "A GeoJSON FeatureCollection", media="application/geo+json"),
)
async def get_layer(name: str, city: CityDep, _: Viewer) -> Response:
    """One GeoJSON layer file."""
    path = city.settings.data_path / "layers" / f"{name}.geojson"
    if not _LAYER_NAME.match(name) or not path.is_file():
        raise ResourceNotFound(f"no map layer called {name!r}", "name")
    return FileResponse(path, media_type="application/geo+json")
