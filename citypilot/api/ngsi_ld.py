"""The NGSI-LD API (ETSI GS CIM 009) under ``/ngsi-ld/v1``: entities, attributes, batches."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from citypilot.api.access import holds_personal, masker, require_entity, write_guard
from citypilot.api.body import read_json
from citypilot.api.deps import City, Operator, Reader, Viewer, access
from citypilot.api.jsonld import CORE_LINK
from citypilot.api.lang import in_language, parse_lang
from citypilot.api.linked import Join, Linked, Render, fetch_linked, flat_docs, inline, parse_join
from citypilot.api.openapi import (
    ATTRS_RESULT_SCHEMA,
    BATCH_RESULT_SCHEMA,
    ENTITY_OUT_SCHEMA,
    ENTITY_SCHEMA,
    FRAGMENT_SCHEMA,
    PROJECTED_ENTITY_SCHEMA,
    QUERY_SCHEMA,
    answer,
    array_of,
    created,
    json_body,
)
from citypilot.api.paging import Offset, page_links
from citypilot.api.projection import Projection, parse_projection, project_body
from citypilot.api.query_body import read_query_body
from citypilot.api.selection import MAX_LIMIT, Selection
from citypilot.api.tenants import NewTenantCity, TenantCity
from citypilot.api.uri_paths import uri_segment
from citypilot.broker import BatchResult
from citypilot.model.entity import Entity
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.ids import check_entity_id
from citypilot.security.scopes import Visibility
from citypilot.security.tokens import Principal
from citypilot.store.base import EntityQuery
from citypilot.store.common import scope_of_entity

router = APIRouter(prefix="/ngsi-ld/v1", tags=["NGSI-LD"])
GEOJSON = "application/geo+json"
LINK = CORE_LINK


def _json(
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    extra = dict(headers or {})
    links = ", ".join(v for v in (LINK, extra.pop("Link", "")) if v)
    return Response(orjson.dumps(body), status, {"Link": links, **extra}, media_type=media_type)


def _options(options: str | None) -> set[str]:
    return {o.strip() for o in (options or "").split(",") if o.strip()}


def _key_values(request: Request, options: str | None) -> bool:
    return "keyValues" in _options(options) or request.query_params.get("format") == "simplified"


def _renderer(request: Request, options: str | None, attrs: str | None) -> Render:
    """How each entity of an answer is rendered: the representation and ``lang`` asked,
    with the attributes ``attrs`` names."""
    opts = _options(options)
    key_values = _key_values(request, options)
    concise = "concise" in opts or request.query_params.get("format") == "concise"
    projection = set(attrs.split(",")) if attrs else None
    wanted = parse_lang(request.query_params.get("lang"))

    def doc(e: Entity) -> dict[str, Any]:
        out = e.to_ngsi(key_values, "sysAttrs" in opts, projection, concise)
        return out if wanted is None else in_language(out, wanted, key_values)

    return doc


def _feature(e: Entity, properties: dict[str, Any]) -> dict[str, Any]:
    geometry = e.attrs["location"].value if "location" in e.attrs else None
    return {"id": e.id, "type": "Feature", "geometry": geometry, "properties": properties}


def _render(
    entities: list[Entity],
    request: Request,
    options: str | None,
    attrs: str | None,
    links: tuple[Join, Linked] | None = None,
) -> tuple[Any, str]:
    doc = _renderer(request, options, attrs)
    if links is not None and links[0].mode == "inline":
        join, linked = links
        whole, key_values = _renderer(request, options, None), _key_values(request, options)
        shallow = doc

        def doc(e: Entity) -> dict[str, Any]:
            return inline(shallow(e), e, linked, whole, key_values, join.level)

    if GEOJSON in request.headers.get("accept", ""):
        features = [_feature(e, {"type": e.type, **doc(e)}) for e in entities]
        return {"type": "FeatureCollection", "features": features}, GEOJSON
    return [doc(e) for e in entities], "application/json"


def _with_flat(
    body: Any, media: str, links: tuple[Join, Linked] | None, request: Request, options: str | None
) -> Any:
    """The answer with the linked entities after its own (``join=flat``)."""
    if links is None or links[0].mode != "flat":
        return body
    whole = _renderer(request, options, None)
    if media == GEOJSON:
        extra = [_feature(e, {"type": e.type, **whole(e)}) for e in links[1].linked()]
        return {**body, "features": [*body["features"], *extra]}
    return [*body, *flat_docs(links[1], whole)]


JoinParam = Annotated[
    str | None, Query(description="inline or flat: add the linked entities (clause 4.5.23)")
]
JoinLevelParam = Annotated[
    str | None, Query(description="how many links deep join follows (1 to 5, default 1)")
]


async def _links(
    city: City, who: Principal, join: Join | None, entities: list[Entity], scope: Visibility
) -> tuple[Join, Linked] | None:
    """The linked entities of ``entities`` that ``join`` asks for and the caller may see
    (as they may see them)."""
    if join is None or not entities:
        return None
    linked = await fetch_linked(city.broker.store, entities, join, scope, masker(city, who))
    return join, linked


def _doc_ids(docs: Any) -> list[str]:
    """The ids a batch of entity documents names (for its authorization)."""
    if not isinstance(docs, list):
        return []
    return [d["id"] for d in docs if isinstance(d, dict) and isinstance(d.get("id"), str)]


async def _guarded_fragment(city: City, who: Any, entity_id: str, fragment: Any) -> dict[str, Any]:
    """A fragment's attributes, for an entity the caller may change (and keep changing)."""
    check_entity_id(entity_id)
    scope = await require_entity(city, who, entity_id, "operator")
    attrs = await city.broker.parse_fragment(entity_id, fragment)
    guard = await write_guard(city, who, [entity_id], merge=True)
    guard(Entity(entity_id, scope[0], attrs), "body")
    return attrs


