"""Parking spaces, delivery bays and bike-sharing stations filling and emptying through the day.

A parking sensor is an alternating process: a car parks (more often when
traffic is heavy), stays (short in the day, overnight in the evening), leaves.
Delivery bays are busy in the morning; a driver who stays beyond the allowed
time puts the bay in overstay and the nearest camera reports it. Bike stations
lose bikes where commuters leave in the morning and gain them where they
arrive, and a van rebalances stations left empty or full.
"""

from __future__ import annotations

import math
from typing import Any

from citypilot.twin.devices.base import (
    BIKE_HEARTBEAT_S,
    BIKE_INTERVAL_S,
    PARKING_HEARTBEAT_S,
    DeviceModel,
    SimContext,
)

OVERNIGHT_FROM_H = 18.5
REBALANCE_AFTER_S = 2700.0


def _lognormal(ctx: SimContext, mean_s: float, sigma: float = 0.8) -> float:
    mu = math.log(mean_s) - sigma * sigma / 2
    return ctx.rng.lognormvariate(mu, sigma)


class ParkingSpotModel(DeviceModel):
    """An on-street space with a sensor. Command state: ``closed`` (status "closed")."""

    entity_type = "ParkingSpot"
    __slots__ = (
        "closed",
        "demand",
        "next_change",
        "next_heartbeat",
        "occupied",
        "since",
        "started",
    )

    def __init__(
        self, entity_id: str, x: float, y: float, doc: dict[str, Any], central: bool
    ) -> None:
        super().__init__(entity_id, x, y)
        self.occupied = doc["status"]["value"] == "occupied"
        self.demand = 1.6 if central else 1.0
        self.since = 0.0
        self.next_change = 0.0
        self.next_heartbeat = 0.0
        self.closed = False
        self.started = False

    def interval(self) -> float:
        """The sensor heartbeat."""
        return PARKING_HEARTBEAT_S

    def _stay(self, t: float, ctx: SimContext) -> float:
        h = ctx.env.local_hour(t)
        if h >= OVERNIGHT_FROM_H or h < 6.0:
            until_morning = ((24.0 - h + 7.5) % 24.0) * 3600.0
            return until_morning + ctx.rng.uniform(-3600.0, 5400.0)
        return _lognormal(ctx, 4500.0)

    def _gap(self, t: float, ctx: SimContext) -> float:
        rate = self.demand * (0.15 + ctx.env.traffic(t)) / 1800.0
        return ctx.rng.expovariate(rate)

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """On every arrival and departure, and a heartbeat every hour."""
        attrs: dict[str, Any] | None = None
        if not self.started:
            self.started = True
            self.since = t - ctx.rng.uniform(0.0, 3600.0)
            self.next_change = t + (
                self._stay(t, ctx) * ctx.rng.random() if self.occupied else self._gap(t, ctx)
            )
            self.next_heartbeat = t + ctx.rng.random() * ctx.every(PARKING_HEARTBEAT_S)
            attrs = self._state(t)
        if t >= self.next_change - 0.5 and not self.closed:
            duration = t - self.since
            self.occupied = not self.occupied
            self.since = t
            if self.occupied:
                self.next_change = t + self._stay(t, ctx)
                attrs = {"status": "occupied", "occupancyDuration": 0.0}
            else:
                self.next_change = t + self._gap(t, ctx)
                attrs = {"status": "free", "occupancyDuration": round(duration)}
            attrs.update(self._extra(t, ctx, changed=True))
        if t >= self.next_heartbeat - 0.5:
            self.next_heartbeat = t + ctx.every(PARKING_HEARTBEAT_S)
            attrs = attrs or self._state(t)
        if self.closed:
            self.next_change = max(self.next_change, t + 60.0)
        return attrs, min(self.next_change, self.next_heartbeat)

    def _state(self, t: float) -> dict[str, Any]:
        if self.closed:
            return {"status": "closed"}
        return {
            "status": "occupied" if self.occupied else "free",
            "occupancyDuration": round(t - self.since) if self.occupied else 0.0,
        }

    def _extra(self, t: float, ctx: SimContext, changed: bool) -> dict[str, Any]:
        return {}


