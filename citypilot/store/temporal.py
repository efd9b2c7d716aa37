"""The NGSI-LD temporal query compiled to one SQL statement, the same for every store.

Instances come from the history table (one row per entity, attribute, dataset and
``observedAt``); the database filters the time range, keeps the first (or last) N
instances per attribute and dataset with a window function, and computes the
aggregation methods per attribute, dataset and period with GROUP BY. Each store only
says how it spells a few things.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    for column, values in (("name", query.attrs), ("dataset", query.datasets)):
        if values:
            conds.append(f"h.{column} IN ({', '.join([ph] * len(values))})")
            params.extend(values)
    if query.start is not None:
        conds.append(f"h.observed_at >= {ph}")
        params.append(query.start)
    if query.end is not None:
        conds.append(f"h.observed_at < {ph}")
        params.append(query.end)
    return " AND ".join(conds)


def temporal_sql(query: TemporalQuery, d: TemporalDialect) -> tuple[str, list[Any]]:
    """The statement answering ``query`` and its parameters (in placeholder order)."""
    params: list[Any] = []
    source = "entity_keys k JOIN history h ON h.eid = k.eid"
    if not query.methods:
        order = "DESC" if query.last_n is not None else "ASC"
        where = _where(query, d, params)
        params.append(query.last_n if query.last_n is not None else query.limit + 1)
        sql = (
            "SELECT id, name, dataset, observed_at, num, value FROM ("
            "SELECT k.id, h.name, h.dataset, h.observed_at, h.num, h.value, row_number() OVER"
            f" (PARTITION BY h.eid, h.name, h.dataset ORDER BY h.observed_at {order}) AS rn"
            f" FROM {source} WHERE {where}) s"
            f" WHERE rn <= {d.placeholder} ORDER BY id, name, dataset, observed_at"
        )
        return sql, params
    if query.period_s:  # the period's bounds follow from its index
        bucket = f"floor((h.observed_at - {d.placeholder}) / {d.placeholder}), NULL, NULL"
        params.extend((query.origin, query.period_s))
    else:
        bucket = "0, min(h.observed_at), max(h.observed_at)"
    methods = ", ".join(
        _METHODS[m].format(value_text=d.value_text, stddev=d.stddev) for m in query.methods
    )
    where = _where(query, d, params)
    sql = (
        f"SELECT k.id, h.name, h.dataset, {bucket}, {methods}"
        f" FROM {source} WHERE {where} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    return sql, params


def temporal_rows(query: TemporalQuery, rows: Iterable[tuple[Any, ...]]) -> TemporalResult:
    """Group the statement's rows by entity, attribute and dataset."""
    out: TemporalResult = {}
    if not query.methods:
        for entity_id, name, dataset, t, num, value in rows:
            out.setdefault(entity_id, {}).setdefault(name, {}).setdefault(dataset, []).append(
                (t, history_point(num, value))
            )
        return out
    for entity_id, name, dataset, b, first, last, *values in rows:
        out.setdefault(entity_id, {}).setdefault(name, {}).setdefault(dataset, []).append(
            TemporalBucket(int(b), first, last, tuple(values))
        )
    return out
