"""The live state of the trams and buses, read in bulk from the state store.

One column scan per type (the read the map uses) gives every vehicle's position,
trip, next stop and delay as last reported; nothing is decoded but the few
attributes the real-time feeds need.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from citypilot.model.timeutil import parse_instant
from citypilot.store.base import Store

FLEET_TYPES = ("Tram", "Bus")
ATTRS = ("status", "speed", "bearing", "routeId", "tripId", "nextStop", "delay", "occupancy")


@dataclass(frozen=True)
class VehicleState:
    """What a tram or bus last reported."""

    entity_id: str
    vehicle_id: str  # "bus-0012": the GTFS block_id of the vehicle's trips
    label: str
    lon: float
    lat: float
    observed_at: float
    status: str | None = None
    speed_kmh: float | None = None
    bearing: float | None = None
    route_id: str | None = None
    trip_id: str | None = None
    next_stop: str | None = None
    delay: float = 0.0
    occupancy: float | None = None


def vehicle_id(entity_id: str) -> tuple[str, str]:
    """``urn:ngsi-ld:Bus:0012`` → (``bus-0012``, ``Bus 0012``)."""
    parts = entity_id.split(":")
    kind, local = (parts[-2], parts[-1]) if len(parts) >= 2 else ("vehicle", entity_id)
    return f"{kind.lower()}-{local}", f"{kind} {local}"


def vehicle_state(
    entity_id: str, lon: float, lat: float, observed_at: float, attrs: dict[str, Any]
) -> VehicleState:
    """A vehicle's state from its attribute values (as reported: ``routeId``, ``delay``…)."""
    vid, label = vehicle_id(entity_id)
    return VehicleState(
        entity_id,
        vid,
        label,
        float(lon),
        float(lat),
        float(observed_at),
        attrs.get("status"),
        attrs.get("speed"),
        attrs.get("bearing"),
        attrs.get("routeId"),
        attrs.get("tripId"),
        attrs.get("nextStop"),
        float(attrs.get("delay") or 0.0),
        attrs.get("occupancy"),
    )


async def read_fleet(store: Store) -> list[VehicleState]:
    """Every tram and bus with a position, as last reported."""
    fleet: list[VehicleState] = []
    loads = orjson.loads
    for type_name in FLEET_TYPES:
        layer = await store.scan_columns(type_name, ATTRS)
        cols = {name: layer.values.get(name, [None] * len(layer.ids)) for name in ATTRS}
        for i, entity_id in enumerate(layer.ids):
            lon, lat = layer.lon[i], layer.lat[i]
            if lon is None or lat is None:
                continue
            got = {name: loads(col[i]) for name, col in cols.items() if col[i] is not None}
            fleet.append(vehicle_state(entity_id, lon, lat, layer.modified_at[i], got))
    return fleet


def fleet_from_observations(observations: Iterable[dict[str, Any]]) -> list[VehicleState]:
    """The fleet's last state from a stream of observations (``id``, ``type``,
    ``observedAt``, ``attrs``), as the store would keep it: newest report wins."""
    latest: dict[str, tuple[float, dict[str, Any]]] = {}
    for o in observations:
        if o["type"] not in FLEET_TYPES:
            continue
        at = parse_instant(o["observedAt"], "observedAt")
        seen, attrs = latest.get(o["id"], (at, {}))
        latest[o["id"]] = (max(seen, at), {**attrs, **o["attrs"]})
    fleet = []
    for entity_id, (at, attrs) in latest.items():
        lon, lat = attrs["location"]["coordinates"][:2]
        fleet.append(vehicle_state(entity_id, lon, lat, at, attrs))
    return fleet
