"""NGSI-LD entity operations that merge, replace and purge (ETSI GS CIM 009 v1.8,
clauses 5.6.17-5.6.21): ``PATCH /entities/{id}`` (merge), ``PUT /entities/{id}``
(replace), ``PUT /entities/{id}/attrs/{attr}`` (replace one attribute),
``POST /entityOperations/merge`` and ``DELETE /entities?type=`` (purge)."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.access import require_entity, write_guard
from citypilot.api.body import read_json
from citypilot.api.deps import Operator, access
from citypilot.api.ngsi_ld import _batch_response, _doc_ids, _guarded_fragment, update_attr
from citypilot.api.openapi import (
    BATCH_RESULT_SCHEMA,
    ENTITY_SCHEMA,
    FRAGMENT_SCHEMA,
    answer,
    array_of,
    json_body,
)
from citypilot.api.selection import Selection
from citypilot.api.tenants import TenantCity
from citypilot.model.entity import split_deletions
from citypilot.model.errors import BadRequestData
from citypilot.model.ids import check_entity_id

router = APIRouter(prefix="/ngsi-ld/v1", tags=["NGSI-LD"])


@router.patch(
    "/entities/{entity_id:uri}",
    status_code=204,
    summary="Merge an entity",
    openapi_extra=json_body(FRAGMENT_SCHEMA),
)
async def merge_entity(
    request: Request, entity_id: str, city: TenantCity, who: Operator
) -> Response:
    """Merge a fragment into an entity: attributes given replace those of their name or
    are added, keeping the sub-attributes they do not give; ``urn:ngsi-ld:null`` deletes."""
    fragment = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(fragment, dict):
        raise BadRequestData("body must be a JSON object of attributes", "body")
    check_entity_id(entity_id)
    own_type = (await require_entity(city, who, entity_id, "operator"))[0]
    kept, gone = split_deletions(fragment)
    if kept.get("type", own_type) != own_type:
        raise BadRequestData(f"type must be the entity's own, {own_type!r}", "type")
    if {k for k in kept if k not in ("id", "type", "@context")}:
        attrs = await _guarded_fragment(city, who, entity_id, kept)
        await city.broker.merge_attrs(entity_id, attrs)
    elif not gone:
        raise BadRequestData("body names no attribute", "body")
    for name in gone:
        await city.broker.delete_attr(entity_id, name, missing_ok=True)
    return Response(status_code=204)


@router.put(
    "/entities/{entity_id:uri}",
    status_code=204,
    summary="Replace an entity",
    openapi_extra=json_body(ENTITY_SCHEMA),
)
async def replace_entity(
    request: Request, entity_id: str, city: TenantCity, who: Operator
) -> Response:
    """Replace every attribute of an entity with those of the body (its id and type stay)."""
    doc = await read_json(request, city.settings.max_body_bytes)
    check_entity_id(entity_id)
    await require_entity(city, who, entity_id, "operator")
    guard = await write_guard(city, who, [entity_id])
    await city.broker.replace_entity(entity_id, doc, guard)
    return Response(status_code=204)


# replacing one attribute overwrites it whole (the partial update, PATCH, keeps its
# sub-attributes not given): one handler, told apart by the method
router.add_api_route(
    "/entities/{entity_id:uri}/attrs/{attr:uri}",
    update_attr,
    methods=["PUT"],
    status_code=204,
    summary="Replace one attribute",
    openapi_extra=json_body({"description": "the attribute, normalised or concise"}),
)


@router.post(
    "/entityOperations/merge",
    status_code=204,
    summary="Batch merge",
    responses=answer(207, "Some items failed; the others were applied", BATCH_RESULT_SCHEMA),
    openapi_extra=json_body(array_of(ENTITY_SCHEMA)),
)
async def batch_merge(request: Request, city: TenantCity, who: Operator) -> Response:
    """Merge each entity of the body into the stored one of its id: 204, or 207 with
    the successes and per-item errors (404 for an entity that does not exist)."""
    docs = await read_json(request, city.settings.max_body_bytes)
    if isinstance(docs, list) and not docs:
        raise BadRequestData("body must name at least one entity", "body")
    guard = await write_guard(city, who, _doc_ids(docs), merge=True)
    return _batch_response(await city.broker.batch_merge(docs, guard), 204, False)


@router.delete("/entities", status_code=204, summary="Purge the entities of a type")
async def purge_entities(city: TenantCity, who: Operator, selection: Selection) -> Response:
    """Delete every entity of ``type`` (narrowed by ``q``, ``idPattern``, ``id`` or a
    geo-query) that the caller may change; their history stays."""
    if selection.types is None:
        raise BadRequestData("type names the entities to delete", "type")
    await city.broker.purge(replace(selection, scope=access(city, who, "operator")))
    return Response(status_code=204)
