"""Linked entity retrieval (ETSI GS CIM 009 v1.8, clause 4.5.23): ``join=inline|flat``
with ``joinLevel`` (default 1). The entities the Relationships and ListRelationships of
an answer point to are fetched, one store query per level for the whole answer, within
the caller's scope (an entity the caller may not see is not joined), and placed under
their relationship (``inline``: ``entity``, ``entityList`` for a ListRelationship; in
keyValues the linked entity stands for its URI) or after the answer's entities
(``flat``, each once). An entity met again deeper is given, but its own links are not
followed a second time. Relationships of sub-attributes (``speed.measuredBy``) are
followed and joined too, at any depth (keyValues shows no sub-attributes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from citypilot.model.entity import Entity, instances_of
from citypilot.model.errors import BadRequestData
from citypilot.security.scopes import Visibility
from citypilot.store.base import EntityQuery, Store

MAX_JOIN_LEVEL = 5
#: Ids per store query (a level with more linked entities takes several).
_CHUNK = 1000
_LINKS = {"Relationship": "object", "ListRelationship": "objectList"}
_LINK_MEMBERS = frozenset(_LINKS.values())
#: Members of an attribute that hold its value (or, ``entity`` and ``entityList``, the
#: linked entities join puts beside it), not sub-attributes.
_VALUE_MEMBERS = frozenset(
    {
        "value",
        "object",
        "objectList",
        "json",
        "languageMap",
        "valueList",
        "vocab",
        "entity",
        "entityList",
    }
)

Render = Callable[[Entity], dict[str, Any]]


@dataclass(frozen=True)
class Join:
    """How linked entities are given, and how many links deep they are followed."""

    mode: Literal["inline", "flat"]
    level: int = 1


def parse_join(join: str | None, join_level: str | None) -> Join | None:
    """The ``join`` and ``joinLevel`` parameters (None: no join, also for ``@none``);
    BadRequestData naming the parameter that is wrong."""
    level = 1
    if join_level is not None:
        try:
            level = int(join_level)
        except ValueError:
            level = 0
        if not 1 <= level <= MAX_JOIN_LEVEL:
            raise BadRequestData(
                f"joinLevel must be a whole number from 1 to {MAX_JOIN_LEVEL}", "joinLevel"
            )
    if join is None or join == "@none":
        return None
    if join not in ("inline", "flat"):
        raise BadRequestData("join must be inline, flat or @none", "join")
    return Join(join, level)  # type: ignore[arg-type]  (checked just above)


def _objects(entity: Entity) -> Iterable[str]:
    """The ids the entity's Relationships and ListRelationships point to, those of its
    attributes' sub-attributes (``speed.measuredBy``) included, to any depth."""
    for attr in entity.attrs.values():
        member = _LINKS.get(attr.kind)
        meta = attr.meta if isinstance(attr.meta, dict) else {}
        if member is not None:
            many = "instances" in meta
            for instance in instances_of(attr) if many else ({member: attr.value},):
                yield from _targets(instance.get(member))
        for sub in meta.get("sub", {}).values():
            yield from _nested(sub)
        for instance in meta.get("instances", ()):
            yield from _nested({k: v for k, v in instance.items() if k not in _LINK_MEMBERS})


def _targets(found: Any) -> Iterable[str]:
    """The ids an ``object`` or ``objectList`` member holds."""
    if isinstance(found, str):
        yield found
    elif isinstance(found, list):
        yield from (o for o in found if isinstance(o, str))


def _nested(doc: Any) -> Iterable[str]:
    """The ids a (normalised) sub-attribute points to when it is a relationship, and
    those of its own sub-attributes."""
    if not isinstance(doc, dict):
        return
    member = _LINKS.get(doc.get("type", ""))
    if member is not None:
        yield from _targets(doc.get(member))
    for key, value in doc.items():
        if key not in _VALUE_MEMBERS and isinstance(value, dict):
            yield from _nested(value)


@dataclass
class Linked:
    """The entities of an answer and those they link to, by id, and the level where
    each was first met (the answer's own: 0)."""

    known: dict[str, Entity] = field(default_factory=dict)
    level_of: dict[str, int] = field(default_factory=dict)

    def linked(self) -> list[Entity]:
        """The linked entities (not those of the answer), level by level."""
        return [e for i, e in self.known.items() if self.level_of[i] > 0]


