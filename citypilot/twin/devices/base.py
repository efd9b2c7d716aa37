"""What every simulated device is: an entity id, static parameters and mutable state.

The simulator keeps one model object per device and a single time-ordered
schedule. When a device is due, :meth:`DeviceModel.report` returns the
attributes it publishes at that instant (or None to stay silent) and the time it
wants to be called next. Devices read the shared world through
:class:`SimContext` and may wake each other (a delivery bay in overstay makes
the nearest camera report an event).

Commands (a later issue) hook in here: a command handler looks the model up with
``Simulator.device(entity_id)``, changes the documented state fields (for
example ``StreetlightModel.override_level``, ``AccessPointModel.locked``,
``TransitVehicleModel.hold_s``, ``UnitModel.target_node``) and calls
``Simulator.wake(entity_id)`` so the device reports the new state at once; that
report is the device's acknowledgement.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from citypilot.twin.environment import Environment

#: How often each kind of device reports when nothing happens (simulated seconds).
STREETLIGHT_INTERVAL_S = 900.0
SIGNAL_HEARTBEAT_S = 900.0
CAMERA_HEARTBEAT_S = 300.0
CROWD_COUNT_INTERVAL_S = 60.0
TRANSIT_INTERVAL_S = 5.0
TRANSIT_IDLE_INTERVAL_S = 300.0
UNIT_MOVING_INTERVAL_S = 10.0
UNIT_IDLE_INTERVAL_S = 300.0
BIKE_INTERVAL_S = 120.0
BIKE_HEARTBEAT_S = 900.0
PARKING_HEARTBEAT_S = 3600.0
AIR_INTERVAL_S = 300.0
WATER_LEVEL_INTERVAL_S = 300.0
WATER_LEVEL_ALERT_INTERVAL_S = 60.0
WATER_QUALITY_INTERVAL_S = 600.0
BUILDING_INTERVAL_S = 600.0
ACCESS_HEARTBEAT_S = 3600.0


@dataclass
class SimContext:
    """Shared services for device models: world, randomness, cross-device wake-ups."""

    env: Environment
    rng: random.Random
    seed: int
    interval_factor: float  # < 1 makes every periodic report more frequent (load tests)
    wake: Callable[[int, float], None]  # (device index, at) → schedule a report
    notify: Callable[[int, float, dict[str, Any]], None]  # (camera index, at, event)

    def pseudonym(self, kind: str, raw: str) -> str:
        """A stable pseudonym for a personal identifier (badge id, plate): keyed hash."""
        digest = hashlib.blake2b(
            f"{kind}:{raw}".encode(), key=f"twin{self.seed}".encode()[:64], digest_size=8
        )
        return f"{kind}:{digest.hexdigest()}"

    def every(self, interval: float) -> float:
        """A periodic interval scaled by ``interval_factor``."""
        return interval * self.interval_factor


class DeviceModel:
    """Base of every simulated device: identity, position and the report contract."""

    entity_type: ClassVar[str] = ""
    __slots__ = ("entity_id", "fault", "index", "pending_attrs", "x", "y")

    def __init__(self, entity_id: str, x: float, y: float) -> None:
        self.entity_id = entity_id
        self.x = x
        self.y = y
        self.index = -1  # position in the simulator's device table
        self.fault: str | None = None  # a status forced by a scenario or, later, a command
        self.pending_attrs: dict[str, Any] | None = None  # reported with the next report

    def first_due(self, start: float, ctx: SimContext) -> float:
        """When the device first reports after ``start`` (phases are spread at random)."""
        return start + ctx.rng.random() * ctx.every(self.interval())

    def interval(self) -> float:
        """Periodic report interval in simulated seconds."""
        return 900.0

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Attributes to publish at ``t`` (None for nothing) and the next due time.

        The first call reports the device's full state; later calls report what
        changed or is periodic. Every subclass implements it.
        """
        raise NotImplementedError
