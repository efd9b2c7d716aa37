"""What the NGSI-LD discovery operations (``/types``, ``/attributes``) report: how many
entities of each type, and which attributes, of which kinds, they hold. Counted by the
database over current state, within the caller's scope; the same SQL for every store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citypilot.security.scopes import Visibility


@dataclass
class Census:
    """Entities per type, and per (type, attribute) the kinds and how many hold it."""

    types: dict[str, int] = field(default_factory=dict)
    attrs: dict[tuple[str, str], tuple[set[str], int]] = field(default_factory=dict)


def census_sql(scope: Visibility | None, placeholder: str) -> tuple[str, str, list[Any]]:
    """The two statements (types, attributes) and their shared parameters."""
    condition, params = ("TRUE", []) if scope is None else scope.sql(placeholder)
    types = f"SELECT e.type, count(*) FROM entities e WHERE {condition} GROUP BY e.type"
    attrs = (
        "SELECT e.type, a.name, a.kind, count(*) FROM entities e JOIN attrs a ON a.eid = e.eid"
        f" WHERE {condition} AND a.name <> 'scope' GROUP BY e.type, a.name, a.kind"
    )
    return types, attrs, params


def census_of(type_rows: Any, attr_rows: Any) -> Census:
    """The census from the rows of the two statements."""
    out = Census(types={t: int(n) for t, n in type_rows})
    for type_name, name, kind, n in attr_rows:
        kinds, count = out.attrs.get((type_name, name), (set(), 0))
        kinds.add(kind)
        out.attrs[(type_name, name)] = (kinds, count + int(n))
    return out