def _batch_response(result: BatchResult, ok_status: int, ok_body: bool) -> Response:
    if result.errors:
        body = {
            "success": result.success,
            "errors": [
                {"entityId": e.entity_id, "index": e.index, "error": e.error.to_problem()}
                for e in result.errors
            ],
        }
        if not result.success and all(e.error.status == 400 for e in result.errors):
            # nothing applied and every item malformed: the request itself is bad
            first = result.errors[0].error
            return _json({**first.to_problem(), **body}, 400, media_type="application/problem+json")
        return _json(body, 207)
    if ok_body:
        return _json(result.success, ok_status)
    return Response(status_code=204)


@router.post(
    "/entities",
    status_code=201,
    summary="Create an entity",
    response_class=Response,
    responses=created("An entity with this id exists already"),
    openapi_extra=json_body(ENTITY_SCHEMA),
)
async def create_entity(request: Request, city: NewTenantCity, who: Operator) -> Response:
    """Create one entity; 201 with its Location, 409 AlreadyExists if the id is taken."""
    doc = await read_json(request, city.settings.max_body_bytes)
    guard = await write_guard(city, who, _doc_ids([doc]))
    entity = await city.broker.create_entity(doc, guard)
    return Response(
        status_code=201, headers={"Location": f"/ngsi-ld/v1/entities/{uri_segment(entity.id)}"}
    )


@router.get(
    "/entities",
    summary="Query entities",
    responses=answer(200, "A page of entities", array_of(PROJECTED_ENTITY_SCHEMA)),
)
async def query_entities(
    request: Request,
    city: TenantCity,
    who: Reader,
    selection: Selection,
    attrs: str | None = None,
    options: str | None = None,
    pick: str | None = None,
    omit: str | None = None,
    join: JoinParam = None,
    joinLevel: JoinLevelParam = None,
) -> Response:
    """Entities by type, id, attribute query, scope query and geo-query, paged with limit
    and offset (``Link`` to the previous and next pages); ``pick``/``omit`` choose their
    members, ``join``/``joinLevel`` add their linked entities."""
    query = replace(selection, count=selection.count or "count" in _options(options))
    projection = parse_projection(pick, omit)
    linked = parse_join(join, joinLevel)
    return await _page(
        request, city, who, query, options, attrs, projection, link_pages=True, join=linked
    )


