"""Police units and technical vehicles: shifts, patrols, missions and returns to base.

Police units on duty alternate patrols (a random drive through the streets near
their station) with breaks at the station; off-duty units stay at base.
Technical vehicles leave their depot on workdays for missions (drive to a site,
work there, move on), sweepers sweep slowly, fire engines and ambulances go out
on random call-outs at any hour. Every drive follows the road graph at the
street's speed limit (slowed near an accident).
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Any

from citypilot.model.timeutil import format_instant
from citypilot.twin.devices.base import (
    UNIT_IDLE_INTERVAL_S,
    UNIT_MOVING_INTERVAL_S,
    DeviceModel,
    SimContext,
)
from citypilot.twin.geo import lonlat_point
from citypilot.twin.roads import Router

PATROL_RADIUS_M = 3000.0
PATROL_S = (2700.0, 7200.0)
BREAK_S = (1200.0, 2700.0)
WORK_S = (2700.0, 7200.0)
CALL_OUT_RATE_PER_H = 0.25
CRUISE_KMH = {"PoliceUnit": 40.0, "TechnicalVehicle": 45.0}
SWEEP_KMH = 8.0
EMERGENCY_KMH = 60.0


class RoadNet:
    """What units need of the road graph, as plain lists: positions, adjacency, speeds."""

    def __init__(self, graph: Any, router: Router) -> None:
        indptr, nbr, eid = graph.adjacency()
        self.indptr = indptr.tolist()
        self.nbr = nbr.tolist()
        self.eid = eid.tolist()
        self.x = graph.x.tolist()
        self.y = graph.y.tolist()
        self.length = graph.length.tolist()
        self.maxspeed = graph.maxspeed.tolist()
        self.router = router
        self.count = graph.node_count


class UnitModel(DeviceModel):
    """A police unit or technical vehicle. Command state: ``target_node`` and ``incident``
    (a dispatch: drive there with priority, then stay "onScene"/"working")."""

    __slots__ = (
        "activity",
        "base_node",
        "base_xy",
        "entity_type",
        "incident",
        "kind",
        "moved_at",
        "net",
        "on_duty_slot",
        "path_nodes",
        "path_t",
        "phase_until",
        "prev_node",
        "route_plan",
        "speed_kmh",
        "target_node",
    )

    def __init__(
        self,
        entity_id: str,
        entity_type: str,
        x: float,
        y: float,
        kind: str,
        net: RoadNet,
        base_node: int,
        slot: int,
    ) -> None:
        super().__init__(entity_id, x, y)
        self.entity_type = entity_type
        self.kind = kind  # "police" or the TechnicalVehicle vehicleType
        self.net = net
        self.base_xy = (x, y)
        self.base_node = base_node
        self.on_duty_slot = slot
        self.activity = "base"  # base | patrol | mission | work | sweep | return | dispatch | scene
        self.phase_until = 0.0
        self.path_nodes: list[int] = []
        self.path_t: list[float] = []
        self.prev_node = -1
        self.target_node: int | None = None
        self.incident: str | None = None
        self.route_plan: list[int] | None = None
        self.speed_kmh = 0.0
        self.moved_at = 0.0

    def interval(self) -> float:
        """Every few seconds when moving."""
        return UNIT_MOVING_INTERVAL_S

    # -- schedule --------------------------------------------------------------------------
    def on_duty(self, t: float, ctx: SimContext) -> bool:
        """Police shifts (more units by day); technical crews on workdays 07:30–16:30."""
        env = ctx.env
        h = env.local_hour(t)
        if self.entity_type == "PoliceUnit":
            day = 7.0 <= h < 19.0
            return self.on_duty_slot % 5 < (3 if day else 2)
        if self.kind in ("fireEngine", "ambulance"):
            return True
        return env.is_workday(t) and 7.5 <= h < 16.5

    # -- movement --------------------------------------------------------------------------
    def arc_seconds(self, a: int, b: int, t: float, kmh: float, ctx: SimContext) -> float:
        """Seconds to drive from junction ``a`` to ``b`` at up to ``kmh`` when leaving at
        ``t``: the street's limit, slowed by what happens around (an accident, a crowd)."""
        net = self.net
        d = math.hypot(net.x[b] - net.x[a], net.y[b] - net.y[a])
        slow = ctx.env.slowdown(net.x[a], net.y[a], t)
        return d / (max(3.0, min(kmh, self._limit(a, b)) * (1.0 - slow)) / 3.6)

    def _drive(self, t: float, nodes: list[int], kmh: float, ctx: SimContext) -> None:
        times = [t]
        for a, b in itertools.pairwise(nodes):
            times.append(times[-1] + self.arc_seconds(a, b, t, kmh, ctx))
        self.path_nodes = nodes
        self.path_t = times

    def _limit(self, a: int, b: int) -> float:
        net = self.net
        for pos in range(net.indptr[a], net.indptr[a + 1]):
            if net.nbr[pos] == b:
                return float(net.maxspeed[net.eid[pos]])
        return 50.0

    def _wander(self, start: int, steps: int, ctx: SimContext) -> list[int]:
        """A random drive without U-turns, drawn back towards base beyond the patrol radius."""
        net = self.net
        nodes = [start]
        prev = self.prev_node
        bx, by = net.x[self.base_node], net.y[self.base_node]
        for _ in range(steps):
            cur = nodes[-1]
            options = [
                net.nbr[p]
                for p in range(net.indptr[cur], net.indptr[cur + 1])
                if net.nbr[p] != prev
            ]
            if not options:
                options = [net.nbr[p] for p in range(net.indptr[cur], net.indptr[cur + 1])]
            if not options:
                break
            if (
                math.hypot(net.x[cur] - bx, net.y[cur] - by) > PATROL_RADIUS_M
                and ctx.rng.random() < 0.7
            ):
                nxt = min(options, key=lambda n: math.hypot(net.x[n] - bx, net.y[n] - by))
            else:
                nxt = options[ctx.rng.randrange(len(options))]
            prev = cur
            nodes.append(nxt)
        self.prev_node = prev
        return nodes

    def _route(self, a: int, b: int) -> list[int]:
        found = self.net.router.path(a, b)
        return found[0] if found is not None else [a, b]

    def _where(self, t: float) -> tuple[float, float, float, float]:
        """x, y, bearing, speed (km/h) along the current path at ``t``."""
        net = self.net
        if not self.path_nodes:
            return self.base_xy[0], self.base_xy[1], 0.0, 0.0
        times = self.path_t
        if t >= times[-1]:
            n = self.path_nodes[-1]
            return net.x[n], net.y[n], 0.0, 0.0
        k = max(0, bisect.bisect_right(times, t) - 1)
        a, b = self.path_nodes[k], self.path_nodes[k + 1]
        span = times[k + 1] - times[k]
        f = 0.0 if span <= 0 else (t - times[k]) / span
        dx, dy = net.x[b] - net.x[a], net.y[b] - net.y[a]
        speed = math.hypot(dx, dy) / span * 3.6 if span > 0 else 0.0
        return net.x[a] + dx * f, net.y[a] + dy * f, math.degrees(math.atan2(dx, dy)) % 360.0, speed

    def _node_now(self, t: float) -> int:
        if not self.path_nodes:
            return self.base_node
        k = max(0, bisect.bisect_right(self.path_t, t) - 1)
        return (
            self.path_nodes[min(k + 1, len(self.path_nodes) - 1)]
            if t > self.path_t[0]
            else self.path_nodes[0]
        )

    def follow(self, nodes: list[int], incident: str) -> None:
        """Drive to an incident along ``nodes`` (graph node indices), from the next report on."""
        if not nodes or not all(0 <= n < self.net.count for n in nodes):
            raise ValueError("the route names nodes the road graph lacks")
        self.route_plan = list(nodes)
        self.incident = incident
        self.target_node = nodes[-1]
        self.phase_until = 0.0  # plan again at once

    # -- state machine ---------------------------------------------------------------------
    def _plan(self, t: float, ctx: SimContext) -> None:
        """Choose the next activity once the current one is over."""
        rng = ctx.rng
        here = self._node_now(t)
        cruise = CRUISE_KMH[self.entity_type]
        if self.route_plan is not None:  # a dispatch with its route: drive that route
            nodes, self.route_plan = self.route_plan, None
            lead_in = self._route(here, nodes[0])[:-1] if here != nodes[0] else []
            self.activity = "dispatch"
            self._drive(t, lead_in + nodes, EMERGENCY_KMH, ctx)
            self.phase_until = self.path_t[-1]
            return
        if self.target_node is not None and self.activity not in ("dispatch", "scene"):
            self.activity = "dispatch"
            self._drive(t, self._route(here, self.target_node), EMERGENCY_KMH, ctx)
            self.phase_until = self.path_t[-1]
            return
        if self.activity == "dispatch":
            self.activity = "scene"
            self.path_nodes, self.path_t = [here], [t]
            self.phase_until = t + 3600.0
            return
        if self.activity == "scene":
            self.target_node = None
            self.incident = None
        away = here != self.base_node
        if not self.on_duty(t, ctx):
            if away and self.activity != "return":
                self.activity = "return"
                self._drive(t, self._route(here, self.base_node), cruise, ctx)
                self.phase_until = self.path_t[-1]
            else:
                self.activity, self.path_nodes, self.path_t = "base", [], []
                self.phase_until = t + UNIT_IDLE_INTERVAL_S
            return
        if self.entity_type == "PoliceUnit":
            if self.activity in ("base", "return"):
                if self.activity == "return" or rng.random() < 0.35:
                    self.activity = "base"
                    self.path_nodes, self.path_t = [], []
                    self.phase_until = t + rng.uniform(*BREAK_S)
                    return
                self.activity = "patrol"
                self._patrol_leg(t, here, cruise, ctx, rng.uniform(*PATROL_S))
                return
            self.activity = "return"
            self._drive(t, self._route(here, self.base_node), cruise, ctx)
            self.phase_until = self.path_t[-1]
            return
        # technical vehicles
        if self.kind in ("fireEngine", "ambulance"):
            if self.activity == "base":
                wait = rng.expovariate(CALL_OUT_RATE_PER_H / 3600.0)
                if wait > UNIT_IDLE_INTERVAL_S:
                    self.phase_until = t + UNIT_IDLE_INTERVAL_S
                    return
                self.activity = "mission"
                self._drive(t, self._route(here, self._random_site(rng)), EMERGENCY_KMH, ctx)
                self.phase_until = self.path_t[-1]
            elif self.activity == "mission":
                self.activity, self.path_nodes, self.path_t = "work", [here], [t]
                self.phase_until = t + rng.uniform(1200.0, 3600.0)
            elif self.activity in ("work", "scene"):
                self.activity = "return"
                self._drive(t, self._route(here, self.base_node), cruise, ctx)
                self.phase_until = self.path_t[-1]
            else:
                self.activity, self.path_nodes, self.path_t = "base", [], []
                self.phase_until = t + UNIT_IDLE_INTERVAL_S
            return
        if self.activity in ("base", "work", "sweep", "return"):
            if self.activity == "return":
                self.activity, self.path_nodes, self.path_t = "base", [], []
                self.phase_until = t + rng.uniform(600.0, 1800.0)
                return
            self.activity = "mission"
            self._drive(t, self._route(here, self._random_site(rng)), cruise, ctx)
            self.phase_until = self.path_t[-1]
            return
        # arrived at a site
        if self.kind == "sweeper":
            self.activity = "sweep"
            self._drive(t, self._wander(here, 60, ctx), SWEEP_KMH, ctx)
            self.phase_until = self.path_t[-1]
        else:
            self.activity = "work"
            self.path_nodes, self.path_t = [here], [t]
            self.phase_until = t + rng.uniform(*WORK_S)

    def _patrol_leg(
        self, t: float, here: int, cruise: float, ctx: SimContext, remaining: float
    ) -> None:
        self._drive(t, self._wander(here, 40, ctx), cruise, ctx)
        self.phase_until = t + remaining

    def _random_site(self, rng: Any) -> int:
        net = self.net
        bx, by = net.x[self.base_node], net.y[self.base_node]
        angle = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(300.0, PATROL_RADIUS_M * 1.3)
        return self._near_node(bx + r * math.cos(angle), by + r * math.sin(angle))

    def _near_node(self, x: float, y: float) -> int:
        """Nearest node by walking the graph greedily from base (cheap, good enough)."""
        net = self.net
        cur = self.base_node
        while True:
            best = cur
            best_d = (net.x[cur] - x) ** 2 + (net.y[cur] - y) ** 2
            for p in range(net.indptr[cur], net.indptr[cur + 1]):
                n = net.nbr[p]
                d = (net.x[n] - x) ** 2 + (net.y[n] - y) ** 2
                if d < best_d:
                    best, best_d = n, d
            if best == cur:
                return cur
            cur = best

    def status(self, t: float, ctx: SimContext) -> str:
        """The entity's status value for the current activity."""
        if self.entity_type == "PoliceUnit":
            if self.activity == "dispatch":
                return "dispatched"
            if self.activity == "scene":
                return "onScene"
            if self.activity in ("patrol", "return"):
                return "patrolling"
            return "available" if self.on_duty(t, ctx) else "offDuty"
        return {
            "base": "atBase",
            "mission": "onRoute",
            "return": "onRoute",
            "dispatch": "onRoute",
            "work": "working",
            "sweep": "working",
            "scene": "working",
        }[self.activity]

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Position, speed, bearing and status; often when moving, rarely when parked."""
        guard = 0
        while t >= self.phase_until - 0.5 and guard < 4:
            self._plan(t, ctx)
            guard += 1
        if self.activity == "patrol" and self.path_t and self.path_t[-1] <= t:
            self._drive(
                t, self._wander(self.path_nodes[-1], 40, ctx), CRUISE_KMH[self.entity_type], ctx
            )
        x, y, bearing, speed = self._where(t)
        if self.activity == "base":
            x, y = self.base_xy
        moving = speed > 0.5
        if moving:
            self.moved_at = t
        self.x, self.y = x, y
        attrs: dict[str, Any] = {
            "location": lonlat_point(x, y),
            "speed": round(speed, 1),
            "status": self.status(t, ctx),
        }
        if moving:
            attrs["bearing"] = round(bearing, 1)
        if self.moved_at:
            attrs["dateLastMoved"] = format_instant(self.moved_at)
        step = ctx.every(
            UNIT_MOVING_INTERVAL_S
            if moving or (self.path_t and self.path_t[-1] > t)
            else UNIT_IDLE_INTERVAL_S
        )
        return attrs, min(t + step, max(self.phase_until, t + 0.5))
