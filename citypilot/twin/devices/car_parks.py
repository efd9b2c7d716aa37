"""Car parks filling with the day's traffic, and closing on command.

A car park's entrance counter reports every five minutes: the spaces still free and the
share taken, which follows the traffic of the hour towards a target (busier in the
centre, nearly empty at night). Closed (the ``close`` command: barriers down at the
entrances), no car comes in and the cars inside leave as their stays end; it reports
``status`` "closed" at once, and "open" again once reopened.
"""

from __future__ import annotations

import math
from typing import Any

from citypilot.twin.devices.base import DeviceModel, SimContext

CAR_PARK_INTERVAL_S = 300.0
#: How fast the car park follows its target occupancy, and how long a stay lasts (s).
FILL_TIME_S = 2700.0
STAY_S = 7200.0


class OffStreetParkingModel(DeviceModel):
    """A car park with counted entrances. Command state: ``closed`` (status "closed")."""

    entity_type = "OffStreetParking"
    __slots__ = ("closed", "demand", "last_t", "started", "taken", "total")

    def __init__(self, entity_id: str, x: float, y: float, doc: dict[str, Any]) -> None:
        super().__init__(entity_id, x, y)
        self.total = int(doc["totalSpotNumber"]["value"])
        self.taken = float(self.total - int(doc["availableSpotNumber"]["value"]))
        self.closed = doc["status"]["value"] == "closed"
        self.demand = 0.9 if doc["category"]["value"] != "surface" else 0.7
        self.last_t = 0.0
        self.started = False

    def interval(self) -> float:
        """The entrance counters report every five minutes."""
        return CAR_PARK_INTERVAL_S

    def _target(self, t: float, ctx: SimContext) -> float:
        """The share of spaces taken that the hour's traffic calls for."""
        return min(0.98, self.demand * (0.08 + ctx.env.traffic(t)))

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Free spaces, occupancy and whether it is open: every five minutes, and at once
        after a command."""
        if not self.started:
            self.started = True
            self.taken = self.total * self._target(t, ctx)
        else:
            dt = max(0.0, t - self.last_t)
            leaving = self.taken * (1.0 - math.exp(-dt / STAY_S))
            arriving = 0.0
            if not self.closed:
                want = self.total * self._target(t, ctx)
                arriving = max(0.0, want - self.taken) * (1.0 - math.exp(-dt / FILL_TIME_S))
                arriving += leaving * ctx.rng.uniform(0.6, 1.0) if want > self.taken else 0.0
            self.taken = min(float(self.total), max(0.0, self.taken + arriving - leaving))
        self.last_t = t
        taken = round(self.taken)
        attrs = {
            "status": self.fault or ("closed" if self.closed else "open"),
            "availableSpotNumber": self.total - taken,
            "occupancy": round(100.0 * taken / self.total, 1) if self.total else 0.0,
        }
        return attrs, t + ctx.every(CAR_PARK_INTERVAL_S)