async def _page(
    request: Request,
    city: City,
    who: Principal,
    query: EntityQuery,
    options: str | None,
    attrs: str | None,
    projection: Projection | None = None,
    link_pages: bool = False,
    join: Join | None = None,
) -> Response:
    """The page of entities the query selects within the caller's scopes: rendered,
    projected, with their linked entities (``join``), ``NGSILD-Results-Count`` when
    counted and (``link_pages``) ``Link`` to the neighbouring pages."""
    see = access(city, who, "viewer")
    query = replace(query, scope=see)
    # one more than the page, so that a next link is only given where a next page is
    peek = query.limit > 0 and not query.count
    entities, total = await city.broker.store.query_entities(
        replace(query, limit=query.limit + 1) if peek else query
    )
    more = len(entities) > query.limit
    entities = entities[: query.limit]
    masked = masker(city, who)
    shown = [masked(e) for e in entities]
    joined = await _links(city, who, join, shown, see)
    body, media = _render(shown, request, options, attrs, joined)
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
    if link_pages:
        links = page_links(request, query.offset, query.limit, len(entities), total, more)
        if links:
            headers["Link"] = links
    body = project_body(body, projection, media == GEOJSON)
    body = _with_flat(body, media, joined, request, options)
    return _json(body, headers=headers, media_type=media)


@router.get(
    "/entities/{entity_id:uri}",
    summary="Read an entity",
    responses=answer(200, "The entity", PROJECTED_ENTITY_SCHEMA),
)
async def get_entity(
    request: Request,
    entity_id: str,
    city: TenantCity,
    who: Reader,
    attrs: str | None = None,
    options: str | None = None,
    pick: str | None = None,
    omit: str | None = None,
    join: JoinParam = None,
    joinLevel: JoinLevelParam = None,
) -> Response:
    """One entity, normalised or (``options=keyValues``) concise; ``pick``/``omit``
    choose its members; ``join=inline`` puts its linked entities under their
    relationships, ``join=flat`` answers an array of it and them."""
    projection = parse_projection(pick, omit)
    linked = parse_join(join, joinLevel)
    plain = (
        attrs is None
        and options is None
        and projection is None
        and "lang" not in request.query_params
        and linked is None
        and GEOJSON not in request.headers.get("accept", "")
    )
    cache = city.entity_cache
    plain = plain and cache is not None
    see = access(city, who, "viewer")
    if plain:
        cached = cache.get(entity_id)
        if cached is not None:
            if not see.covers(*cached[1]):
                raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
            return Response(cached[0], headers={"Link": LINK}, media_type="application/json")
    entity = await city.broker.get_entity(entity_id)
    scope = (entity.type, *scope_of_entity(entity))
    if not see.covers(*scope):
        raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
    shown = masker(city, who)(entity)
    links = await _links(city, who, linked, [shown], see)
    body, media = _render([shown], request, options, attrs, links)
    if plain:
        rendered = orjson.dumps(body[0])
        if not holds_personal(city, entity):
            cache.put(entity_id, rendered, scope)
        return Response(rendered, headers={"Link": LINK}, media_type=media)
    geojson = media == GEOJSON
    one = project_body(body["features"][0] if geojson else body[0], projection, geojson)
    if links is not None and links[0].mode == "flat":
        # the entity and its linked entities, as an array (a FeatureCollection)
        whole = {"type": "FeatureCollection", "features": [one]} if geojson else [one]
        return _json(_with_flat(whole, media, links, request, options), media_type=media)
    return _json(one, media_type=media)


@router.delete("/entities/{entity_id:uri}", status_code=204, summary="Delete an entity")
async def delete_entity(entity_id: str, city: TenantCity, who: Operator) -> Response:
    """Delete an entity (its history stays)."""
    check_entity_id(entity_id)
    await require_entity(city, who, entity_id, "operator")
    await city.broker.delete_entity(entity_id)
    return Response(status_code=204)