async def fetch_linked(
    store: Store,
    roots: list[Entity],
    join: Join,
    scope: Visibility,
    shown: Callable[[Entity], Entity],
) -> Linked:
    """The entities ``roots`` link to, ``join.level`` links deep, that ``scope`` lets the
    caller see (each as ``shown`` gives it): one store query per level."""
    linked = Linked({e.id: e for e in roots}, {e.id: 0 for e in roots})
    frontier = roots
    for level in range(1, join.level + 1):
        wanted = list(dict.fromkeys(o for e in frontier for o in _objects(e)))
        wanted = [i for i in wanted if i not in linked.level_of]
        if not wanted:
            break
        frontier = []
        for start in range(0, len(wanted), _CHUNK):
            chunk = tuple(wanted[start : start + _CHUNK])
            query = EntityQuery(ids=chunk, limit=len(chunk), scope=scope)
            found, _ = await store.query_entities(query)
            frontier.extend(shown(e) for e in found)  # links followed as the caller sees them
        for entity in frontier:
            linked.level_of[entity.id] = level
            linked.known[entity.id] = entity
    return linked


def flat_docs(linked: Linked, render: Render) -> list[dict[str, Any]]:
    """The linked entities, as ``join=flat`` appends them to an answer."""
    return [render(e) for e in linked.linked()]


def inline(
    doc: dict[str, Any],
    entity: Entity,
    linked: Linked,
    render: Render,
    key_values: bool,
    levels: int,
    depth: int = 0,
) -> dict[str, Any]:
    """The rendered entity with its linked entities inline, to ``levels`` links deep;
    ``depth`` is the entity's own."""

    def joined(entity_id: str) -> dict[str, Any] | None:
        found = linked.known.get(entity_id)
        if found is None:
            return None
        child = render(found)
        if depth + 1 < levels and linked.level_of[entity_id] == depth + 1:
            child = inline(child, found, linked, render, key_values, levels, depth + 1)
        return child

    for name, attr in entity.attrs.items():
        if name not in doc:
            continue
        if attr.kind in _LINKS:
            doc[name] = (_simplified if key_values else _instances)(doc[name], joined)
        if not key_values:  # keyValues shows no sub-attributes
            doc[name] = _sub_joined(doc[name], joined)
    return doc


def _sub_joined(value: Any, joined: Callable[[str], dict[str, Any] | None]) -> Any:
    """A rendered attribute (or its instances) whose relationship sub-attributes, at any
    depth, have their linked entities beside their objects."""
    if isinstance(value, list):
        return [_sub_joined(v, joined) for v in value]
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in value.items():
        if key in _VALUE_MEMBERS or not isinstance(sub, dict):
            continue
        concise_link = "type" not in sub and not _LINK_MEMBERS.isdisjoint(sub)
        linked = _instances(sub, joined) if sub.get("type") in _LINKS or concise_link else sub
        out[key] = _sub_joined(linked, joined)
    return out


def _instances(value: Any, joined: Callable[[str], dict[str, Any] | None]) -> Any:
    """A normalised or concise relationship (or its instances) with ``entity``, or
    ``entityList`` for a ListRelationship, beside the objects that were joined."""
    if isinstance(value, list):
        return [_instances(v, joined) for v in value]
    if not isinstance(value, dict):
        return value
    out = dict(value)
    target = value.get("object")
    if isinstance(target, str):
        found = joined(target)
        if found is not None:
            out["entity"] = found
    elif isinstance(target, list):
        docs = [d for d in (joined(o) for o in target if isinstance(o, str)) if d is not None]
        if docs:
            out["entity"] = docs
    targets = value.get("objectList")
    if isinstance(targets, list):
        docs = [d for d in (joined(o) for o in targets if isinstance(o, str)) if d is not None]
        if docs:
            out["entityList"] = docs
    return out


def _simplified(value: Any, joined: Callable[[str], dict[str, Any] | None]) -> Any:
    """A keyValues relationship with each URI that was joined replaced by its entity
    (``{"objectList": [...]}`` becoming ``{"entityList": [...]}``)."""
    if isinstance(value, str):
        found = joined(value)
        return value if found is None else found
    if isinstance(value, list):
        return [_simplified(v, joined) for v in value]
    if isinstance(value, dict) and isinstance(value.get("objectList"), list):
        items = [_simplified(o, joined) for o in value["objectList"]]
        return {"entityList": items} if any(isinstance(i, dict) for i in items) else value
    if isinstance(value, dict) and isinstance(value.get("dataset"), dict):
        return {"dataset": {k: _simplified(v, joined) for k, v in value["dataset"].items()}}
    return value
