"""Administration: entity types and dead letters (health is in ``api.health``)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from citypilot.api.audit import note_change
from citypilot.api.body import read_json
from citypilot.api.deps import Admin, CityDep, Viewer
from citypilot.api.openapi import (
    DEAD_LETTERS_SCHEMA,
    ENTITY_TYPE_SCHEMA,
    METROPOLE_ONLY,
    TYPE_VERSIONS_SCHEMA,
    answer,
    array_of,
    json_body,
    problem,
)
from citypilot.api.paging import Offset
from citypilot.model.errors import Forbidden, ResourceNotFound
from citypilot.model.timeutil import format_instant
from citypilot.security.scopes import effective_grants

router = APIRouter(prefix="/api/v1", tags=["admin"])


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


@router.get(
    "/types",
    summary="Registered entity types",
    responses=answer(200, "Every type", array_of(ENTITY_TYPE_SCHEMA)),
)
async def list_types(city: CityDep, _: Viewer) -> Response:
    """Every registered type with its attributes, units, ranges and commands."""
    return _json([t.to_json() for t in city.broker.registry])


@router.get(
    "/types/{name}",
    summary="One entity type",
    responses=answer(200, "The type", ENTITY_TYPE_SCHEMA),
)
async def get_type(name: str, city: CityDep, _: Viewer) -> Response:
    """One registered type."""
    if name not in city.broker.registry:
        raise ResourceNotFound(f"type {name!r} is not registered", "name")
    return _json(city.broker.registry.get(name).to_json())


_TYPE_BODY = {"type": "object", "required": ["name", "department"]}


@router.post(
    "/types",
    status_code=201,
    summary="Register an entity type, or a new version of one",
    responses={
        **answer(201, "The new type, at version 1", ENTITY_TYPE_SCHEMA),
        **answer(200, "A new version (or the same declaration again)", ENTITY_TYPE_SCHEMA),
        **problem(409, "The change breaks stored entities (listed), or narrows a built-in"),
    },
    openapi_extra=json_body(_TYPE_BODY),
)
async def register_type(
    request: Request,
    city: CityDep,
    who: Admin,
    force: Annotated[bool, Query(description="register even if stored entities break")] = False,
) -> Response:
    """Register a type (201), or a new version of a registered one (200).

    A change that stored entities break (an attribute removed or narrowed that they
    use) is refused with 409 listing what breaks, unless ``force=true``; a built-in
    type may only be extended compatibly. A ``version`` in the body must be the
    current one (the change is then refused if someone changed the type meanwhile).
    """
    doc = await read_json(request, city.settings.max_body_bytes)
    name = doc.get("name") if isinstance(doc, dict) else None
    registry = city.broker.registry
    before = registry.get(name).to_json() if isinstance(name, str) and name in registry else None
    entity_type, created = await city.broker.types.register(doc, force, who.name)
    note_change(request, entity_type.name, before, entity_type.to_json())
    return _json(entity_type.to_json(), 201 if created else 200)


@router.get(
    "/types/{name}/versions",
    summary="Every version of an entity type",
    responses=answer(200, "The versions, oldest first", TYPE_VERSIONS_SCHEMA),
)
async def type_versions(name: str, city: CityDep, _: Viewer) -> Response:
    """The versions of a type, oldest first: who registered each, when, what it broke."""
    return _json({"name": name, "versions": await city.broker.types.history(name)})


@router.delete(
    "/types/{name}",
    status_code=204,
    summary="Delete a run-time entity type",
    responses=problem(409, "Entities of the type exist (listed), or it is built in"),
)
async def delete_type(name: str, city: CityDep, _: Admin) -> Response:
    """Remove a type registered at run time that no entity has; its history stays."""
    await city.broker.types.delete(name)
    return Response(status_code=204)


@router.get(
    "/dead-letters",
    summary="Refused device messages",
    responses={
        **answer(200, "A page of dead letters", DEAD_LETTERS_SCHEMA),
        **problem(403, "The caller holds no grant over the whole metropole"),
    },
    openapi_extra=METROPOLE_ONLY,
)
async def dead_letters(
    city: CityDep,
    who: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> Response:
    """Messages that failed validation, newest first, with reason and raw payload."""
    if not any(g.is_metropole for g in effective_grants(who.role, who.grants)):
        raise Forbidden(
            "dead letters hold raw device payloads of every kind: they need a grant over "
            f"the whole metropole, and {who.name!r} holds none"
        )
    letters, total = await city.broker.store.list_dead_letters(limit, offset)
    return _json(
        {
            "total": total,
            "items": [
                {
                    "id": d.id,
                    "receivedAt": format_instant(d.received_at),
                    "source": d.source,
                    "reason": d.reason,
                    "field": d.field,
                    "payload": d.payload,
                }
                for d in letters
            ],
        }
    )