def _attrs_response(outcome: Any) -> Response:
    if not outcome.not_updated:
        return Response(status_code=204)
    return _json(
        {
            "updated": outcome.updated,
            "notUpdated": [
                {"attributeName": n, "reason": r} for n, r in outcome.not_updated.items()
            ],
        },
        207,
    )


@router.patch(
    "/entities/{entity_id:uri}/attrs",
    summary="Update existing attributes",
    status_code=204,
    responses=answer(207, "Some attributes were not written", ATTRS_RESULT_SCHEMA),
    openapi_extra=json_body(FRAGMENT_SCHEMA),
)
async def update_attrs(
    request: Request, entity_id: str, city: TenantCity, who: Operator
) -> Response:
    """Overwrite attributes the entity has; 207 lists those it does not have."""
    fragment = await read_json(request, city.settings.max_body_bytes)
    attrs = await _guarded_fragment(city, who, entity_id, fragment)
    return _attrs_response(await city.broker.write_instances(entity_id, attrs, "update"))


@router.post(
    "/entities/{entity_id:uri}/attrs",
    summary="Append attributes",
    status_code=204,
    responses=answer(207, "Some attributes were not written", ATTRS_RESULT_SCHEMA),
    openapi_extra=json_body(FRAGMENT_SCHEMA),
)
async def append_attrs(
    request: Request, entity_id: str, city: TenantCity, who: Operator, options: str | None = None
) -> Response:
    """Add attributes (overwriting, unless ``options=noOverwrite``)."""
    fragment = await read_json(request, city.settings.max_body_bytes)
    attrs = await _guarded_fragment(city, who, entity_id, fragment)
    mode = "noOverwrite" if "noOverwrite" in _options(options) else "append"
    return _attrs_response(await city.broker.write_instances(entity_id, attrs, mode))


@router.patch(
    "/entities/{entity_id:uri}/attrs/{attr:uri}",
    status_code=204,
    summary="Update one attribute",
    openapi_extra=json_body({"description": "the attribute, normalised or a bare value"}),
)
async def update_attr(
    request: Request, entity_id: str, attr: str, city: TenantCity, who: Operator
) -> Response:
    """Update one existing attribute (clause 5.6.4): the instance of the ``datasetId``
    given (else the default one) takes the members given; its sub-attributes not given
    are kept (``urn:ngsi-ld:null`` deletes one). As ``PUT`` (clause 5.6.19), the
    instance is replaced whole."""
    body = await read_json(request, city.settings.max_body_bytes)
    attrs = await _guarded_fragment(city, who, entity_id, {attr: body})
    partial = request.method == "PATCH"
    outcome = await city.broker.write_instances(entity_id, attrs, "update", keep_sub=partial)
    if attr in outcome.not_updated:
        raise ResourceNotFound(f"{entity_id}: {outcome.not_updated[attr]}", attr)
    return Response(status_code=204)


@router.delete(
    "/entities/{entity_id:uri}/attrs/{attr:uri}", status_code=204, summary="Delete one attribute"
)
async def delete_attr(
    entity_id: str,
    attr: str,
    city: TenantCity,
    who: Operator,
    datasetId: str | None = None,
    deleteAll: bool = False,
) -> Response:
    """Remove the default instance of an attribute (or the one of ``datasetId``; every
    instance with ``deleteAll=true``)."""
    check_entity_id(entity_id)
    await require_entity(city, who, entity_id, "operator")
    await city.broker.delete_instance(entity_id, attr, datasetId, deleteAll)
    return Response(status_code=204)


