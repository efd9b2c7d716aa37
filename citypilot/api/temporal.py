"""The NGSI-LD temporal API under ``/ngsi-ld/v1/temporal``: the evolution of entities
over the history CityPilot keeps, as instances, simplified values or aggregated periods.

Entities are chosen as ``GET /entities`` chooses them (type, id, idPattern, q,
geo-query, over current state); their instances come from history, filtered and
aggregated by the store in SQL (see ``store.temporal``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

import citypilot.api.uri_paths  # noqa: F401  (registers the uri path convertor)
from citypilot.api.access import mask_values, may_see_history
from citypilot.api.deps import Reader, access
from citypilot.api.ngsi_ld import LINK
from citypilot.api.openapi import answer, array_of
from citypilot.api.selection import Selection
from citypilot.api.temporal_params import MAX_INSTANCES, TemporalParams, parse_temporal
from citypilot.api.temporal_provision import instance_id
from citypilot.api.tenants import TenantCity
from citypilot.model.entity import Attribute, Entity, instances_of
from citypilot.model.entity_scope import SCOPE, scope_member
from citypilot.model.errors import ResourceNotFound
from citypilot.model.ids import check_entity_id, type_of_id
from citypilot.model.observation import DEFAULT_DATASET
from citypilot.model.timeutil import format_instant
from citypilot.store.base import EntityScope, TemporalBucket, TemporalQuery, TemporalSeries
from citypilot.store.common import scope_of_entity

router = APIRouter(prefix="/ngsi-ld/v1/temporal", tags=["NGSI-LD temporal"])

TEMPORAL_ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {"id": {"type": "string"}, "type": {"type": "string"}},
    "additionalProperties": {
        "description": "per attribute: its instances "
        "[{type, value|object, observedAt, instanceId, datasetId?}], "
        "or (temporalValues) {type, values|objects: [[value, observedAt]]}, or "
        "(aggregatedValues) {type, <method>: [[value, periodStart, periodEnd]]}; "
        "with instances of a datasetId, an array of the latter two, one per dataset, "
        "each with its datasetId"
    },
    "example": {
        "id": "urn:ngsi-ld:Streetlight:42",
        "type": "Streetlight",
        "powerConsumption": {
            "type": "Property",
            "avg": [[41.5, "2026-11-20T10:00:00.000Z", "2026-11-20T11:00:00.000Z"]],
        },
    },
}
_PARTIAL = {
    206: {
        "description": "An attribute has more than 10,000 instances in the range: the first "
        "ones (the Content-Range header says up to when)",
        "headers": {"Content-Range": {"schema": {"type": "string"}}},
    }
}

TimeRel = Annotated[str | None, Query(description="before | after | between")]
Instant = Annotated[str | None, Query(description="ISO 8601 date-time with a time zone")]
LastN = Annotated[int | None, Query(ge=1, le=MAX_INSTANCES, description="the last N instances")]
AggrMethods = Annotated[
    str | None,
    Query(description="totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"),
]
Period = Annotated[str | None, Query(description="ISO 8601 duration, e.g. PT1H (default PT0S)")]
DatasetIds = Annotated[
    str | None,
    Query(
        description="the datasetIds of the instances wanted, comma-separated; @none: the "
        "default instance (default: every instance)"
    ),
]


async def temporal_params(
    timerel: TimeRel = None,
    timeAt: Instant = None,
    endTimeAt: Instant = None,
    timeproperty: str | None = None,
    lastN: LastN = None,
    aggrMethods: AggrMethods = None,
    aggrPeriodDuration: Period = None,
    options: str | None = None,
    format: str | None = None,
    datasetId: DatasetIds = None,
) -> TemporalParams:
    """The temporal parameters of a request, checked together."""
    return parse_temporal(
        timerel=timerel,
        time_at=timeAt,
        end_time_at=endTimeAt,
        timeproperty=timeproperty,
        last_n=lastN,
        aggr_methods=aggrMethods,
        aggr_period=aggrPeriodDuration,
        options=options,
        format=format,
        dataset_id=datasetId,
    )


Temporal = Annotated[TemporalParams, Depends(temporal_params)]


class _Renderer:
    """Turns one entity's series into its temporal representation."""

    def __init__(self, params: TemporalParams) -> None:
        self.params = params
        self.truncated_at: float | None = None
        self._formatted: dict[float, str] = {}

    def instant(self, t: float) -> str:
        """``format_instant``, once per instant (periods share their bounds)."""
        text = self._formatted.get(t)
        if text is None:
            text = self._formatted[t] = format_instant(t)
        return text

    def _cut(self, last: float) -> None:
        self.truncated_at = last if self.truncated_at is None else min(self.truncated_at, last)

    def attribute(
        self,
        now: Attribute | None,
        by_dataset: dict[str, TemporalSeries],
        shown: Callable[[Any], Any],
    ) -> Any:
        """One attribute: its instances (each with its ``datasetId``, but the default
        instance's), or per dataset its simplified values or aggregated periods (an
        array of them, each with its ``datasetId``, unless there is only the default)."""
        kinds = _kinds(now, by_dataset)
        parts = [
            self._series(*kinds.get(d, ("Property", None)), d, by_dataset[d], shown)
            for d in sorted(by_dataset)
        ]
        if not self.params.methods and not self.params.simplified:
            return [instance for part in parts for instance in part]
        return parts[0] if list(by_dataset) == [DEFAULT_DATASET] else parts

    def _series(
        self,
        kind: str,
        unit: str | None,
        dataset: str,
        series: TemporalSeries,
        shown: Callable[[Any], Any],
    ) -> Any:
        """One dataset of an attribute: instances, simplified values or aggregated
        periods, with its ``datasetId`` (but the default instance's)."""
        p = self.params
        head: dict[str, Any] = {"type": kind}
        if dataset != DEFAULT_DATASET:
            head["datasetId"] = dataset
        cut = len(series) > MAX_INSTANCES
        series = series[:MAX_INSTANCES]
        if p.methods:
            buckets: list[TemporalBucket] = series
            spans = [p.period_bounds(b.index, b.first, b.last) for b in buckets]
            if cut:
                self._cut(spans[-1][1])
            bounds = [(self.instant(s), self.instant(e)) for s, e in spans]
            out = dict(head)
            for i, method in enumerate(p.methods):
                out[method] = [[b.values[i], *se] for b, se in zip(buckets, bounds, strict=True)]
            return out
        points: list[tuple[float, Any]] = series  # type: ignore[assignment]
        if cut:
            self._cut(points[-1][0])
        key = "object" if kind == "Relationship" else "value"
        if p.simplified:
            return {**head, key + "s": [[shown(v), format_instant(t)] for t, v in points]}
        extra = {"unitCode": unit} if unit is not None else {}
        return [
            {
                **head,
                key: shown(v),
                "observedAt": format_instant(t),
                "instanceId": instance_id(t, dataset),
                **extra,
            }
            for t, v in points
        ]

    def entity(
        self,
        entity_id: str,
        type_name: str,
        current: Entity | None,
        series: dict[str, dict[str, TemporalSeries]],
        shown: Callable[[str, Any], Any],
    ) -> dict[str, Any]:
        """One temporal entity; attribute kinds and units as the entity has them now."""
        out: dict[str, Any] = {"id": entity_id, "type": type_name}
        if current is not None and SCOPE in current.attrs:
            out[SCOPE] = scope_member(current.attrs[SCOPE].value)
        for name, by_dataset in series.items():
            if name == SCOPE:
                continue  # a member of the entity, not one of its attributes
            now = current.attrs.get(name) if current is not None else None
            out[name] = self.attribute(now, by_dataset, lambda v, n=name: shown(n, v))
        return out

    def headers(self) -> dict[str, str]:
        """The Content-Range of a partial answer (none when whole)."""
        if self.truncated_at is None:
            return {}
        start = format_instant(self.params.start) if self.params.start is not None else "*"
        return {
            "Content-Range": f"date-time {start}-{format_instant(self.truncated_at)}"
            f"/{MAX_INSTANCES}"
        }


