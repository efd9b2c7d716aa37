"""Streetlights: dusk-to-dawn switching, a night dimming profile, power draw and failures.

Lights switch on a few minutes after sunset and off before sunrise for the
city's latitude (each photocell a little early or late), dim to a lower level
between 23:00 and 05:00, and report power and state every 15 minutes and on
every change. Sodium lamps warm up ("bootingUp") for a few minutes. A small
share of lamps fails while lit; now and then a control cabinet trips and every
light it feeds goes dark until it is repaired.
"""

from __future__ import annotations

from typing import Any

from citypilot.model.timeutil import format_instant
from citypilot.twin.devices.base import STREETLIGHT_INTERVAL_S, DeviceModel, SimContext

DIM_START_H = 23.0
DIM_END_H = 5.0
WARM_UP_S = 300.0
LAMP_FAILURE_P = 4.6e-6  # per lit report: about 20 new defective lamps a day per 45,000
CABINET_FAILURE_P = 4.6e-6  # per cabinet check (every 15 min): about one trip in two days
CABINET_REPAIR_S = (2 * 3600.0, 8 * 3600.0)
STANDBY_W = 0.3
#: rated power (W) of an LED lantern by mounting height, and factors for older lamps
LED_RATED_W = {6.0: 30.0, 8.0: 45.0, 10.0: 75.0, 12.0: 110.0}
TECH_FACTOR = {"LED": 1.0, "highPressureSodium": 2.0, "metalHalide": 1.8, "compactFluorescent": 1.2}


class Cabinet:
    """A control cabinet feeding a run of consecutive streetlights."""

    __slots__ = ("fault_until", "members", "next_check")

    def __init__(self) -> None:
        self.members: list[int] = []
        self.fault_until = 0.0
        self.next_check = 0.0

    def faulty(self, t: float, ctx: SimContext) -> bool:
        """Whether the cabinet is tripped at ``t`` (draws new trips every 15 minutes)."""
        if t >= self.next_check:
            self.next_check = t + STREETLIGHT_INTERVAL_S
            if t >= self.fault_until and ctx.rng.random() < CABINET_FAILURE_P:
                self.fault_until = t + ctx.rng.uniform(*CABINET_REPAIR_S)
                for member in self.members:
                    ctx.wake(member, t)
        return t < self.fault_until


class StreetlightModel(DeviceModel):
    """One streetlight. Command state: ``override_level`` (0..1, None = automatic)
    until ``override_until``; ``status`` is reset to "ok" by a lamp change."""

    entity_type = "Streetlight"
    __slots__ = (
        "cabinet",
        "dim_level",
        "jitter",
        "level",
        "next_periodic",
        "override_level",
        "override_until",
        "power_state",
        "rated_w",
        "sodium",
        "started",
        "status",
        "warm_until",
    )

    def __init__(
        self,
        entity_id: str,
        x: float,
        y: float,
        doc: dict[str, Any],
        cabinet: Cabinet,
        jitter: float,
    ) -> None:
        super().__init__(entity_id, x, y)
        height = float(doc["lanternHeight"]["value"])
        tech = doc["lampTechnology"]["value"]
        self.rated_w = LED_RATED_W.get(height, 45.0) * TECH_FACTOR.get(tech, 1.0)
        self.sodium = tech == "highPressureSodium"
        self.dim_level = 0.5 if tech == "LED" and height <= 8.0 else 0.7
        self.cabinet = cabinet
        self.jitter = jitter
        self.status = doc["status"]["value"]
        self.level = 0.0
        self.power_state = "off"
        self.override_level: float | None = None
        self.override_until = 0.0
        self.next_periodic = 0.0
        self.warm_until = 0.0
        self.started = False

    def interval(self) -> float:
        """Every 15 minutes."""
        return STREETLIGHT_INTERVAL_S

    def first_due(self, start: float, ctx: SimContext) -> float:
        """Spread the periodic phase; the first report is at that phase."""
        self.next_periodic = start + ctx.rng.random() * ctx.every(STREETLIGHT_INTERVAL_S)
        return self.next_periodic

    def target_level(self, t: float, ctx: SimContext) -> float:
        """Dimming level the controller asks for at ``t`` (before faults)."""
        if self.override_level is not None and t < self.override_until:
            return self.override_level
        if not ctx.env.is_dark(t, self.jitter):
            return 0.0
        h = ctx.env.local_hour(t)
        return self.dim_level if (h >= DIM_START_H or h < DIM_END_H) else 1.0

    def _next_change(self, t: float, ctx: SimContext) -> float:
        env = ctx.env
        off_am, on_pm, off_next = env.lights_window(t)
        midnight = t - env.local_seconds(t)
        times = (
            off_am + self.jitter,
            on_pm + self.jitter,
            off_next + self.jitter,
            midnight + DIM_END_H * 3600,
            midnight + DIM_START_H * 3600,
            midnight + 86400 + DIM_END_H * 3600,
        )
        nxt = min((x for x in times if x > t + 0.5), default=t + 3600.0)
        if self.warm_until > t:
            nxt = min(nxt, self.warm_until)
        if self.override_level is not None and self.override_until > t:
            nxt = min(nxt, self.override_until)
        return nxt

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """State, level and power; on change and every 15 minutes."""
        status = self.fault or self.status
        if status == "ok" and self.cabinet.faulty(t, ctx):
            status = "cabinetFault"
        level = self.target_level(t, ctx) if status == "ok" else 0.0
        if level > 0 and status == "ok" and ctx.rng.random() < LAMP_FAILURE_P:
            self.status = status = "defectiveLamp"
            level = 0.0
        switched_on = level > 0 and self.level == 0 and self.started  # not at start-up
        if switched_on and self.sodium:
            self.warm_until = t + WARM_UP_S
        if level == 0:
            state = "off"
        elif t < self.warm_until:
            state = "bootingUp"
        else:
            state = "on" if level >= 0.99 else "low"
        periodic = t >= self.next_periodic - 0.5
        if periodic:
            self.next_periodic = t + ctx.every(STREETLIGHT_INTERVAL_S)
        changed = state != self.power_state or level != self.level
        self.level = level
        self.power_state = state
        nxt = min(self.next_periodic, self._next_change(t, ctx))
        if not (periodic or changed or not self.started):
            return None, nxt
        self.started = True
        if level > 0:
            lamp = self.rated_w * (0.6 if state == "bootingUp" else 0.1 + 0.9 * level)
            power = round(lamp * (1.0 + ctx.rng.uniform(-0.015, 0.015)) + 1.0, 1)
        else:
            power = 0.0 if status == "cabinetFault" else STANDBY_W
        attrs: dict[str, Any] = {
            "powerState": state,
            "illuminanceLevel": round(level, 2),
            "powerConsumption": power,
            "status": status,
        }
        if switched_on:
            attrs["dateLastSwitchingOn"] = format_instant(t)
        return attrs, nxt
