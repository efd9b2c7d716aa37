"""Road closures: street segments closed until an end time, avoided by routing at once.

A closure is an entity of type ``RoadClosure`` (both stores keep it; its geometry,
a MultiLineString of the closed segments, is on the map). The book keeps the
active ones in memory and hands the union of their segments to the routing, so
the next search avoids them; a closure whose end time has passed ends by itself
at the next look.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from citypilot.broker import Broker
from citypilot.model.entity import Entity
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.ids import entity_id
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.ops.incidents import value
from citypilot.ops.routing import Routing
from citypilot.store.base import EntityQuery
from citypilot.store.query import Term

CLOSURE_TYPE = "RoadClosure"
MAX_EDGES = 500
MAX_CLOSURE_RADIUS_M = 1000.0


@dataclass(frozen=True)
class ActiveClosure:
    """What the routing needs of a closure in force."""

    id: str
    edges: frozenset[int]
    ends_at: float
    starts_at: float = 0.0
    name: str = ""  # the closed streets
    reason: str = ""
    incident: str | None = None  # the incident it cordons off, if any


def _active(e: Entity) -> ActiveClosure:
    return ActiveClosure(
        e.id,
        frozenset(value(e, "edges", [])),
        parse_instant(value(e, "endsAt"), "endsAt"),
        parse_instant(value(e, "startsAt"), "startsAt"),
        value(e, "name", ""),
        value(e, "reason", ""),
        value(e, "refIncident"),
    )


def _prop(v: Any) -> dict[str, Any]:
    return {"type": "Property", "value": v}


class ClosureBook:
    """Closes and reopens street segments, keeping the routing's closed set in step."""

    def __init__(self, broker: Broker, routing: Routing | None) -> None:
        self.broker = broker
        self.routing = routing
        self._listeners: list[Callable[[list[ActiveClosure]], None]] = []
        self._active: dict[str, ActiveClosure] = {}
        self._lock = asyncio.Lock()
        self._loaded = False

    async def _load(self) -> None:
        if self._loaded:
            return
        found, _ = await self.broker.store.query_entities(
            EntityQuery(types=(CLOSURE_TYPE,), q=Term("status", "==", ("active",)), limit=10_000)
        )
        for e in found:
            self._active[e.id] = _active(e)
        self._loaded = True
        self._apply()

    def _apply(self) -> None:
        if self.routing is not None:
            closed: set[int] = set()
            for c in self._active.values():
                closed |= c.edges
            self.routing.set_closed(closed)
        for listener in self._listeners:
            listener(list(self._active.values()))

    def listen(self, listener: Callable[[list[ActiveClosure]], None]) -> None:
        """Call ``listener`` with the closures in force each time they change, and at once
        when they are loaded already (transit detours made after a mode closed roads)."""
        self._listeners.append(listener)
        if self._loaded:
            listener(list(self._active.values()))

    async def refresh(self, now: float | None = None) -> None:
        """End the closures whose time is up; the routing then uses their streets again."""
        async with self._lock:
            await self._load()
            now = time.time() if now is None else now
            for c in [c for c in self._active.values() if c.ends_at <= now]:
                await self._mark_ended(c.id, "ended at its end time")

    def cordon_of(self, incident_id: str) -> frozenset[int]:
        """The segments closed only for this incident: its own responders drive through
        them (a cordon stops the traffic, not the fire engine); a segment another closure
        also closes stays closed to them too."""
        own: set[int] = set()
        others: set[int] = set()
        for c in self._active.values():
            (own if c.incident == incident_id else others).update(c.edges)
        return frozenset(own - others)

    def edges_near(self, lon: float, lat: float, radius_m: float) -> list[int]:
        """The street segments passing within ``radius_m`` of a point."""
        if self.routing is None:
            return []
        return self.routing.network.edges_within(lon, lat, radius_m).tolist()

    async def close(
        self,
        edges: list[int],
        ends_at: float,
        reason: str,
        by: str,
        incident_id: str | None = None,
        now: float | None = None,
    ) -> Entity:
        """Close ``edges`` until ``ends_at``; routing avoids them from the next search on."""
        if self.routing is None:
            raise BadRequestData("the server has no road graph, so it cannot close roads", "edges")
        now = time.time() if now is None else now
        if not edges:
            raise BadRequestData("no street segment to close", "edges")
        if len(edges) > MAX_EDGES:
            raise BadRequestData(f"at most {MAX_EDGES} segments per closure", "edges")
        count = self.routing.network.edge_count
        for k, e in enumerate(edges):
            if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < count:
                raise BadRequestData(f"edges[{k}] must be a segment id in 0..{count - 1}", "edges")
        if ends_at <= now:
            raise BadRequestData("endsAt must lie in the future", "endsAt")
        net = self.routing.network
        lines = [
            [
                [
                    round(float(net.lon[net.arc_from[e]]), 6),
                    round(float(net.lat[net.arc_from[e]]), 6),
                ],
                [round(float(net.lon[net.arc_to[e]]), 6), round(float(net.lat[net.arc_to[e]]), 6)],
            ]
            for e in sorted(set(edges))
        ]
        names = sorted({net.edge_names[e] for e in edges if net.edge_names[e]})
        doc: dict[str, Any] = {
            "id": entity_id(
                CLOSURE_TYPE,
                f"{time.strftime('%y%m%d', time.gmtime(now))}-{secrets.token_hex(3).upper()}",
            ),
            "type": CLOSURE_TYPE,
            "edges": _prop(sorted(set(edges))),
            "reason": _prop(reason[:1000]),
            "status": _prop("active"),
            "startsAt": _prop(format_instant(now)),
            "endsAt": _prop(format_instant(ends_at)),
            "closedBy": _prop(by),
            "name": _prop(", ".join(names)[:200] or "closed streets"),
            "location": {
                "type": "GeoProperty",
                "value": {"type": "MultiLineString", "coordinates": lines},
            },
            "department": _prop("traffic"),
        }
        if incident_id is not None:
            doc["refIncident"] = {"type": "Relationship", "object": incident_id}
        async with self._lock:
            await self._load()
            entity = await self.broker.create_entity(doc)
            self._active[entity.id] = _active(entity)
            self._apply()
        return entity

    async def end(self, closure_id: str, by: str) -> Entity:
        """Reopen the streets of a closure now."""
        async with self._lock:
            await self._load()
            found = await self.get(closure_id)
            if value(found, "status") != "active":
                raise BadRequestData(f"closure {found.id} has ended already", "id")
            return await self._mark_ended(found.id, f"reopened by {by}")

    async def _mark_ended(self, closure_id: str, note: str) -> Entity:
        fragment = {"status": _prop("ended"), "endsAt": _prop(format_instant(time.time()))}
        current = await self.broker.store.get_entity(closure_id)
        if current is not None and parse_instant(value(current, "endsAt"), "endsAt") < time.time():
            fragment.pop("endsAt")
        attrs = await self.broker.parse_fragment(closure_id, fragment)
        await self.broker.write_attrs(closure_id, attrs, "append")
        self._active.pop(closure_id, None)
        self._apply()
        return await self.get(closure_id)

    async def get(self, closure_id: str) -> Entity:
        """One closure by entity id or local id; ResourceNotFound otherwise."""
        full = closure_id if closure_id.startswith("urn:") else entity_id(CLOSURE_TYPE, closure_id)
        found = await self.broker.store.get_entity(full)
        if found is None or found.type != CLOSURE_TYPE:
            raise ResourceNotFound(f"there is no road closure {closure_id[:64]!r}", "id")
        return found

    async def listing(self, active_only: bool = True) -> list[Entity]:
        """The closures in force (or every one), newest first."""
        await self.refresh()
        q = Term("status", "==", ("active",)) if active_only else None
        found, _ = await self.broker.store.query_entities(
            EntityQuery(types=(CLOSURE_TYPE,), q=q, limit=10_000)
        )
        found.sort(key=lambda e: value(e, "startsAt", ""), reverse=True)
        return found