def _kinds(
    now: Attribute | None, by_dataset: dict[str, TemporalSeries]
) -> dict[str, tuple[str, str | None]]:
    """Per dataset, the kind and unit its instance has now (none: a Property)."""
    if now is None:
        return {}
    if list(by_dataset) == [DEFAULT_DATASET] and not isinstance(now.meta, dict):
        return {DEFAULT_DATASET: (now.kind, now.unit_code)}  # the common case, kept quick
    return {
        i.get("datasetId", DEFAULT_DATASET): (i["type"], i.get("unitCode"))
        for i in instances_of(now)
    }


def _store_query(ids: tuple[str, ...], attrs: str | None, p: TemporalParams) -> TemporalQuery:
    names = tuple(a for a in attrs.split(",") if a) if attrs else None
    return TemporalQuery(
        ids,
        names,
        p.start,
        p.end,
        p.last_n,
        MAX_INSTANCES,
        p.methods,
        p.period_s,
        p.origin,
        p.datasets,
    )


def _respond(body: Any, renderer: _Renderer, extra: dict[str, str] | None = None) -> Response:
    headers = {"Link": LINK, **renderer.headers(), **(extra or {})}
    status = 206 if "Content-Range" in headers else 200
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


@router.get(
    "/entities",
    summary="Query the temporal evolution of entities",
    responses={**answer(200, "Temporal entities", array_of(TEMPORAL_ENTITY_SCHEMA)), **_PARTIAL},
)
async def query_temporal(
    city: TenantCity,
    who: Reader,
    params: Temporal,
    selection: Selection,
    attrs: str | None = None,
) -> Response:
    """Entities chosen as ``GET /entities`` chooses them, each with its attributes'
    instances (or simplified values, or aggregated periods) in the time range."""
    query = replace(selection, scope=access(city, who, "viewer"))
    entities, total = await city.broker.store.query_entities(query)
    renderer = _Renderer(params)
    found = (
        await city.broker.store.temporal(_store_query(tuple(e.id for e in entities), attrs, params))
        if entities
        else {}
    )
    body = [
        renderer.entity(
            e.id,
            e.type,
            e,
            found.get(e.id, {}),
            mask_values(city, who, e.type, (e.type, *scope_of_entity(e))),
        )
        for e in entities
    ]
    extra = {"NGSILD-Results-Count": str(total)} if total is not None else None
    return _respond(body, renderer, extra)


@router.get(
    "/entities/{entity_id:uri}",
    summary="The temporal evolution of one entity",
    responses={**answer(200, "The temporal entity", TEMPORAL_ENTITY_SCHEMA), **_PARTIAL},
)
async def retrieve_temporal(
    entity_id: str,
    city: TenantCity,
    who: Reader,
    params: Temporal,
    attrs: str | None = None,
) -> Response:
    """One entity's attributes over time; a deleted entity's history stays readable."""
    check_entity_id(entity_id)
    current = await city.broker.store.get_entity(entity_id)
    scope: EntityScope | None = (
        (current.type, *scope_of_entity(current)) if current is not None else None
    )
    if not may_see_history(city, who, entity_id, scope):
        raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
    found = await city.broker.store.temporal(_store_query((entity_id,), attrs, params))
    if current is None and entity_id not in found:
        raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
    type_name = current.type if current is not None else type_of_id(entity_id)
    renderer = _Renderer(params)
    body = renderer.entity(
        entity_id,
        type_name,
        current,
        found.get(entity_id, {}),
        mask_values(city, who, type_name, scope),
    )
    return _respond(body, renderer)
