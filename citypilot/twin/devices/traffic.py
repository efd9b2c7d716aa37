"""Traffic signals (phases, vehicle counts, queues) and cameras (status and analytics events).

Signals run fixed-time or actuated cycles and report every phase change and,
at each new green, the vehicles counted and the queue over the last cycle;
counts follow the morning and evening peaks and collapse near an accident,
where queues grow. Some junctions flash amber at night. Cameras report their
status, crowd counts (crowd cameras) and analytics events: bus-lane intrusions,
delivery-area overstays, crowds gathering around a fire, queues behind an
accident, with pseudonymised plates.
"""

from __future__ import annotations

import math
from typing import Any

from citypilot.model.timeutil import format_instant
from citypilot.twin.devices.base import (
    CAMERA_HEARTBEAT_S,
    CROWD_COUNT_INTERVAL_S,
    SIGNAL_HEARTBEAT_S,
    DeviceModel,
    SimContext,
)

AMBER_S = 3.0
NIGHT_FLASH_START_H = 0.5
NIGHT_FLASH_END_H = 5.0
SIGNAL_FAULT_P = 1e-5  # per cycle
SIGNAL_REPAIR_S = (1800.0, 4 * 3600.0)
VEHICLE_SPACING_M = 7.0
CAMERA_FAULT_P = 2.5e-5  # per heartbeat
CAMERA_REPAIR_S = (3600.0, 4 * 3600.0)
#: analytics events per hour at mean traffic, by camera usage
EVENT_RATE_PER_H = {"enforcement": 4.0, "trafficAnalytics": 0.05, "crowd": 0.3, "cctv": 0.02}
EVENT_KIND = {
    "enforcement": "busLaneIntrusion",
    "trafficAnalytics": "wrongWayDriver",
    "crowd": "crowdDensity",
    "cctv": "intrusion",
}
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTVWXYZ"


def _poisson_like(mu: float, ctx: SimContext) -> int:
    """A non-negative integer with mean ``mu`` and Poisson-like spread."""
    if mu <= 0:
        return 0
    return max(0, round(mu + math.sqrt(mu) * ctx.rng.gauss(0.0, 1.0)))


