"""The NGSI-LD temporal query compiled to one SQL statement, the same for every store.

Instances come from the history table (one row per entity, attribute, ``observedAt``
and dataset); the database filters the time range, keeps the first (or last) N
instances per attribute and dataset with a window function, and computes the
aggregation methods per attribute, dataset and period with GROUP BY. Instances of a
``datasetId`` are looked for only in the attributes that have some (``dataset_attrs``),
so a query of default instances costs what it did before datasets. Each store only
says how it spells a few things.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from citypilot.model.observation import DEFAULT_DATASET
from citypilot.store.base import TemporalBucket, TemporalQuery, TemporalResult
from citypilot.store.common import history_point


@dataclass(frozen=True)
class TemporalDialect:
    """How a backend spells the parts that differ."""

    placeholder: str  # "?" or "%s"
    value_text: str  # a history value as comparable text (for distinctCount)
    stddev: str  # sample standard deviation of h.num


_METHODS = {
    "totalCount": "count(*)",
    "distinctCount": "count(DISTINCT {value_text})",
    "sum": "sum(h.num)",
    "avg": "avg(h.num)",
    "min": "min(h.num)",
    "max": "max(h.num)",
    "stddev": "{stddev}",
    "sumsq": "sum(h.num * h.num)",
}


def _where(query: TemporalQuery, d: TemporalDialect, params: list[Any]) -> str:
    ph = d.placeholder
    conds = [f"k.id IN ({', '.join([ph] * len(query.entity_ids))})"]
    params.extend(query.entity_ids)
    if query.attrs:
        conds.append(f"h.name IN ({', '.join([ph] * len(query.attrs))})")
        params.extend(query.attrs)
    if query.start is not None:
        conds.append(f"h.observed_at >= {ph}")
        params.append(query.start)
    if query.end is not None:
        conds.append(f"h.observed_at < {ph}")
        params.append(query.end)
    return " AND ".join(conds)


#: One SQL statement and its parameters (in placeholder order).
Statement = tuple[str, list[Any]]
_SOURCE = "entity_keys k JOIN history h ON h.eid = k.eid"
_MARKED = (
    "entity_keys k JOIN dataset_attrs a ON a.eid = k.eid"
    " JOIN history h ON h.eid = a.eid AND h.name = a.name"
)


def _statement(
    query: TemporalQuery, d: TemporalDialect, source: str, dataset: str, params: list[Any]
) -> Statement:
    """The statement of one half: ``dataset`` its condition on ``h.dataset`` (whose
    parameters close ``params``); the half of datasets (``source`` ``_MARKED``) gives
    and partitions by the dataset too."""
    ph = d.placeholder
    marked = source == _MARKED
    keys = "h.eid, h.name, h.dataset" if marked else "h.eid, h.name"
    column = "h.dataset, " if marked else ""
    head: list[Any] = []
    if not query.methods:
        order = "DESC" if query.last_n is not None else "ASC"
        where = _where(query, d, head)
        sql = (
            f"SELECT id, name, {column.removeprefix('h.')}observed_at, num, value FROM ("
            f"SELECT k.id, h.name, {column}h.observed_at, h.num, h.value, row_number() OVER"
            f" (PARTITION BY {keys} ORDER BY h.observed_at {order}) AS rn"
            f" FROM {source} WHERE {where} AND {dataset}) s WHERE rn <= {ph}"
            f" ORDER BY id, name, {column.removeprefix('h.')}observed_at"
        )
        last = query.last_n if query.last_n is not None else query.limit + 1
        return sql, [*head, *params, last]
    if query.period_s:  # the period's bounds follow from its index
        bucket = f"floor((h.observed_at - {ph}) / {ph}), NULL, NULL"
        head.extend((query.origin, query.period_s))
    else:
        bucket = "0, min(h.observed_at), max(h.observed_at)"
    methods = ", ".join(
        _METHODS[m].format(value_text=d.value_text, stddev=d.stddev) for m in query.methods
    )
    where = _where(query, d, head)
    by = "1, 2, 3, 4" if marked else "1, 2, 3"
    sql = (
        f"SELECT k.id, h.name, {column}{bucket}, {methods}"
        f" FROM {source} WHERE {where} AND {dataset} GROUP BY {by} ORDER BY {by}"
    )
    return sql, [*head, *params]


def temporal_sql(
    query: TemporalQuery, d: TemporalDialect
) -> tuple[Statement | None, Statement | None]:
    """The statements answering ``query``, None where it asks for none of their
    instances: that of the default instances (nearly all of history: partitioned and
    grouped by entity and attribute only, as before there were datasets), and that of
    the instances of a ``datasetId``, looked for only in the attributes that have some
    (``dataset_attrs``)."""
    ph = d.placeholder
    wanted = query.datasets
    default = None
    if wanted is None or DEFAULT_DATASET in wanted:
        default = _statement(query, d, _SOURCE, f"h.dataset = {ph}", [DEFAULT_DATASET])
    others = None if wanted is None else [x for x in wanted if x != DEFAULT_DATASET]
    if others is None:
        return default, _statement(query, d, _MARKED, f"h.dataset <> {ph}", [DEFAULT_DATASET])
    if not others:
        return default, None
    named = f"h.dataset IN ({', '.join([ph] * len(others))})"
    return default, _statement(query, d, _MARKED, named, others)


def _series(out: TemporalResult, entity_id: str, name: str, dataset: str) -> list[Any]:
    return out.setdefault(entity_id, {}).setdefault(name, {}).setdefault(dataset, [])


def temporal_rows(
    query: TemporalQuery,
    default: Iterable[tuple[Any, ...]],
    datasets: Iterable[tuple[Any, ...]] = (),
) -> TemporalResult:
    """Group the rows of the two statements by entity, attribute and dataset (the
    default instances' rows come grouped by entity and attribute: one look-up each)."""
    out: TemporalResult = {}
    at: tuple[str, str] = ("", "")
    series: list[Any] = []
    if not query.methods:
        for entity_id, name, t, num, value in default:
            if name != at[1] or entity_id != at[0]:
                at, series = (entity_id, name), _series(out, entity_id, name, DEFAULT_DATASET)
            series.append((t, history_point(num, value)))
        for entity_id, name, dataset, t, num, value in datasets:
            _series(out, entity_id, name, dataset).append((t, history_point(num, value)))
        return out
    for entity_id, name, b, first, last, *values in default:
        if name != at[1] or entity_id != at[0]:
            at, series = (entity_id, name), _series(out, entity_id, name, DEFAULT_DATASET)
        series.append(TemporalBucket(int(b), first, last, tuple(values)))
    for entity_id, name, dataset, b, first, last, *values in datasets:
        bucket = TemporalBucket(int(b), first, last, tuple(values))
        _series(out, entity_id, name, dataset).append(bucket)
    return out
