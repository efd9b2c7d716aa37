"""Whether an entity, as it is now, meets a subscription's ``q``, ``scopeQ`` and ``geoQ``:
the query language of ``store.query`` evaluated on the entity itself, with the stores'
meaning (numbers and booleans compared as numbers, strings and date-times as text)."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from citypilot.model.entity import Attribute, Entity, decode_meta
from citypilot.model.entity_scope import SCOPE
from citypilot.model.patterns import regexp
from citypilot.store.base import GeoQuery
from citypilot.store.common import geo_mask
from citypilot.store.query import And, Or, QueryNode, Term, Value

_COMPARE = {
    "==": operator.eq,
    "!=": operator.eq,  # negated in _term
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _comparable(value: Any, wanted: Value) -> tuple[Any, Any] | None:
    if isinstance(wanted, bool | float):
        if isinstance(value, bool | int | float):
            return float(value), float(wanted)
        return None
    return (value, wanted) if isinstance(value, str) else None


def _holds(op: str, value: Any, wanted: Value) -> bool:
    pair = _comparable(value, wanted)
    return pair is not None and _COMPARE[op](*pair)


_MISSING = object()


def _at_path(term: Term, attr: Attribute) -> Any:
    """What the term's path leads to in the attribute (``_MISSING`` if nowhere): a
    sub-attribute's value or object, then the keys inside it."""
    value: Any = attr.value
    if term.sub:
        meta = decode_meta(attr.meta) if isinstance(attr.meta, str) else attr.meta or {}
        node: Any = meta.get("sub", {})
        for name in term.sub:
            node = node.get(name) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                return _MISSING
        value = node.get("value", node.get("object", _MISSING))
    for key in term.keys:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _term(term: Term, entity: Entity) -> bool:
    attr = entity.attrs.get(term.attr)
    if attr is None:
        return False
    value = _at_path(term, attr) if term.sub or term.keys else attr.value
    if value is _MISSING:
        return False
    if term.op is None:
        return True
    if term.op in ("~=", "!~="):
        found = isinstance(value, str) and regexp(str(term.values[0]), value)
        return found if term.op == "~=" else not found
    if term.is_range:
        matched = _holds(">=", value, term.values[0]) and _holds("<=", value, term.values[1])
    else:
        matched = any(_holds(term.op, value, v) for v in term.values)
    return not matched if term.op == "!=" else matched


def meets_q(node: QueryNode, entity: Entity) -> bool:
    """Whether the entity meets the query."""
    if isinstance(node, Term):
        return _term(node, entity)
    if isinstance(node, And):
        return all(meets_q(i, entity) for i in node.items)
    if isinstance(node, Or):
        return any(meets_q(i, entity) for i in node.items)
    raise TypeError(node)


def scopes_of(entity: Entity) -> list[str]:
    """The entity's scopes (none if it has no ``scope``), for ``meets_scope_q``."""
    held = entity.attrs.get(SCOPE)
    return list(held.value) if held is not None else []


def meets_geo(geo: GeoQuery, entity: Entity) -> bool:
    """Whether the entity's location meets the geo-query."""
    location = entity.attrs.get("location")
    if location is None or not isinstance(location.value, dict):
        return False
    shape = location.value
    point = shape.get("type") == "Point"
    lon, lat = shape["coordinates"][:2] if point else (0.0, 0.0)
    mask = geo_mask(geo, np.array([lon]), np.array([lat]), np.array([point]), lambda _i: shape)
    return bool(mask[0])