class TrafficSignalModel(DeviceModel):
    """A junction controller. Command state: ``mode`` (controlMode), ``plan``, and a
    priority request: ``priority_approach`` held green until ``priority_until``
    (``priority_request`` names it; ``base_mode`` is the mode to return to)."""

    entity_type = "TrafficSignal"
    __slots__ = (
        "backlog",
        "base_mode",
        "capacity_h",
        "cur_cycle",
        "cycle",
        "cycle_start",
        "green_share",
        "mode",
        "next_heartbeat",
        "night_flash",
        "phase",
        "phase_end",
        "plan",
        "priority_approach",
        "priority_request",
        "priority_until",
        "saturation",
        "started",
        "status",
        "status_until",
    )

    def __init__(
        self, entity_id: str, x: float, y: float, doc: dict[str, Any], ctx: SimContext
    ) -> None:
        super().__init__(entity_id, x, y)
        self.cycle = float(doc["cycleTime"]["value"])
        self.mode = doc["controlMode"]["value"]
        major = self.cycle >= 90
        self.capacity_h = 1800.0 if major else 900.0
        self.green_share = ctx.rng.uniform(0.42, 0.58)
        self.saturation = ctx.rng.uniform(0.7, 1.12)  # peak demand / capacity at this junction
        self.night_flash = ctx.rng.random() < 0.25
        self.status = "ok"
        self.status_until = 0.0
        self.phase = "red"
        self.phase_end = 0.0
        self.cycle_start = 0.0
        self.cur_cycle = self.cycle
        self.backlog = 0.0
        self.priority_until = 0.0
        self.priority_approach = "none"
        self.priority_request = ""
        self.base_mode = self.mode
        self.plan = "normal"
        self.next_heartbeat = 0.0
        self.started = False

    def interval(self) -> float:
        """A cycle."""
        return self.cycle

    def _cycle_length(self, t: float, ctx: SimContext) -> float:
        if self.mode == "actuated":
            demand = min(1.0, ctx.env.traffic(t) / 1.4)
            return round(self.cycle * (0.6 + 0.4 * demand))
        return self.cycle

    def _flashing(self, t: float, ctx: SimContext) -> bool:
        if self.mode == "off" or self.status == "fault":
            return True
        h = ctx.env.local_hour(t)
        return self.night_flash and NIGHT_FLASH_START_H <= h < NIGHT_FLASH_END_H

    def start_priority(self, t: float, approach: str, request: str, until: float) -> None:
        """Serve ``approach``: green now, held until ``until``."""
        if self.priority_approach == "none":
            self.base_mode = self.mode
        self.mode = "priority"
        self.priority_approach, self.priority_request = approach, request
        self.priority_until = until
        self.phase, self.phase_end = "green", until

    def end_priority(self, t: float) -> None:
        """Back to the mode in force before the priority request."""
        self.priority_until = min(self.priority_until, t)
        self.phase_end = min(self.phase_end, t)
        self.priority_approach, self.priority_request = "none", ""
        self.mode = self.base_mode

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Phase changes, priority (while and once it ends), counts, heartbeats."""
        if self.priority_approach != "none" and t >= self.priority_until - 0.5:
            self.end_priority(t)
            attrs, nxt = self._cycle_report(t, ctx)
            return {**(attrs or {}), "priorityApproach": "none", "controlMode": self.mode}, nxt
        return self._cycle_report(t, ctx)

    def _cycle_report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Phase changes; counts and queue at each new green; a heartbeat when flashing."""
        first = not self.started
        self.started = True
        if not first and self.phase != "flashingAmber" and t < self.phase_end - 0.5:
            return None, self.phase_end  # woken early: phases keep their timing
        if self.status != "ok" and t >= self.status_until:
            self.status = "ok"
        status = self.fault or self.status
        if self._flashing(t, ctx) or self.fault:
            changed = self.phase != "flashingAmber"
            self.phase = "flashingAmber"
            heartbeat = t >= self.next_heartbeat
            if heartbeat or changed or first:
                self.next_heartbeat = t + ctx.every(SIGNAL_HEARTBEAT_S)
                attrs = {"phase": "flashingAmber", "status": status, "controlMode": self.mode}
                return attrs, min(t + 60.0, self.next_heartbeat)
            return None, min(t + 60.0, self.next_heartbeat)
        if self.phase == "flashingAmber" or first:
            self.phase = "red"
            self.phase_end = t
        attrs: dict[str, Any] = {}
        if self.phase == "green":
            if t < self.priority_until:
                return None, self.priority_until
            self.phase, self.phase_end = "amber", t + AMBER_S
        elif self.phase == "amber":
            red = self.cur_cycle * (1 - self.green_share) - AMBER_S
            self.phase, self.phase_end = "red", t + max(5.0, red)
        else:  # red → green: a new cycle; report the last one
            length = self._cycle_length(t, ctx)
            if self.cycle_start:
                attrs.update(self._counts(t, ctx, t - self.cycle_start))
            self.cycle_start = t
            self.cur_cycle = length
            self.phase, self.phase_end = "green", t + length * self.green_share
            attrs["cycleTime"] = float(length)
            if ctx.rng.random() < SIGNAL_FAULT_P:
                self.status = "lampFailure"
                self.status_until = t + ctx.rng.uniform(*SIGNAL_REPAIR_S)
        attrs["phase"] = self.phase
        if first or status != "ok" or attrs.get("vehicleCount") is not None:
            attrs["status"] = status
        if first:
            attrs["controlMode"] = self.mode
        return attrs, self.phase_end

    def _counts(self, t: float, ctx: SimContext, cycle: float) -> dict[str, Any]:
        demand = ctx.env.traffic(t) / 1.6 * self.saturation
        slow = ctx.env.slowdown(self.x, self.y, t)
        served = self.capacity_h * cycle / 3600.0 * self.green_share * 2.0
        arriving = self.capacity_h * demand * cycle / 3600.0 * self.green_share * 2.0
        passed = min(arriving + self.backlog, served * (1.0 - 0.7 * slow))
        self.backlog = max(0.0, self.backlog + arriving - passed)
        count = _poisson_like(passed, ctx)
        waiting = arriving * (1 - self.green_share) + self.backlog
        queue = VEHICLE_SPACING_M * waiting / 2.0 + 400.0 * slow
        return {"vehicleCount": count, "queueLength": round(min(queue, 5000.0), 1)}


