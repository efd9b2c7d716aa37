"""Linked entity retrieval reads the store once per level of links for the whole
answer, however many entities link how many others, and asks within the caller's
scope."""

from __future__ import annotations

import asyncio

from citypilot.api.linked import Join, fetch_linked
from citypilot.model.entity import Attribute, Entity
from citypilot.security.scopes import Grant, TypePolicy, Visibility
from citypilot.store.base import EntityQuery

SCOPE = Visibility((Grant("viewer"),), TypePolicy({}))


def thing(name: str, *links: str) -> Entity:
    """An entity whose relationships point at ``links``."""
    attrs = {f"to{i}": Attribute("Relationship", f"urn:x:{t}") for i, t in enumerate(links)}
    return Entity(f"urn:x:{name}", "Thing", attrs)


class CountingStore:
    """A store that answers id queries from a dict and keeps the queries it was asked."""

    def __init__(self, entities: list[Entity]) -> None:
        self.by_id = {e.id: e for e in entities}
        self.queries: list[EntityQuery] = []

    async def query_entities(self, query: EntityQuery) -> tuple[list[Entity], None]:
        self.queries.append(query)
        return [self.by_id[i] for i in query.ids or () if i in self.by_id], None


def test_one_store_query_per_level_within_the_callers_scope():
    roots = [thing(f"r{k}", "a", "b", f"c{k}") for k in range(50)]
    level1 = [thing("a", "d"), thing("b", "d", "r0"), *(thing(f"c{k}") for k in range(50))]
    store = CountingStore([*roots, *level1, thing("d", "e"), thing("e")])
    linked = asyncio.run(fetch_linked(store, roots, Join("flat", 3), SCOPE, lambda e: e))
    assert len(store.queries) == 3
    assert [len(q.ids or ()) for q in store.queries] == [52, 1, 1]
    assert all(q.scope is SCOPE for q in store.queries)
    assert [e.id for e in linked.linked()][-2:] == ["urn:x:d", "urn:x:e"]
    assert linked.level_of["urn:x:e"] == 3 and linked.level_of["urn:x:r0"] == 0


def test_nothing_more_is_read_once_no_link_leads_further():
    store = CountingStore([thing("a")])
    asyncio.run(fetch_linked(store, [thing("r", "a")], Join("inline", 5), SCOPE, lambda e: e))
    assert len(store.queries) == 1
