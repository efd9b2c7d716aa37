"""A dispatch rehearsed in the twin, with and without signal priority.

When a unit is dispatched, the simulator drives the very route it was given twice
from the same instant: once as it will drive it (every signal on the route holds
green for it), and once as it would without priority — meeting each simulated signal
at whatever point of its cycle it is then, and waiting out a red. Both drives use
the unit's own speeds (the street's limit, emergency speed, what an accident or a
crowd slows), so the difference is the time priority saves on this dispatch, from
the signals' own timing, not from an average.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from citypilot.twin.devices.base import SimContext
from citypilot.twin.devices.traffic import TrafficSignalModel
from citypilot.twin.devices.units import EMERGENCY_KMH, UnitModel

#: A signal this near a route junction controls it.
SIGNAL_RADIUS_M = 30.0


@dataclass(frozen=True)
class Rehearsal:
    """The same drive timed with and without priority."""

    signals: int  # signals on the route
    reds: int  # of them, those met at red without priority
    with_priority_s: float
    without_priority_s: float

    @property
    def saved_s(self) -> float:
        """Seconds priority saves."""
        return self.without_priority_s - self.with_priority_s

    def to_json(self) -> dict[str, Any]:
        """As the incident keeps it."""
        saved = self.saved_s
        return {
            "signals": self.signals,
            "redsAvoided": self.reds,
            "withPrioritySeconds": round(self.with_priority_s, 1),
            "withoutPrioritySeconds": round(self.without_priority_s, 1),
            "savedSeconds": round(saved, 1),
            "savedPercent": round(100.0 * saved / self.without_priority_s, 1)
            if self.without_priority_s > 0
            else 0.0,
        }


def red_wait(signal: TrafficSignalModel, t: float) -> float:
    """Seconds a vehicle arriving at ``t`` waits at ``signal`` (0 on green, or when the
    signal is dark or flashing and drivers give way instead), its cycle running on as
    it runs now."""
    if signal.phase == "flashingAmber" or signal.mode == "off" or not signal.started:
        return 0.0
    cycle = max(1.0, signal.cur_cycle)
    into = (t - signal.cycle_start) % cycle
    green = cycle * signal.green_share
    return 0.0 if into < green else cycle - into


def signals_by_node(
    unit: UnitModel, nodes: Sequence[int], signals: Sequence[TrafficSignalModel]
) -> dict[int, TrafficSignalModel]:
    """The signal controlling each junction of the route (by position in ``nodes``)."""
    net = unit.net
    found: dict[int, TrafficSignalModel] = {}
    for k, node in enumerate(nodes):
        if k == 0:
            continue  # the junction the unit starts from is behind it
        x, y = net.x[node], net.y[node]
        for s in signals:
            if math.hypot(s.x - x, s.y - y) <= SIGNAL_RADIUS_M:
                found[k] = s
                break
    return found


def rehearse(
    unit: UnitModel,
    nodes: Sequence[int],
    signals: Sequence[TrafficSignalModel],
    t0: float,
    ctx: SimContext,
) -> Rehearsal:
    """Drive ``nodes`` from ``t0`` at emergency speed, with and without priority."""
    controlled = signals_by_node(unit, nodes, signals)
    with_t = without_t = t0
    reds = 0
    for k, (a, b) in enumerate(itertools.pairwise(nodes), start=1):
        with_t += unit.arc_seconds(a, b, with_t, EMERGENCY_KMH, ctx)
        without_t += unit.arc_seconds(a, b, without_t, EMERGENCY_KMH, ctx)
        signal = controlled.get(k)
        wait = red_wait(signal, without_t) if signal is not None else 0.0
        if wait > 0:
            reds += 1
            without_t += wait
    return Rehearsal(len(controlled), reds, with_t - t0, without_t - t0)