@router.post(
    "/entityOperations/query",
    summary="Query entities with a Query document",
    responses=answer(200, "A page of entities", array_of(ENTITY_OUT_SCHEMA)),
    openapi_extra=json_body(QUERY_SCHEMA),
)
async def query_by_document(
    request: Request,
    city: TenantCity,
    who: Viewer,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 20,
    offset: Offset = 0,
    count: bool = False,
    options: str | None = None,
    join: JoinParam = None,
    joinLevel: JoinLevelParam = None,
) -> Response:
    """The entities a ``Query`` body selects (entities, attrs, q, geoQ), as ``GET /entities``
    answers them: paged by ``limit``/``offset``, counted with ``count=true``."""
    doc = await read_json(request, city.settings.max_body_bytes)
    counted = count or "count" in _options(options)
    asked = await read_query_body(doc, city, limit, offset, counted)
    linked = parse_join(join, joinLevel)
    return await _page(request, city, who, asked.query, options, asked.attrs, join=linked)


@router.post(
    "/entityOperations/create",
    status_code=201,
    summary="Batch create",
    responses=answer(207, "Some items failed; the others were applied", BATCH_RESULT_SCHEMA),
    openapi_extra=json_body(array_of(ENTITY_SCHEMA)),
)
async def batch_create(request: Request, city: NewTenantCity, who: Operator) -> Response:
    """Create many entities: 201 with their ids, or 207 with successes and per-item errors."""
    docs = await read_json(request, city.settings.max_body_bytes)
    guard = await write_guard(city, who, _doc_ids(docs))
    return _batch_response(await city.broker.batch_create(docs, guard), 201, True)


@router.post(
    "/entityOperations/upsert",
    status_code=201,
    summary="Batch upsert",
    responses={
        **answer(201, "The ids of the entities created (the others were updated)"),
        **answer(204, "Every entity existed already and was updated"),
        **answer(207, "Some items failed; the others were applied", BATCH_RESULT_SCHEMA),
    },
    openapi_extra=json_body(array_of(ENTITY_SCHEMA)),
)
async def batch_upsert(
    request: Request, city: NewTenantCity, who: Operator, options: str | None = None
) -> Response:
    """Create or replace (``options=update``: merge into) many entities: 201 with the ids
    of those it created, 204 when every one existed already, 207 when some failed."""
    docs = await read_json(request, city.settings.max_body_bytes)
    opts = _options(options)
    if {"update", "replace"} <= opts:
        raise BadRequestData("options takes update or replace, not both", "options")
    replace = "update" not in opts
    guard = await write_guard(city, who, _doc_ids(docs), merge=not replace)
    result = await city.broker.batch_upsert(docs, replace, guard)
    if result.errors:
        return _batch_response(result, 201, True)  # 207: successes (created or not), errors
    return _json(result.created, 201) if result.created else Response(status_code=204)


@router.post(
    "/entityOperations/update",
    status_code=204,
    summary="Batch update",
    responses=answer(207, "Some items failed; the others were applied", BATCH_RESULT_SCHEMA),
    openapi_extra=json_body(array_of(ENTITY_SCHEMA)),
)
async def batch_update(
    request: Request, city: TenantCity, who: Operator, options: str | None = None
) -> Response:
    """Write attributes into many existing entities (``options=noOverwrite`` only adds)."""
    docs = await read_json(request, city.settings.max_body_bytes)
    guard = await write_guard(city, who, _doc_ids(docs), merge=True)
    result = await city.broker.batch_update(docs, "noOverwrite" in _options(options), guard)
    return _batch_response(result, 204, False)


@router.post(
    "/entityOperations/delete",
    status_code=204,
    summary="Batch delete",
    responses=answer(207, "Some items failed; the others were applied", BATCH_RESULT_SCHEMA),
    openapi_extra=json_body(array_of({"type": "string"})),
)
async def batch_delete(request: Request, city: TenantCity, who: Operator) -> Response:
    """Delete many entities by id."""
    ids = await read_json(request, city.settings.max_body_bytes)
    wanted = [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
    guard = await write_guard(city, who, wanted)
    existing = await city.broker.store.lookup(wanted)

    def may_delete(entity_id: str, where: str) -> None:
        if entity_id in existing:
            guard(Entity(entity_id, existing[entity_id].type), where)

    return _batch_response(await city.broker.batch_delete(ids, may_delete), 204, False)
