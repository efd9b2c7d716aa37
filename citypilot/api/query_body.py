"""The body of ``POST /entityOperations/query`` (ETSI GS CIM 009 v1.8, the ``Query`` data
type): entity selectors, ``attrs``, ``q``, ``scopeQ`` and ``geoQ``, read into the same entity query
as the parameters of ``GET /entities``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from citypilot.api.deps import City
from citypilot.api.selection import entity_selection
from citypilot.model.errors import BadRequestData
from citypilot.notify.subscription import parse_geoq
from citypilot.store.base import EntityQuery

_MEMBERS = {"type", "entities", "attrs", "q", "scopeQ", "geoQ", "@context"}
_SELECTOR = {"id", "idPattern", "type"}


@dataclass(frozen=True)
class QueryBody:
    """What a Query document asks: the entity query and the attributes to return."""

    query: EntityQuery
    attrs: str | None


def _text(doc: dict[str, Any], name: str, where: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequestData(f"{where} must be a string", where)
    return value


def _selectors(value: Any) -> dict[str, str | None]:
    """The selection parameters the ``entities`` selectors give. Several selectors are
    joined with OR, which the entity query can hold when they differ in one member only:
    several types, or several ids (of one type or none)."""
    if value is None:
        return {"type": None, "id": None, "idPattern": None}
    if not isinstance(value, list) or not value:
        raise BadRequestData("entities must be a non-empty array of selectors", "entities")
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not item or set(item) - _SELECTOR:
            raise BadRequestData(
                "each selector is an object of id, idPattern and type", f"entities[{i}]"
            )
        for name in _SELECTOR:
            _text(item, name, f"entities[{i}].{name}")
    if len(value) == 1:
        one = value[0]
        return {n: one.get(n) for n in _SELECTOR}
    if all(set(item) == {"type"} for item in value):
        return {"type": ",".join(item["type"] for item in value), "id": None, "idPattern": None}
    types = {item.get("type") for item in value}
    if all("id" in item and "idPattern" not in item for item in value) and len(types) == 1:
        ids = ",".join(item["id"] for item in value)
        return {"type": types.pop(), "id": ids, "idPattern": None}
    raise BadRequestData(
        "several selectors must differ in their type only, or name ids of one type",
        "entities",
    )


async def read_query_body(doc: Any, city: City, limit: int, offset: int, count: bool) -> QueryBody:
    """The entity query a Query document asks for; BadRequestData naming its member."""
    if not isinstance(doc, dict):
        raise BadRequestData("the body must be a Query object", "body")
    if doc.get("type") != "Query":
        raise BadRequestData('a Query document has "type": "Query"', "type")
    unknown = set(doc) - _MEMBERS
    if unknown:
        raise BadRequestData(f"unknown member {sorted(unknown)[0]!r}", sorted(unknown)[0])
    if not {"entities", "attrs", "q", "scopeQ", "geoQ"} & set(doc):
        raise BadRequestData("a Query needs entities, attrs, q, scopeQ or geoQ", "entities")
    attrs = doc.get("attrs")
    if attrs is not None and (
        not isinstance(attrs, list) or not attrs or not all(isinstance(a, str) for a in attrs)
    ):
        raise BadRequestData("attrs must be a non-empty array of attribute names", "attrs")
    query = await entity_selection(
        city,
        **_selectors(doc.get("entities")),
        q=_text(doc, "q", "q"),
        scopeQ=_text(doc, "scopeQ", "scopeQ"),
        limit=limit,
        offset=offset,
        count=count,
    )
    if "geoQ" in doc:
        query = replace(query, geo=parse_geoq(doc["geoQ"]))
    return QueryBody(query, ",".join(attrs) if attrs else None)
