"""Dispatch by travel time: rank the available units by road ETA and send the chosen ones.

One Dijkstra from the incident's nearest node over the reversed arcs gives every
node's travel time to the incident, so every available unit is ranked by one
search; the routes of the few recommended units come from the same kind of
search. A dispatch checks everything first (the incident still open, each unit
known, available and with a route) and then writes the incident once: nothing
is half-applied.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from citypilot.model.entity import Entity
from citypilot.model.errors import BadRequestData, CityPilotError, ResourceNotFound
from citypilot.model.timeutil import format_instant
from citypilot.ops.closures import ClosureBook
from citypilot.ops.incidents import IllegalTransition, IncidentBook, point_of, value
from citypilot.ops.priority import SignalStop, priority_benefit, signal_rows, signals_on_route
from citypilot.ops.routing import Route, Routing
from citypilot.ops.units import SUITABLE, assignments, dispatch_status, fleet, kind_of
from citypilot.store.base import EntityQuery
from citypilot.twin.geo import to_metric

MAX_UNITS_PER_DISPATCH = 20
MAX_RECOMMENDED = 20


class NoRoute(CityPilotError):
    """No open road leads from the unit(s) to the incident."""

    status = 409
    problem = "NoRoute"
    title = "No route"


class NoRoadGraph(CityPilotError):
    """The server has no road graph to route on."""

    status = 503
    problem = "NoRoadGraph"
    title = "No road graph"


@dataclass(frozen=True)
class Candidate:
    """A unit that can answer, its travel time by road and its route."""

    unit: Entity
    kind: str
    seconds: float
    route: Route
    crow_m: float

    def to_json(self, now: float) -> dict[str, Any]:
        """The candidate as the recommendation shows it."""
        return {
            "unit": self.unit.id,
            "unitType": self.unit.type,
            "kind": self.kind,
            "callSign": value(self.unit, "callSign"),
            "etaSeconds": round(self.seconds, 1),
            "eta": format_instant(now + self.seconds),
            "distanceMetres": round(self.route.metres, 1),
            "straightLineMetres": round(self.crow_m, 1),
            "route": self.route.geometry(),
        }


class Dispatcher:
    """Recommends units for an incident and dispatches the operator's choice."""

    def __init__(self, incidents: IncidentBook, closures: ClosureBook, routing: Routing | None):
        self.incidents = incidents
        self.closures = closures
        self.routing = routing
        self._signal_rows: list[tuple[str, float, float, float | None]] | None = None
        self._signals_at = -math.inf

    def _routing(self) -> Routing:
        if self.routing is None:
            raise NoRoadGraph(
                "the server has no road graph (graph/nodes.csv and graph/edges.csv in the "
                "data directory; `citypilot demo` writes them)",
                None,
            )
        return self.routing

    async def _signals(self) -> list[tuple[str, float, float, float | None]]:
        """Where the traffic signals are (re-read at most once a minute: they do not move)."""
        if self._signal_rows is None or time.monotonic() - self._signals_at > 60.0:
            found, _ = await self.incidents.broker.store.query_entities(
                EntityQuery(types=("TrafficSignal",), limit=1_000_000)
            )
            self._signal_rows = signal_rows(found)
            self._signals_at = time.monotonic()
        return self._signal_rows

    async def _available(self, kinds: Sequence[str] | None) -> list[Entity]:
        jobs = await assignments(self.incidents.broker)
        return [
            u
            for u in await fleet(self.incidents.broker)
            if dispatch_status(u, jobs.get(u.id)) == "available"
            and (kinds is None or kind_of(u) in kinds)
            and point_of(u) is not None
        ]

    async def recommend(
        self, incident: Entity, count: int = 3, kinds: Sequence[str] | None = None
    ) -> list[Candidate]:
        """The ``count`` available units nearest the incident by road travel time."""
        routing = self._routing()
        await self.closures.refresh()
        if kinds is None:
            kinds = SUITABLE.get(str(value(incident, "incidentType")), None)
        units = await self._available(kinds)
        return self.rank(routing, incident, units, count, self.closures.cordon_of(incident.id))

    @staticmethod
    def rank(
        routing: Routing,
        incident: Entity,
        units: list[Entity],
        count: int,
        passing: frozenset[int] = frozenset(),
    ) -> list[Candidate]:
        """Rank ``units`` by travel time to the incident; NoRoute if none can reach it.
        The closed segments in ``passing`` (the incident's own cordon) may be driven."""
        target = routing.network.nearest_node(*(point_of(incident) or (0.0, 0.0)))[0]
        times = routing.times_to(target, passing)
        placed = [(float(times[node]), node, unit) for node, unit in _placed(routing, units)]
        reachable = sorted((p for p in placed if math.isfinite(p[0])), key=lambda p: p[0])
        if placed and not reachable:
            raise NoRoute(
                f"no open road leads from any of the {len(placed)} available units to the "
                f"incident: road closures ({len(routing.closed_edges)} segments) isolate it",
                "id",
            )
        chosen = [(node, unit) for _, node, unit in reachable[:count]]
        return _candidates(routing, incident, target, chosen, passing)

    @staticmethod
    def routes_for(
        routing: Routing, incident: Entity, units: list[Entity], passing: frozenset[int]
    ) -> dict[str, Candidate]:
        """The route of each of ``units`` to the incident (a unit no open road leads from
        is left out): the searches stop at the units, where ``rank`` needs every node's
        time to the incident first."""
        target = routing.network.nearest_node(*(point_of(incident) or (0.0, 0.0)))[0]
        chosen = _placed(routing, units)
        return {c.unit.id: c for c in _candidates(routing, incident, target, chosen, passing)}

    async def dispatch(
        self, incident_id: str, unit_ids: Any, by: str
    ) -> tuple[Entity, list[Candidate], dict[str, list[SignalStop]]]:
        """Send units to an incident: every check first, then one write of the incident."""
        routing = self._routing()
        if not isinstance(unit_ids, list) or not unit_ids:
            raise BadRequestData("units must be a non-empty list of unit ids", "units")
        if len(unit_ids) > MAX_UNITS_PER_DISPATCH:
            raise BadRequestData(f"at most {MAX_UNITS_PER_DISPATCH} units at once", "units")
        if len(set(map(str, unit_ids))) != len(unit_ids):
            raise BadRequestData("units names a unit twice", "units")
        incident = await self.incidents.get(incident_id)
        status = value(incident, "status")
        if status in ("resolved", "closed"):
            raise IllegalTransition(
                f"incident {incident.id} is {status}: units are sent to open incidents only",
                "status",
            )
        await self.closures.refresh()
        jobs = await assignments(self.incidents.broker)
        units = []
        for k, unit_id in enumerate(unit_ids):
            where = f"units[{k}]"
            if not isinstance(unit_id, str):
                raise BadRequestData(f"{where} must be a unit id", where)
            unit = await self.incidents.broker.store.get_entity(unit_id)
            if unit is None or unit.type not in ("PoliceUnit", "TechnicalVehicle"):
                raise ResourceNotFound(f"{where}: there is no unit {unit_id[:100]!r}", where)
            state = dispatch_status(unit, jobs.get(unit.id))
            if state != "available":
                raise UnitNotAvailable(f"{where}: unit {unit.id} is {state}, not available", where)
            if point_of(unit) is None:
                raise UnitNotAvailable(f"{where}: unit {unit.id} has no known position", where)
            units.append(unit)
        cordon = self.closures.cordon_of(incident.id)
        ranked = self.routes_for(routing, incident, units, cordon)
        for k, unit in enumerate(units):
            if unit.id not in ranked:
                raise NoRoute(
                    f"units[{k}]: no open road leads from unit {unit.id} to the incident "
                    f"(closures isolate one of them)",
                    f"units[{k}]",
                )
        now = time.time()
        signals = await self._signals()
        stops_by_unit: dict[str, list[SignalStop]] = {}
        jobs_now = dict(value(incident, "assignments", {}) or {})
        for unit in units:
            c = ranked[unit.id]
            stops = signals_on_route(routing.network, c.route, signals)
            stops_by_unit[unit.id] = stops
            jobs_now[unit.id] = {
                "priority": {
                    **priority_benefit(c.route, stops),
                    "stops": [s.to_json() for s in stops],
                },
                "status": "dispatched",
                "dispatchedAt": format_instant(now),
                "etaSeconds": round(c.seconds, 1),
                "eta": format_instant(now + c.seconds),
                "distanceMetres": round(c.route.metres, 1),
                "route": c.route.geometry(),
                "routeNodes": list(c.route.nodes),
            }
        changes: dict[str, Any] = {"assignments": jobs_now}
        if status == "reported":
            changes["status"] = "dispatched"
        saved = sum(jobs_now[u.id]["priority"]["savedSeconds"] for u in units)
        changes["prioritySavedSeconds"] = round(
            saved + float(value(incident, "prioritySavedSeconds", 0) or 0), 1
        )
        detail = "; ".join(
            f"{value(u, 'callSign') or u.id} ETA {ranked[u.id].seconds:.0f} s "
            f"({ranked[u.id].route.metres / 1000:.1f} km, "
            f"{len(stops_by_unit[u.id])} signals on the route)"
            for u in units
        )
        updated = await self.incidents.record(
            incident.id,
            by,
            "dispatched",
            detail,
            refs={"units": [u.id for u in units]},
            changes=changes,
        )
        return updated, [ranked[u.id] for u in units], stops_by_unit

    async def record_rehearsals(
        self, incident_id: str, rehearsals: dict[str, dict[str, Any]], by: str
    ) -> Entity:
        """Keep what the digital twin measured of each unit's drive with and without signal
        priority (``Rehearsal.to_json()`` by unit): on its assignment (``priority.twin``)
        and on the timeline; the measurement replaces the model's estimate in the
        incident's ``prioritySavedSeconds``."""
        incident = await self.incidents.get(incident_id)
        jobs = dict(value(incident, "assignments", {}) or {})
        total = float(value(incident, "prioritySavedSeconds", 0) or 0)
        parts = []
        for unit, twin in rehearsals.items():
            job = jobs.get(unit)
            if job is None:
                continue
            plan = dict(job.get("priority", {}))
            total += twin["savedSeconds"] - float(plan.get("savedSeconds", 0))
            jobs[unit] = {**job, "priority": {**plan, "twin": twin}}
            parts.append(
                f"{unit}: {twin['withoutPrioritySeconds']:.0f} s without priority "
                f"({twin['redsAvoided']} of {twin['signals']} signals at red), "
                f"{twin['withPrioritySeconds']:.0f} s with it: {twin['savedSeconds']:.0f} s "
                f"saved ({twin['savedPercent']:.0f} %)"
            )
        return await self.incidents.record(
            incident_id,
            by,
            "priority rehearsed",
            "; ".join(parts),
            changes={"assignments": jobs, "prioritySavedSeconds": round(max(0.0, total), 1)},
        )


def _placed(routing: Routing, units: list[Entity]) -> list[tuple[int, Entity]]:
    """Each unit (with a position) and the road-graph node nearest it."""
    net = routing.network
    return [(net.nearest_node(*point_of(u))[0], u) for u in units]  # type: ignore[misc]


def _candidates(
    routing: Routing,
    incident: Entity,
    target: int,
    chosen: list[tuple[int, Entity]],
    passing: frozenset[int],
) -> list[Candidate]:
    """The routes from each (node, unit) of ``chosen`` to ``target``, in that order; a unit
    without one is left out."""
    ix, iy = to_metric(*(point_of(incident) or (0.0, 0.0)))
    routes = routing.routes_to(target, [node for node, _ in chosen], passing)
    out = []
    for (_, unit), route in zip(chosen, routes, strict=True):
        if route is None:
            continue
        ux, uy = to_metric(*point_of(unit))  # type: ignore[misc]
        crow = math.hypot(float(ux - ix), float(uy - iy))
        out.append(Candidate(unit, kind_of(unit), route.seconds, route, crow))
    return out


class UnitNotAvailable(CityPilotError):
    """The unit cannot be sent: it is busy, out of service or has no position."""

    status = 409
    problem = "UnitNotAvailable"
    title = "Unit not available"
