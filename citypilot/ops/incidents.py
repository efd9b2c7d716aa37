"""Incidents: what happened, where, how bad, its status and the timeline of every action.

An incident is an entity of type ``Incident`` written through the broker, so both
stores keep it, it is on the map, in history and in the stream, and it lies under
the scopes of the municipality it is in. Its ``timeline`` lists every action (who
or which rule, what, when, and the ids it touched: units, requests, alarms,
commands, closures); ``links`` gathers those ids by kind.

Status moves forward only: ``reported → dispatched → on_scene → resolved → closed``
(an incident may also be resolved straight from ``reported`` or ``dispatched``,
a false alarm or one settled on the way). Any other move is refused with 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from citypilot.broker import Broker
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.entity import Entity
from citypilot.model.errors import AlreadyExists, BadRequestData, CityPilotError, ResourceNotFound
from citypilot.model.ids import entity_id
from citypilot.model.timeutil import format_instant
from citypilot.ops.service_requests import ServiceDesk
from citypilot.store.base import EntityQuery
from citypilot.store.query import And, QueryNode, Term

INCIDENT_TYPE = "Incident"
_SPEC = next(t for t in BUILTIN_TYPES if t.name == INCIDENT_TYPE).attributes
INCIDENT_KINDS: tuple[str, ...] = _SPEC["incidentType"].choices or ()
SEVERITIES: tuple[str, ...] = _SPEC["severity"].choices or ()
STATUSES: tuple[str, ...] = _SPEC["status"].choices or ()
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "reported": ("dispatched", "resolved"),
    "dispatched": ("on_scene", "resolved"),
    "on_scene": ("resolved",),
    "resolved": ("closed",),
    "closed": (),
}
OPEN_STATUSES = ("reported", "dispatched", "on_scene")
#: What the citizens whose 311 requests opened an incident are told as it moves on:
#: incident status → (their request's status, the notes they read).
REQUESTER_NOTES: dict[str, tuple[str, str]] = {
    "dispatched": ("open", "Responders are on their way."),
    "on_scene": ("open", "Responders are on the scene."),
    "resolved": ("closed", "Resolved by the control room."),
}
LINK_KINDS = ("units", "serviceRequests", "alarms", "commands", "closures", "rules")
DEFAULT_RADIUS_M = 100.0
MAX_RADIUS_M = 5000.0
MAX_TIMELINE = 2000


class IllegalTransition(CityPilotError):
    """The incident cannot move to that status from the one it has."""

    status = 409
    problem = "Conflict"
    title = "Conflict with the incident's status"


@dataclass
class NewIncident:
    """A checked report of an incident, before it is stored."""

    kind: str
    severity: str
    lon: float
    lat: float
    description: str | None = None
    radius_m: float = DEFAULT_RADIUS_M
    links: dict[str, list[str]] = field(default_factory=dict)


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequestData(f"{name} must be a number", name)
    if not lo <= value <= hi:
        raise BadRequestData(f"{name} must lie between {lo:g} and {hi:g}", name)
    return float(value)


def parse_new_incident(body: Any) -> NewIncident:
    """Check an incident report (JSON object); BadRequestData naming the field otherwise."""
    if not isinstance(body, dict):
        raise BadRequestData("body must be an object with type, severity, location", "body")
    known = {"type", "severity", "location", "description", "radius"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequestData(f"unknown field {unknown[0]!r}", unknown[0])
    kind = body.get("type")
    if kind not in INCIDENT_KINDS:
        raise BadRequestData(f"type must be one of {', '.join(INCIDENT_KINDS)}", "type")
    severity = body.get("severity", "moderate")
    if severity not in SEVERITIES:
        raise BadRequestData(f"severity must be one of {', '.join(SEVERITIES)}", "severity")
    location = body.get("location")
    if not isinstance(location, dict) or location.get("type") != "Point":
        raise BadRequestData("location must be a GeoJSON Point", "location")
    coords = location.get("coordinates")
    if not isinstance(coords, list) or len(coords) != 2:
        raise BadRequestData("location.coordinates must be [longitude, latitude]", "location")
    lon = _number({"location.coordinates[0]": coords[0]}, "location.coordinates[0]", -180, 180)
    lat = _number({"location.coordinates[1]": coords[1]}, "location.coordinates[1]", -90, 90)
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 4000):
        raise BadRequestData("description must be a text of at most 4000 characters", "description")
    radius = DEFAULT_RADIUS_M
    if "radius" in body:
        radius = _number(body, "radius", 1, MAX_RADIUS_M)
    return NewIncident(kind, severity, lon, lat, description, radius)


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def circle(lon: float, lat: float, radius_m: float, sides: int = 24) -> dict[str, Any]:
    """A GeoJSON polygon approximating a circle of ``radius_m`` around a point."""
    dlat = radius_m / 110_574.0
    dlon = radius_m / (111_320.0 * math.cos(math.radians(lat)))
    ring = [
        [
            round(lon + dlon * math.cos(2 * math.pi * k / sides), 6),
            round(lat + dlat * math.sin(2 * math.pi * k / sides), 6),
        ]
        for k in range(sides)
    ]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def value(entity: Entity, name: str, default: Any = None) -> Any:
    """The value of an attribute of ``entity`` (``default`` when absent)."""
    attr = entity.attrs.get(name)
    return default if attr is None else attr.value


def point_of(entity: Entity) -> tuple[float, float] | None:
    """Longitude and latitude of an entity located by a Point, else None."""
    loc = value(entity, "location")
    if isinstance(loc, dict) and loc.get("type") == "Point":
        lon, lat = loc["coordinates"][:2]
        return float(lon), float(lat)
    return None


class IncidentBook:
    """Opens incidents, moves their status and writes their timeline (one writer at a time)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._places = ServiceDesk(broker, {})
        self._lock = asyncio.Lock()

    async def open(self, new: NewIncident, by: str, source: str = "operator") -> Entity:
        """Store a new incident in ``reported``; BadRequestData if it lies outside the metropole."""
        place = None
        for candidate in await self._places.jurisdictions():
            if candidate.area is not None and candidate.covers(new.lon, new.lat):
                place = candidate
                break
        if place is None:
            raise BadRequestData(
                f"location ({new.lon:.5f}, {new.lat:.5f}) lies outside every municipality "
                "of the metropole",
                "location",
            )
        now = time.time()
        stamp = format_instant(now)
        links = {k: list(new.links.get(k, ())) for k in LINK_KINDS}
        first = _event(stamp, by, "reported", f"{new.kind} ({new.severity}) reported via {source}")
        first["refs"] = [i for ids in links.values() for i in ids]
        doc: dict[str, Any] = {
            "type": INCIDENT_TYPE,
            "incidentType": _prop(new.kind),
            "severity": _prop(new.severity),
            "status": _prop("reported"),
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [new.lon, new.lat]},
            },
            "affectedArea": _prop(circle(new.lon, new.lat, new.radius_m)),
            "source": _prop(source),
            "reportedBy": _prop(by),
            "reportedAt": _prop(stamp),
            "updatedAt": _prop(stamp),
            "timeline": _prop([first]),
            "assignments": _prop({}),
            "links": _prop(links),
            "refMunicipality": {"type": "Relationship", "object": place.entity_id},
            "department": _prop("emergency"),
        }
        if new.description:
            doc["description"] = _prop(new.description)
        day = time.strftime("%y%m%d", time.gmtime(now))
        for _ in range(5):
            doc["id"] = entity_id(INCIDENT_TYPE, f"{day}-{secrets.token_hex(3).upper()}")
            try:
                return await self.broker.create_entity(doc)
            except AlreadyExists:
                continue
        raise AlreadyExists("could not find a free incident id; try again", "id")

    async def get(self, incident_id: str) -> Entity:
        """One incident by its entity id or local id; ResourceNotFound otherwise."""
        full = incident_id if incident_id.startswith("urn:") else None
        if full is None:
            if not incident_id.replace("-", "").isalnum() or len(incident_id) > 64:
                raise ResourceNotFound(f"there is no incident {incident_id[:64]!r}", "id")
            full = entity_id(INCIDENT_TYPE, incident_id)
        found = await self.broker.store.get_entity(full)
        if found is None or found.type != INCIDENT_TYPE:
            raise ResourceNotFound(f"there is no incident {incident_id[:64]!r}", "id")
        return found

    async def search(
        self,
        statuses: tuple[str, ...] = (),
        kinds: tuple[str, ...] = (),
        severities: tuple[str, ...] = (),
        limit: int = 100,
    ) -> list[Entity]:
        """Incidents matching every filter given, newest first."""
        terms: list[QueryNode] = []
        for name, values, allowed in (
            ("status", statuses, STATUSES),
            ("incidentType", kinds, INCIDENT_KINDS),
            ("severity", severities, SEVERITIES),
        ):
            bad = [v for v in values if v not in allowed]
            if bad:
                field_name = "type" if name == "incidentType" else name
                raise BadRequestData(
                    f"{field_name} {bad[0]!r} is not one of {', '.join(allowed)}", field_name
                )
            if values:
                terms.append(Term(name, "==", values))
        q = And(tuple(terms)) if terms else None
        found, _ = await self.broker.store.query_entities(
            EntityQuery(types=(INCIDENT_TYPE,), q=q, limit=10_000)
        )
        found.sort(key=lambda e: value(e, "reportedAt", ""), reverse=True)
        return found[:limit]

    async def set_status(self, incident_id: str, status: str, by: str, note: str = "") -> Entity:
        """Move an incident to ``status``; IllegalTransition (409) if it may not go there."""
        if status not in STATUSES:
            raise BadRequestData(f"status must be one of {', '.join(STATUSES)}", "status")
        async with self._lock:
            current = await self.get(incident_id)
            self.check_transition(current, status)
            detail = f"status {value(current, 'status')} → {status}" + (f": {note}" if note else "")
            return await self._write(current, {"status": status}, by, "status", detail, {})

    @staticmethod
    def check_transition(incident: Entity, status: str) -> None:
        """Refuse (409) a move the status machine does not allow."""
        now = value(incident, "status")
        if status not in TRANSITIONS.get(now, ()):
            allowed = ", ".join(TRANSITIONS.get(now, ())) or "none (closed)"
            raise IllegalTransition(
                f"incident {incident.id} is {now}: it may go to {allowed}, not {status}",
                "status",
            )

    async def record(
        self,
        incident_id: str,
        by: str,
        action: str,
        detail: str,
        refs: dict[str, list[str]] | None = None,
        changes: dict[str, Any] | None = None,
    ) -> Entity:
        """Append an action to the timeline (and link its ids, and apply ``changes``)."""
        async with self._lock:
            current = await self.get(incident_id)
            return await self._write(current, dict(changes or {}), by, action, detail, refs or {})

    async def _write(
        self,
        current: Entity,
        changes: dict[str, Any],
        by: str,
        action: str,
        detail: str,
        refs: dict[str, list[str]],
    ) -> Entity:
        stamp = format_instant(time.time())
        links = {k: list(v) for k, v in value(current, "links", {}).items()}
        ids: list[str] = []
        for kind, new_ids in refs.items():
            bucket = links.setdefault(kind, [])
            bucket.extend(i for i in new_ids if i not in bucket)
            ids.extend(new_ids)
        event = _event(stamp, by, action, detail)
        if ids:
            event["refs"] = ids
        timeline = [*value(current, "timeline", []), event][-MAX_TIMELINE:]
        fragment = {name: _prop(v) for name, v in changes.items()}
        fragment.update(
            {"timeline": _prop(timeline), "links": _prop(links), "updatedAt": _prop(stamp)}
        )
        attrs = await self.broker.parse_fragment(current.id, fragment)
        await self.broker.write_attrs(current.id, attrs, "append")
        if "status" in changes:
            await self._tell_requesters(links.get("serviceRequests", []), changes["status"], detail)
        return await self.get(current.id)

    async def _tell_requesters(self, request_ids: list[str], status: str, detail: str) -> None:
        """The 311 requests behind an incident follow it: the citizen sees its progress."""
        answer = REQUESTER_NOTES.get(status)
        if answer is None:
            return
        request_status, notes = answer
        if status == "resolved" and ": " in detail:
            notes = f"{notes} {detail.split(': ', 1)[1]}"
        for request_id in request_ids:
            with contextlib.suppress(ResourceNotFound):  # erased on the requester's demand
                await self._places.answer(
                    request_id.rsplit(":", 1)[-1], request_status, notes, None
                )


def _event(stamp: str, by: str, action: str, detail: str) -> dict[str, Any]:
    return {"at": stamp, "by": by, "action": action, "detail": detail}
