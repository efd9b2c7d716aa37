"""Public buildings (opening hours, people inside) and their badge readers.

Each category has opening hours and a capacity; occupancy rises and falls with
them. Staff badge in around opening time, out around closing, and a little at
lunch; each access event reports the pseudonymised badge, the result and the
running count since midnight. A building in lockdown refuses every badge.
"""

from __future__ import annotations

import math
from typing import Any

from citypilot.model.timeutil import format_instant
from citypilot.twin.devices.base import (
    ACCESS_HEARTBEAT_S,
    BUILDING_INTERVAL_S,
    DeviceModel,
    SimContext,
)

#: category → (open h, close h, open on weekends, capacity, staff)
HOURS: dict[str, tuple[float, float, bool, int, int]] = {
    "townHall": (8.5, 17.5, False, 150, 60),
    "school": (8.0, 16.5, False, 400, 35),
    "library": (10.0, 19.0, True, 120, 12),
    "sportsCentre": (8.0, 22.0, True, 200, 10),
    "museum": (10.0, 18.0, True, 250, 15),
    "office": (7.5, 19.0, False, 300, 150),
    "policeStation": (0.0, 24.0, True, 60, 40),
    "fireStation": (0.0, 24.0, True, 30, 30),
    "hospital": (0.0, 24.0, True, 800, 300),
    "depot": (6.0, 18.0, False, 80, 50),
    "other": (9.0, 21.0, True, 60, 5),
}
DENIED_SHARE = 0.015
#: The group of badge k is BADGE_GROUPS[k % 10]: most are staff, a few keep access always.
BADGE_GROUPS = (
    "staff",
    "staff",
    "staff",
    "staff",
    "staff",
    "staff",
    "staff",
    "security",
    "management",
    "maintenance",
)


def _is_open(category: str, t: float, ctx: SimContext) -> bool:
    open_h, close_h, weekends, _cap, _staff = HOURS[category]
    if not weekends and not ctx.env.is_workday(t):
        return False
    h = ctx.env.local_hour(t)
    return open_h <= h < close_h


