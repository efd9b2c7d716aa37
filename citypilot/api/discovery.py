"""NGSI-LD discovery (ETSI GS CIM 009 v1.8, clauses 5.7.5-5.7.10, 5.2.24-5.2.30): the
entity types and attributes present in the city, as the caller may see them."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from citypilot.api.deps import Viewer, access
from citypilot.api.ngsi_ld import LINK
from citypilot.api.openapi import answer
from citypilot.api.tenants import TenantCity
from citypilot.model.errors import ResourceNotFound
from citypilot.store.census import Census

router = APIRouter(prefix="/ngsi-ld/v1", tags=["NGSI-LD discovery"])
_OBJECT = {"type": "object", "required": ["id", "type"]}
#: A list, or with ``details=true`` the detailed items (an array).
_LIST_OR_ITEMS = {"oneOf": [_OBJECT, {"type": "array", "items": _OBJECT}]}


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), headers={"Link": LINK}, media_type="application/json")


def _list_id(kind: str) -> str:
    return f"urn:ngsi-ld:{kind}:{uuid.uuid4()}"


def _attributes_of(census: Census, type_name: str) -> list[str]:
    return sorted(n for t, n in census.attrs if t == type_name)


def _attribute(census: Census, name: str) -> dict[str, Any] | None:
    held = {t: kc for (t, n), kc in census.attrs.items() if n == name}
    if not held:
        return None
    return {
        "id": name,
        "type": "Attribute",
        "attributeName": name,
        "attributeCount": sum(count for _, count in held.values()),
        "attributeTypes": sorted(set().union(*(kinds for kinds, _ in held.values()))),
        "typeNames": sorted(held),
    }


@router.get(
    "/types",
    summary="Entity types",
    responses=answer(200, "EntityTypeList, or (details=true) EntityType items", _LIST_OR_ITEMS),
)
async def list_types(city: TenantCity, who: Viewer, details: bool = False) -> Response:
    """The types of the entities there are (``EntityTypeList``); with ``details=true``,
    each with its attribute names."""
    census = await city.broker.store.census(access(city, who, "viewer"))
    names = sorted(census.types)
    if details:
        return _json(
            [
                {
                    "id": n,
                    "type": "EntityType",
                    "typeName": n,
                    "attributeNames": _attributes_of(census, n),
                }
                for n in names
            ]
        )
    return _json({"id": _list_id("EntityTypeList"), "type": "EntityTypeList", "typeList": names})


@router.get(
    "/types/{type_name}",
    summary="One entity type",
    responses=answer(200, "EntityTypeInfo", _OBJECT),
)
async def get_type(type_name: str, city: TenantCity, who: Viewer) -> Response:
    """How many entities of the type there are, and their attributes with their kinds."""
    census = await city.broker.store.census(access(city, who, "viewer"))
    if type_name not in census.types:
        raise ResourceNotFound(f"there are no entities of type {type_name[:100]}", "type")
    details = []
    for name in _attributes_of(census, type_name):
        kinds, _count = census.attrs[(type_name, name)]
        details.append(
            {
                "id": name,
                "type": "Attribute",
                "attributeName": name,
                "attributeTypes": sorted(kinds),
            }
        )
    return _json(
        {
            "id": type_name,
            "type": "EntityTypeInfo",
            "typeName": type_name,
            "entityCount": census.types[type_name],
            "attributeDetails": details,
        }
    )


@router.get(
    "/attributes",
    summary="Attributes",
    responses=answer(200, "AttributeList, or (details=true) Attribute items", _LIST_OR_ITEMS),
)
async def list_attributes(city: TenantCity, who: Viewer, details: bool = False) -> Response:
    """The attributes the entities hold (``AttributeList``); with ``details=true``, each
    with its count, kinds and the types holding it."""
    census = await city.broker.store.census(access(city, who, "viewer"))
    names = sorted({n for _, n in census.attrs})
    if details:
        return _json([_attribute(census, n) for n in names])
    return _json({"id": _list_id("AttributeList"), "type": "AttributeList", "attributeList": names})


@router.get(
    "/attributes/{attr_name}",
    summary="One attribute",
    responses=answer(200, "Attribute", _OBJECT),
)
async def get_attribute(attr_name: str, city: TenantCity, who: Viewer) -> Response:
    """How many entities hold the attribute, of which kinds and types."""
    census = await city.broker.store.census(access(city, who, "viewer"))
    found = _attribute(census, attr_name)
    if found is None:
        raise ResourceNotFound(f"no entity holds an attribute {attr_name[:100]}", "attribute")
    return _json(found)
