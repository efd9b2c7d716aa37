"""Temporal provision (ETSI GS CIM 009 v1.8, clauses 5.6.11-5.6.16): writing an entity's
past as instances, changing or removing one instance, and removing an attribute's or an
entity's temporal evolution.

Instances go where device observations go: into history keyed by (entity, attribute,
dataset, ``observedAt``), and into current state where one is the newest of its
``datasetId`` (the default instance: of none). So every instance needs its
``observedAt``, and an instance is named by it and its dataset: its ``instanceId``
(shown by the temporal API) is ``urn:ngsi-ld:instance:<observedAt in seconds since the
epoch>``, followed by ``:<datasetId>`` for an instance of a dataset.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from citypilot.api.access import require_entity, write_guard
from citypilot.api.body import read_json
from citypilot.api.deps import City, Operator
from citypilot.api.openapi import FRAGMENT_SCHEMA, json_body
from citypilot.api.tenants import NewTenantCity, TenantCity
from citypilot.api.uri_paths import uri_segment
from citypilot.model.entity import (
    Attribute,
    Entity,
    dataset_of,
    entity_type_of,
    has_datasets,
    parse_attributes,
    single_instances,
    with_instances,
)
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.ids import check_entity_id
from citypilot.model.observation import DEFAULT_DATASET, Reading
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.model.types import EntityType
from citypilot.security.tokens import Principal
from citypilot.store.base import TemporalQuery
from citypilot.store.common import attribute_readings

router = APIRouter(prefix="/ngsi-ld/v1/temporal", tags=["NGSI-LD temporal"])

INSTANCE_PREFIX = "urn:ngsi-ld:instance:"
MAX_INSTANCES_PER_WRITE = 10_000
_RESERVED = {"id", "type", "@context", "scope"}

TEMPORAL_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {"id": {"type": "string"}, "type": {"type": "string"}},
    "additionalProperties": {
        "description": "per attribute, its instances: "
        "[{type, value|object, observedAt, datasetId?}]"
    },
    "example": {
        "id": "urn:ngsi-ld:Streetlight:42",
        "type": "Streetlight",
        "powerConsumption": [
            {"type": "Property", "value": 41.5, "observedAt": "2026-11-20T10:00:00Z"},
            {"type": "Property", "value": 0.0, "observedAt": "2026-11-20T11:00:00Z"},
        ],
    },
}
DatasetId = Annotated[
    str | None,
    Query(description="remove the instances of this datasetId (default: the default instance's)"),
]
DeleteAll = Annotated[bool, Query(description="remove the instances of every datasetId")]
_ATTRS_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": TEMPORAL_BODY_SCHEMA["additionalProperties"],
}


def instance_id(observed_at: float, dataset: str = DEFAULT_DATASET) -> str:
    """The ``instanceId`` of the instance of ``dataset`` observed at ``observed_at``
    (exact: the float's shortest round-tripping decimal, which holds no colon)."""
    tail = f":{dataset}" if dataset != DEFAULT_DATASET else ""
    return f"{INSTANCE_PREFIX}{observed_at!r}{tail}"


def instant_of(instance: str) -> tuple[float, str]:
    """The ``observedAt`` and dataset an ``instanceId`` names; ResourceNotFound if it
    names none."""
    if instance.startswith(INSTANCE_PREFIX):
        instant, _, dataset = instance.removeprefix(INSTANCE_PREFIX).partition(":")
        try:
            return float(instant), dataset
        except ValueError:
            pass
    raise ResourceNotFound(f"no attribute instance {instance!r}", "instanceId")


def _instances(
    city: City, type_name: Any, fragment: dict[str, Any], where: str = ""
) -> dict[str, list[Attribute]]:
    """Each attribute's instances, checked as attributes of the type (strictly for a
    registered one), each with its ``observedAt``; BadRequestData naming the instance."""
    prefix = f"{where}." if where else ""
    entity_type = _type_of(city, type_name, f"{prefix}type")
    out: dict[str, list[Attribute]] = {}
    count = 0
    for name, raw in fragment.items():
        if name in _RESERVED:
            continue
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise BadRequestData(f"{name} has no instances", f"{prefix}{name}")
        count += len(items)
        if count > MAX_INSTANCES_PER_WRITE:
            raise BadRequestData(
                f"at most {MAX_INSTANCES_PER_WRITE:,} instances per request", f"{prefix}{name}"
            )
        for k, item in enumerate(items):
            field = f"{prefix}{name}[{k}]" if isinstance(raw, list) else f"{prefix}{name}"
            out.setdefault(name, []).append(_instance(city, entity_type, name, item, field))
    if not out:
        raise BadRequestData("no attribute instances given", where or "body")
    return out


def _type_of(city: City, type_name: Any, field: str) -> EntityType | None:
    """The registered type (None: an open-world one the city accepts)."""
    return entity_type_of(city.broker.registry, type_name, field, city.broker.strict_types)


def _instance(
    city: City, entity_type: EntityType | None, name: str, item: Any, field: str
) -> Attribute:
    """One instance, checked as an attribute of the type; BadRequestData naming it."""
    if not isinstance(item, dict) or "observedAt" not in item:
        raise BadRequestData(f"{field} must be an attribute instance with observedAt", field)
    try:
        attr = parse_attributes(entity_type, city.broker.registry, {name: item})[name]
    except BadRequestData as exc:  # name the instance, not only the attribute
        raise BadRequestData(exc.detail, field + (exc.field or "")[len(name) :]) from None
    return attr


def _newer(attr: Attribute | None, given: Attribute) -> Attribute:
    """``attr`` with ``given`` in place of its instance of the same dataset, if that one
    is older (or missing); else ``attr`` as it is."""
    if attr is None:
        return given
    dataset = dataset_of(given)
    stored = next((i for i in single_instances(attr) if dataset_of(i) == dataset), None)
    if stored is None or (stored.observed_at or 0.0) <= (given.observed_at or 0.0):
        return with_instances(attr, given)
    return attr


def _state(current: Entity | None, name: str, given: list[Attribute]) -> Attribute:
    """The attribute once ``given`` is written: per dataset, the newest instance given,
    where it is newer than the stored one; its history, every instance given."""
    newest: dict[str | None, Attribute] = {}
    for attr in given:
        old = newest.get(dataset_of(attr))
        if old is None or (old.observed_at or 0.0) <= (attr.observed_at or 0.0):
            newest[dataset_of(attr)] = attr
    state = current.attrs.get(name) if current is not None else None
    for attr in newest.values():
        state = _newer(state, attr)
    assert state is not None  # ``given`` is never empty
    return replace(state, written=tuple(given))


def _readings(
    entity_id: str, current: Entity | None, instances: dict[str, list[Attribute]]
) -> list[Reading]:
    """The readings writing ``instances``: one per instance of a plain attribute (the
    newest becomes state, as a device's would); one per attribute with a ``datasetId``,
    its state merged with the instances given (see ``_state``)."""
    now = time.time()
    out = []
    for name, attrs in instances.items():
        old = current.attrs.get(name) if current is not None else None
        if not has_datasets(old) and all(dataset_of(a) is None for a in attrs):
            out += [r for attr in attrs for r in attribute_readings(entity_id, {name: attr}, now)]
        else:
            out += attribute_readings(entity_id, {name: _state(current, name, attrs)}, now)
    return out


def _newest(current: Entity | None, instances: dict[str, list[Attribute]]) -> dict[str, Attribute]:
    """Per attribute, its state once the instances are all written."""
    return {name: _state(current, name, attrs) for name, attrs in instances.items()}


@router.post(
    "/entities",
    status_code=201,
    summary="Create or add to an entity's temporal evolution",
    responses={204: {"description": "The entity existed: its instances were added"}},
    openapi_extra=json_body(TEMPORAL_BODY_SCHEMA),
)
async def provide_temporal(request: Request, city: NewTenantCity, who: Operator) -> Response:
    """Write the instances of a temporal entity: 201 (and ``Location``) when it creates
    the entity, 204 when it adds to an existing one."""
    doc = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(doc, dict):
        raise BadRequestData("the body must be a temporal entity object", "body")
    entity_id = check_entity_id(doc.get("id"), "id")
    current = await city.broker.store.get_entity(entity_id)
    if current is not None and current.type != doc.get("type"):
        raise BadRequestData(f"entity {entity_id} is a {current.type}", "type")
    instances = _instances(city, doc.get("type"), doc)
    guard = await write_guard(city, who, [entity_id], merge=True)
    newest = _newest(current, instances)
    guard(Entity(entity_id, doc["type"], newest), "body")
    created = current is None
    if created:
        await city.broker.create_entity({"id": entity_id, "type": doc["type"], **_as_docs(newest)})
    await city.broker.apply_observations(_readings(entity_id, current, instances))
    if not created:
        return Response(status_code=204)
    location = f"/ngsi-ld/v1/temporal/entities/{uri_segment(entity_id)}"
    return Response(status_code=201, headers={"Location": location})


def _as_docs(attrs: dict[str, Attribute]) -> dict[str, Any]:
    return {name: attr.to_ngsi() for name, attr in attrs.items()}


async def _existing_type(city: City, who: Principal, entity_id: str) -> str:
    """The type of an entity the caller may change (404 if there is none, 403 if theirs
    to see only): its scope, read once, holds it."""
    check_entity_id(entity_id)
    return (await require_entity(city, who, entity_id, "operator"))[0]


async def _write(city: City, entity_id: str, instances: dict[str, list[Attribute]]) -> None:
    """Write instances into an existing entity's history (and state, where newest)."""
    current = await city.broker.store.get_entity(entity_id)
    await city.broker.apply_observations(_readings(entity_id, current, instances))


@router.post(
    "/entities/{entity_id:uri}/attrs",
    status_code=204,
    summary="Add attribute instances to an entity's temporal evolution",
    openapi_extra=json_body(_ATTRS_BODY_SCHEMA),
)
async def add_instances(
    request: Request, entity_id: str, city: TenantCity, who: Operator
) -> Response:
    """Add instances of the entity's attributes (each with its ``observedAt``)."""
    type_name = await _existing_type(city, who, entity_id)
    fragment = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(fragment, dict):
        raise BadRequestData("the body must be an object of attribute instances", "body")
    instances = _instances(city, type_name, fragment)
    guard = await write_guard(city, who, [entity_id], merge=True)
    guard(Entity(entity_id, type_name, _newest(None, instances)), "body")
    await _write(city, entity_id, instances)
    return Response(status_code=204)


async def _has_instance(city: City, entity_id: str, attr: str, at: float, dataset: str) -> bool:
    query = TemporalQuery(
        (entity_id,), (attr,), at, math.nextafter(at, math.inf), limit=1, datasets=(dataset,)
    )
    found = await city.broker.store.temporal(query)
    return bool(found.get(entity_id, {}).get(attr))


@router.patch(
    "/entities/{entity_id:uri}/attrs/{attr:uri}/{instance:uri}",
    status_code=204,
    summary="Change one attribute instance",
    openapi_extra=json_body(FRAGMENT_SCHEMA),
)
async def modify_instance(
    request: Request, entity_id: str, attr: str, instance: str, city: TenantCity, who: Operator
) -> Response:
    """Replace the value of the instance ``instanceId`` names; its ``observedAt`` and
    ``datasetId`` stay."""
    type_name = await _existing_type(city, who, entity_id)
    at, dataset = instant_of(instance)
    body = await read_json(request, city.settings.max_body_bytes)
    item = body.get(attr, body) if isinstance(body, dict) else None  # {attr: it}, or it
    if not isinstance(item, dict):
        raise BadRequestData("the body must be an attribute instance", "body")
    if "observedAt" in item and parse_instant(item["observedAt"], "observedAt") != at:
        raise BadRequestData("an instance keeps its observedAt", "observedAt")
    if item.get("datasetId", dataset or None) != (dataset or None):
        raise BadRequestData("an instance keeps its datasetId", "datasetId")
    kept = {"observedAt": format_instant(at), **({"datasetId": dataset} if dataset else {})}
    entity_type = _type_of(city, type_name, "type")
    new = _instance(city, entity_type, attr, {**item, **kept}, attr)
    new.observed_at = at  # exactly the instant it names (the text keeps milliseconds)
    if not await _has_instance(city, entity_id, attr, at, dataset):
        raise ResourceNotFound(f"no instance {instance} of {attr}", "instanceId")
    await _write(city, entity_id, {attr: [new]})
    return Response(status_code=204)


@router.delete(
    "/entities/{entity_id:uri}/attrs/{attr:uri}/{instance:uri}",
    status_code=204,
    summary="Remove one attribute instance",
)
async def delete_instance(
    entity_id: str, attr: str, instance: str, city: TenantCity, who: Operator
) -> Response:
    """Remove the instance ``instanceId`` names from history (current state stays)."""
    await _existing_type(city, who, entity_id)
    at, dataset = instant_of(instance)
    if not await city.broker.store.delete_history(entity_id, attr, at, dataset):
        raise ResourceNotFound(f"no instance {instance} of {attr}", "instanceId")
    return Response(status_code=204)


@router.delete(
    "/entities/{entity_id:uri}/attrs/{attr:uri}",
    status_code=204,
    summary="Remove an attribute's temporal evolution",
)
async def delete_attribute_history(
    entity_id: str,
    attr: str,
    city: TenantCity,
    who: Operator,
    datasetId: DatasetId = None,
    deleteAll: DeleteAll = False,
) -> Response:
    """Remove the instances of the attribute's default instance from history, or those
    of ``datasetId``, or (``deleteAll``) every one (current state stays)."""
    await _existing_type(city, who, entity_id)
    if deleteAll and datasetId is not None:
        raise BadRequestData("give datasetId or deleteAll, not both", "deleteAll")
    dataset = None if deleteAll else (datasetId or DEFAULT_DATASET)
    if await city.broker.store.delete_history(entity_id, attr, dataset=dataset):
        return Response(status_code=204)
    if datasetId is not None:
        raise ResourceNotFound(
            f"{attr} of {entity_id} has no instances of datasetId {datasetId}", "datasetId"
        )
    if deleteAll:
        raise ResourceNotFound(f"{attr} of {entity_id} has no temporal evolution", "attr")
    raise ResourceNotFound(
        f"{attr} of {entity_id} has no default instances (give datasetId or deleteAll=true)",
        "attr",
    )


@router.delete(
    "/entities/{entity_id:uri}", status_code=204, summary="Remove an entity's temporal evolution"
)
async def delete_temporal_entity(entity_id: str, city: TenantCity, who: Operator) -> Response:
    """Remove the entity's whole history and the entity itself."""
    await _existing_type(city, who, entity_id)
    await city.broker.store.delete_history(entity_id)
    await city.broker.delete_entity(entity_id)
    return Response(status_code=204)