class BuildingModel(DeviceModel):
    """A public building. Command state: ``lockdown`` (status "lockdown")."""

    entity_type = "Building"
    __slots__ = ("category", "lockdown", "scale")

    def __init__(
        self, entity_id: str, x: float, y: float, doc: dict[str, Any], ctx: SimContext
    ) -> None:
        super().__init__(entity_id, x, y)
        self.category = doc["category"]["value"]
        self.scale = ctx.rng.uniform(0.6, 1.3)
        self.lockdown = False

    def interval(self) -> float:
        """Every ten minutes."""
        return BUILDING_INTERVAL_S

    def occupancy(self, t: float, ctx: SimContext) -> int:
        """People inside at ``t``."""
        open_h, close_h, _w, capacity, staff = HOURS[self.category]
        h = ctx.env.local_hour(t)
        if not _is_open(self.category, t, ctx):
            night_staff = staff * 0.3 if close_h - open_h >= 24 else 0
            return round(night_staff * self.scale)
        span = close_h - open_h
        shape = (
            math.sin(math.pi * (h - open_h) / span) ** 0.6
            if span < 24
            else 0.6 + 0.3 * math.sin(math.pi * (h - 6) / 16)
        )
        people = capacity * self.scale * max(0.05, shape) * (1.0 + ctx.rng.gauss(0, 0.04))
        return max(0, round(people))

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Status and occupancy."""
        if self.lockdown:
            status = "lockdown"
        else:
            status = self.fault or ("open" if _is_open(self.category, t, ctx) else "closed")
        return {"status": status, "occupancy": self.occupancy(t, ctx)}, t + ctx.every(
            BUILDING_INTERVAL_S
        )


class AccessPointModel(DeviceModel):
    """A badge reader. Command state: ``locked``, ``badges_enabled`` and
    ``allowed_groups`` (admitted while badges are disabled); ``building`` (the
    BuildingModel) carries the lockdown."""

    entity_type = "AccessPoint"
    __slots__ = (
        "allowed_groups",
        "badges",
        "badges_enabled",
        "building",
        "count",
        "count_day",
        "doors",
        "event_due",
        "locked",
        "next_heartbeat",
        "started",
    )

    def __init__(
        self, entity_id: str, x: float, y: float, building: BuildingModel, doors: int, site: str
    ) -> None:
        super().__init__(entity_id, x, y)
        self.building = building
        self.doors = doors
        staff = HOURS[building.category][4]
        self.badges = [f"{site}-{k:04d}" for k in range(max(2, round(staff * building.scale)))]
        self.locked = True
        self.badges_enabled = True
        self.allowed_groups: tuple[str, ...] = ()
        self.count = 0
        self.count_day = -1
        self.next_heartbeat = 0.0
        self.event_due = math.inf
        self.started = False

    def interval(self) -> float:
        """The reader's heartbeat."""
        return ACCESS_HEARTBEAT_S

    def rate(self, t: float, ctx: SimContext) -> float:
        """Badge events per second at this door."""
        category = self.building.category
        open_h, close_h, weekends, _cap, _staff = HOURS[category]
        if not weekends and not ctx.env.is_workday(t):
            return 0.0
        staff = len(self.badges)
        h = ctx.env.local_hour(t)
        if close_h - open_h >= 24:  # shifts at 6, 14, 22
            shape = sum(math.exp(-((h - s) ** 2) / 0.3) for s in (6.0, 14.0, 22.0)) * 0.5 + 0.1
        else:
            arrive = math.exp(-((h - (open_h - 0.3)) ** 2) / 0.4)
            leave = math.exp(-((h - (close_h + 0.1)) ** 2) / 0.5)
            lunch = 0.35 * math.exp(-((h - 12.5) ** 2) / 0.5)
            shape = arrive + leave + lunch
        per_hour = staff / self.doors * shape * 0.9
        return per_hour / 3600.0

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """One badge event (or a heartbeat); the next event is drawn from the current rate."""
        env = ctx.env
        day = env.local_day(t)
        if day != self.count_day:
            self.count_day, self.count = day, 0
        attrs: dict[str, Any] = {}
        status = self.fault or "online"
        if not self.started or t >= self.next_heartbeat - 0.5:
            self.started = True
            self.next_heartbeat = t + ctx.every(ACCESS_HEARTBEAT_S)
            attrs.update(
                {
                    "status": status,
                    "locked": self.locked or self.building.lockdown,
                    "badgesEnabled": self.badges_enabled,
                    "accessCount": self.count,
                }
            )
        if t >= self.event_due - 0.5:
            self.event_due = math.inf
            if status == "online":
                k = ctx.rng.randrange(len(self.badges))
                badge, group = self.badges[k], BADGE_GROUPS[k % len(BADGE_GROUPS)]
                granted = (
                    (self.badges_enabled or group in self.allowed_groups)
                    and not self.building.lockdown
                    and ctx.rng.random() > DENIED_SHARE
                )
                h = env.local_hour(t)
                self.count += 1
                attrs["accessCount"] = self.count
                attrs["lastAccess"] = {
                    "badge": ctx.pseudonym("badge", badge),
                    "group": group,
                    "result": "granted" if granted else "denied",
                    "direction": "in" if h < 12.0 or 13.0 <= h < 14.0 else "out",
                    "at": format_instant(t),
                }
        if self.event_due == math.inf:
            rate = self.rate(t, ctx)
            wait = ctx.rng.expovariate(rate) if rate > 1e-6 else math.inf
            if wait <= 900.0:
                self.event_due = t + wait
            else:  # quiet now: look again in 15 minutes (the rate changes through the day)
                return (attrs or None), min(t + 900.0, self.next_heartbeat)
        return (attrs or None), min(self.event_due, self.next_heartbeat)
