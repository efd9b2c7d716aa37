"""Response units: police units and technical vehicles (fire engines, ambulances, crews).

A unit's *dispatch status* (``available, dispatched, en_route, on_scene, returning,
out_of_service``) joins what the unit itself reports (its entity's ``status`` and
speed) with the assignments of the open incidents: a unit sent to an incident is
``dispatched`` until it reports moving (``en_route``) and then being there
(``on_scene``). Only an ``available`` unit may be dispatched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from citypilot.broker import Broker
from citypilot.model.entity import Entity
from citypilot.ops.incidents import INCIDENT_TYPE, OPEN_STATUSES, value
from citypilot.store.base import EntityQuery
from citypilot.store.query import Term

UNIT_TYPES = ("PoliceUnit", "TechnicalVehicle")
UNIT_STATUSES = ("available", "dispatched", "en_route", "on_scene", "returning", "out_of_service")
#: Which kinds of unit answer which kind of incident (by default).
SUITABLE: dict[str, tuple[str, ...]] = {
    "fire": ("fireEngine", "ambulance", "police"),
    "roadAccident": ("police", "ambulance", "tow", "fireEngine"),
    "flood": ("water", "fireEngine", "police"),
    "publicOrder": ("police",),
    "infrastructureFault": ("repair", "lighting", "water"),
    "medical": ("ambulance",),
    "other": ("police", "repair"),
}
_REPORTED = {
    # PoliceUnit
    "patrolling": "available",
    "dispatched": "en_route",
    "onScene": "on_scene",
    "offDuty": "out_of_service",
    # TechnicalVehicle
    "atBase": "available",
    "onRoute": "en_route",
    "working": "on_scene",
    "outOfService": "out_of_service",
    "available": "available",
}


def kind_of(unit: Entity) -> str:
    """``police`` for a police unit, else the technical vehicle's type."""
    return "police" if unit.type == "PoliceUnit" else str(value(unit, "vehicleType", "repair"))


def dispatch_status(unit: Entity, assignment: Mapping[str, Any] | None) -> str:
    """The unit's dispatch status, from its own report and its assignment if any."""
    reported = value(unit, "status")
    if assignment is not None:
        if reported in ("onScene", "working"):  # it was available when sent: it got there
            return "on_scene"
        if (value(unit, "speed", 0) or 0) > 0.5:
            return "en_route"
        return str(assignment.get("status", "dispatched"))
    return _REPORTED.get(str(reported), "out_of_service")


async def fleet(broker: Broker) -> list[Entity]:
    """Every police unit and technical vehicle of the city."""
    found, _ = await broker.store.query_entities(EntityQuery(types=UNIT_TYPES, limit=100_000))
    return found


async def assignments(broker: Broker) -> dict[str, dict[str, Any]]:
    """The assignment of every unit sent to an open incident, by unit id (with ``incident``)."""
    found, _ = await broker.store.query_entities(
        EntityQuery(types=(INCIDENT_TYPE,), q=Term("status", "==", OPEN_STATUSES), limit=100_000)
    )
    out: dict[str, dict[str, Any]] = {}
    for incident in found:
        for unit_id, job in (value(incident, "assignments", {}) or {}).items():
            if job.get("status") not in ("released",):
                out[unit_id] = {**job, "incident": incident.id}
    return out