class CameraModel(DeviceModel):
    """A camera. Command state: ``preset`` and ``recording_until`` (status "recording")."""

    entity_type = "Camera"
    __slots__ = (
        "crowd_base",
        "next_count",
        "next_event",
        "next_heartbeat",
        "pending",
        "preset",
        "recording_until",
        "started",
        "status",
        "status_until",
        "usage",
    )

    def __init__(
        self, entity_id: str, x: float, y: float, doc: dict[str, Any], ctx: SimContext
    ) -> None:
        super().__init__(entity_id, x, y)
        self.usage = doc["cameraUsage"]["value"]
        self.status = "online"
        self.status_until = 0.0
        self.crowd_base = (
            ctx.rng.uniform(20, 120) if self.usage == "crowd" else ctx.rng.uniform(2, 20)
        )
        self.pending: list[tuple[float, dict[str, Any]]] = []
        self.next_event = math.inf
        self.next_count = math.inf
        self.next_heartbeat = 0.0
        self.preset = 0
        self.recording_until = 0.0
        self.started = False

    def interval(self) -> float:
        """The status heartbeat."""
        return CAMERA_HEARTBEAT_S

    def push_event(self, at: float, event: dict[str, Any]) -> None:
        """Queue an analytics event raised from outside (overstay, fire, accident)."""
        self.pending.append((at, event))
        self.pending.sort(key=lambda p: p[0])

    def crowd(self, t: float, ctx: SimContext) -> int:
        """People counted in view at ``t``."""
        h = ctx.env.local_hour(t)
        if ctx.env.is_workday(t):
            profile = (
                0.15 + 0.8 * math.exp(-((h - 12.5) ** 2) / 4) + 1.0 * math.exp(-((h - 18) ** 2) / 3)
            )
        else:
            profile = 0.15 + 1.2 * math.exp(-((h - 15.5) ** 2) / 8)
        count = self.crowd_base * profile * (0.8 if ctx.env.rain(t) > 1 else 1.0)
        fire = ctx.env.fire_near(self.x, self.y, t, 500.0)
        if fire is not None:
            d = math.hypot(self.x - fire.x, self.y - fire.y)
            count += fire.crowd * (1.0 - d / 500.0)
        return _poisson_like(count, ctx)

    def _schedule_event(self, t: float, ctx: SimContext) -> None:
        rate = EVENT_RATE_PER_H[self.usage]
        if self.usage == "enforcement":
            rate *= ctx.env.traffic(t)
        self.next_event = t + ctx.rng.expovariate(rate / 3600.0) if rate > 0 else math.inf

    def _plate(self, ctx: SimContext) -> str:
        r = ctx.rng
        letters = _PLATE_LETTERS
        head = r.choice(letters) + r.choice(letters)
        tail = r.choice(letters) + r.choice(letters)
        plate = f"{head}-{r.randint(100, 999)}-{tail}"
        return ctx.pseudonym("plate", plate)

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Status heartbeat, crowd counts, and analytics events as they happen."""
        attrs: dict[str, Any] = {}
        if not self.started:
            self.started = True
            self.next_heartbeat = t
            if self.usage == "crowd":
                self.next_count = t
            self._schedule_event(t, ctx)
        if self.status != "online" and t >= self.status_until:
            self.status = "online"
        status = self.fault or ("recording" if t < self.recording_until else self.status)
        if t >= self.next_heartbeat - 0.5:
            self.next_heartbeat = t + ctx.every(CAMERA_HEARTBEAT_S)
            if self.status == "online" and ctx.rng.random() < CAMERA_FAULT_P:
                self.status = status = "offline"
                self.status_until = t + ctx.rng.uniform(*CAMERA_REPAIR_S)
            attrs["status"] = status
        live = status in ("online", "recording")
        if t >= self.next_count - 0.5:
            self.next_count = t + ctx.every(CROWD_COUNT_INTERVAL_S)
            if live:
                attrs["crowdCount"] = self.crowd(t, ctx)
        if t >= self.next_event - 0.5:
            if live:
                event: dict[str, Any] = {"kind": EVENT_KIND[self.usage], "at": format_instant(t)}
                if self.usage == "enforcement":
                    event["plate"] = self._plate(ctx)
                    event["confidence"] = round(ctx.rng.uniform(0.82, 0.99), 2)
                elif self.usage == "crowd":
                    event["count"] = self.crowd(t, ctx)
                attrs["lastEvent"] = event
            self._schedule_event(t, ctx)
        while self.pending and self.pending[0][0] <= t + 0.5:
            _at, event = self.pending.pop(0)
            if live:
                if event.get("kind") == "deliveryAreaOverstay":
                    event = {**event, "plate": self._plate(ctx)}
                if event.get("kind") == "crowdGathering":
                    count = self.crowd(t, ctx)
                    event = {**event, "count": count}
                    attrs["crowdCount"] = count
                attrs["lastEvent"] = {**event, "at": format_instant(t)}
        nxt = min(self.next_heartbeat, self.next_count, self.next_event)
        if self.pending:
            nxt = min(nxt, self.pending[0][0])
        return (attrs or None), max(nxt, t + 0.001)