class DeliveryAreaModel(ParkingSpotModel):
    """A delivery bay. Overstays are flagged and shown to ``camera`` (a device index)."""

    entity_type = "DeliveryArea"
    __slots__ = ("camera", "max_s", "overstay", "overstay_at")

    def __init__(
        self, entity_id: str, x: float, y: float, doc: dict[str, Any], camera: int | None
    ) -> None:
        super().__init__(entity_id, x, y, {"status": {"value": "free"}}, True)
        self.max_s = float(doc["maximumParkingDuration"]["value"])
        self.camera = camera
        self.overstay = False
        self.overstay_at = math.inf

    def _stay(self, t: float, ctx: SimContext) -> float:
        if ctx.rng.random() < 0.08:
            return self.max_s + ctx.rng.uniform(600.0, 5400.0)
        return min(_lognormal(ctx, 900.0, 0.6), self.max_s * 0.95)

    def _gap(self, t: float, ctx: SimContext) -> float:
        h = ctx.env.local_hour(t)
        if not (6.0 <= h < 19.5) or ctx.env.weekday(t) == 6:
            wait = ((30.5 - h) % 24.0) * 3600.0
            return wait + ctx.rng.uniform(0, 3600.0)
        morning = math.exp(-((h - 9.5) ** 2) / 4.0)
        rate = (0.4 + 2.0 * morning) / 3600.0
        return ctx.rng.expovariate(rate)

    def _extra(self, t: float, ctx: SimContext, changed: bool) -> dict[str, Any]:
        if self.occupied:
            self.overstay_at = t + self.max_s
            self.overstay = False
            return {"overstay": False}
        self.overstay_at = math.inf
        self.overstay = False
        return {"overstay": False}

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Arrivals, departures, heartbeats, and the moment a stay becomes an overstay."""
        if (
            self.occupied
            and not self.overstay
            and t >= self.overstay_at - 0.5
            and t < self.next_change - 0.5
        ):
            self.overstay = True
            if self.camera is not None:
                ctx.notify(self.camera, t, {"kind": "deliveryAreaOverstay", "ref": self.entity_id})
            nxt = min(self.next_change, self.next_heartbeat)
            return {
                "status": "occupied",
                "overstay": True,
                "occupancyDuration": round(t - self.since),
            }, nxt
        attrs, nxt = super().report(t, ctx)
        if self.occupied and not self.overstay:
            nxt = min(nxt, self.overstay_at)
        return attrs, nxt


class BikeStationModel(DeviceModel):
    """A docking station. Command-free today; ``fault`` puts it out of service."""

    entity_type = "BikeStation"
    __slots__ = (
        "bikes",
        "central",
        "empty_since",
        "last_state",
        "next_heartbeat",
        "started",
        "total",
    )

    def __init__(
        self, entity_id: str, x: float, y: float, doc: dict[str, Any], central: bool
    ) -> None:
        super().__init__(entity_id, x, y)
        self.total = int(doc["totalSlotNumber"]["value"])
        self.bikes = int(doc["availableBikeNumber"]["value"])
        self.central = central
        self.empty_since = math.inf
        self.next_heartbeat = 0.0
        self.last_state: tuple[int, str] | None = None
        self.started = False

    def interval(self) -> float:
        """Counts are read every two minutes."""
        return BIKE_INTERVAL_S

    def _poisson(self, lam: float, ctx: SimContext) -> int:
        if lam <= 0:
            return 0
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= ctx.rng.random()
            if p <= limit:
                return k
            k += 1

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Bikes, free docks and status when they change, and every 15 minutes."""
        env = ctx.env
        step = ctx.every(BIKE_INTERVAL_S)
        if self.started and self.fault is None:
            h = env.local_hour(t)
            base = self.total / 20.0 * 0.25 * (step / 60.0)
            am = math.exp(-((h - 8.3) ** 2) / 1.0)
            pm = math.exp(-((h - 17.8) ** 2) / 1.5)
            day = 0.3 * math.exp(-((h - 14.0) ** 2) / 12.0)
            if not env.is_workday(t):
                am = pm = 0.0
                day *= 2.0
            if env.rain(t) > 1.0:
                base *= 0.4
            inflow = base * (day + (2.0 * am if self.central else 2.0 * pm))
            outflow = base * (day + (2.0 * pm if self.central else 2.0 * am))
            self.bikes += self._poisson(inflow, ctx) - self._poisson(outflow, ctx)
            self.bikes = max(0, min(self.total, self.bikes))
            stuck = self.bikes <= 1 or self.bikes >= self.total - 1
            if stuck and self.empty_since == math.inf:
                self.empty_since = t
            elif not stuck:
                self.empty_since = math.inf
            if t - self.empty_since > REBALANCE_AFTER_S and 6.0 <= h < 22.0:
                self.bikes = self.total // 2
                self.empty_since = math.inf
        free = self.total - self.bikes
        if self.fault:
            status = self.fault
        elif self.bikes == 0:
            status = "empty"
        elif free == 0:
            status = "full"
        elif self.bikes <= 2:
            status = "almostEmpty"
        elif free <= 2:
            status = "almostFull"
        else:
            status = "working"
        state = (self.bikes, status)
        heartbeat = t >= self.next_heartbeat - 0.5
        if heartbeat:
            self.next_heartbeat = t + ctx.every(BIKE_HEARTBEAT_S)
        if not self.started or heartbeat or state != self.last_state:
            self.started = True
            self.last_state = state
            attrs = {
                "availableBikeNumber": self.bikes,
                "freeSlotNumber": free,
                "totalSlotNumber": self.total,
                "status": status,
            }
            return attrs, t + step
        return None, t + step
