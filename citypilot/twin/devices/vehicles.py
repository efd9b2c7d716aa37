"""Trams and buses running their GTFS timetable along the route shape.

Each vehicle works its block (the trips chained to it in the timetable). Its
position is the scheduled position shifted by its delay; delay drifts with road
traffic (buses much more than trams), jumps near an accident, and feeds on
itself (a late vehicle picks up more passengers and gets later still: that is
how bunching starts); layovers at the termini absorb part of it. Occupancy
follows the daily demand and grows with the delay. Between blocks vehicles
wait at their depot.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from citypilot.twin.devices.base import (
    TRANSIT_IDLE_INTERVAL_S,
    TRANSIT_INTERVAL_S,
    DeviceModel,
    SimContext,
)
from citypilot.twin.geo import lonlat_point
from citypilot.twin.roads import RoadGraph
from citypilot.twin.service_calendar import service_of_epoch_day
from citypilot.twin.transit import Pattern, Route, Transit, trip_duration

CAPACITY = {"Tram": 250, "Bus": 100}
DELAY_DRIFT = {"Tram": 0.012, "Bus": 0.06}  # extra seconds per second at heavy traffic
BUNCHING_GAIN = 0.03
BREAKDOWN_P = 5e-7  # per in-service report
BREAKDOWN_S = (1200.0, 3600.0)
PULL_OUT_S = 600.0  # vehicles leave the depot this long before their first trip
TURNAROUND_S = 90.0


class Track:
    """A pattern's geometry and schedule as flat lists for fast lookups."""

    __slots__ = (
        "bearing",
        "cum",
        "duration",
        "maxspeed",
        "sched_d",
        "sched_t",
        "stop_d",
        "stop_ids",
        "xs",
        "ys",
    )

    def __init__(self, graph: RoadGraph, pattern: Pattern) -> None:
        nodes = pattern.nodes
        self.xs = [float(graph.x[n]) for n in nodes]
        self.ys = [float(graph.y[n]) for n in nodes]
        self.cum = [float(c) for c in pattern.cum_m]
        self.maxspeed = [float(graph.maxspeed[e]) for e in pattern.edges] or [50.0]
        self.bearing = [
            math.degrees(math.atan2(self.xs[k + 1] - self.xs[k], self.ys[k + 1] - self.ys[k]))
            % 360.0
            for k in range(len(nodes) - 1)
        ] or [0.0]
        self.stop_ids = list(pattern.stop_ids)
        self.stop_d = [self.cum[k] for k in pattern.stop_pos]
        # schedule breakpoints (time from trip start → distance), dwelling at middle stops
        t_pts: list[float] = []
        d_pts: list[float] = []
        n_stops = len(pattern.stop_ids)
        for i in range(n_stops):
            arr = float(pattern.arrival_s[i])
            t_pts.append(arr)
            d_pts.append(self.stop_d[i])
            if 0 < i < n_stops - 1:
                t_pts.append(arr + pattern.dwell_s)
                d_pts.append(self.stop_d[i])
        self.sched_t = t_pts
        self.sched_d = d_pts
        self.duration = float(pattern.duration_s)

    def distance_at(self, tau: float) -> float:
        """Scheduled distance travelled ``tau`` seconds after departure, in base times
        (a trip running ``factor`` times the base is at ``distance_at(t / factor)``)."""
        t, d = self.sched_t, self.sched_d
        if tau <= t[0]:
            return d[0]
        if tau >= t[-1]:
            return d[-1]
        k = bisect.bisect_right(t, tau) - 1
        span = t[k + 1] - t[k]
        return d[k] if span <= 0 else d[k] + (d[k + 1] - d[k]) * (tau - t[k]) / span

    def place(self, dist: float) -> tuple[float, float, float, float]:
        """x, y, bearing and speed limit at ``dist`` metres along the track."""
        cum = self.cum
        k = min(max(bisect.bisect_right(cum, dist) - 1, 0), len(cum) - 2) if len(cum) > 1 else 0
        if len(cum) < 2:
            return self.xs[0], self.ys[0], 0.0, 50.0
        span = cum[k + 1] - cum[k]
        f = 0.0 if span <= 0 else min(1.0, max(0.0, (dist - cum[k]) / span))
        x = self.xs[k] + (self.xs[k + 1] - self.xs[k]) * f
        y = self.ys[k] + (self.ys[k + 1] - self.ys[k]) * f
        return x, y, self.bearing[k], self.maxspeed[k]

    def next_stop(self, dist: float) -> str:
        """The stop after ``dist`` (the terminus once past the last)."""
        k = bisect.bisect_right(self.stop_d, dist + 1.0)
        return self.stop_ids[min(k, len(self.stop_ids) - 1)]


@dataclass(frozen=True)
class BlockTrip:
    """One trip of a vehicle's block on one service type."""

    start: float  # seconds after the service day's midnight
    end: float
    route: int
    direction: int
    trip_id: str
    factor: float = 1.0  # running time against the track's base schedule


class TransitVehicleModel(DeviceModel):
    """A tram or bus. Command state: ``hold_s`` (extra dwell at the next stop)."""

    __slots__ = (
        "blocks",
        "breakdown_until",
        "capacity",
        "current",
        "delay",
        "depot",
        "entity_type",
        "hold_s",
        "last_d",
        "last_t",
        "load_noise",
        "popularity",
        "routes",
        "status",
        "tracks",
    )

    def __init__(
        self,
        entity_id: str,
        entity_type: str,
        depot: tuple[float, float],
        blocks: dict[str, list[BlockTrip]],
        routes: list[Route],
        tracks: dict[tuple[int, int], Track],
        ctx: SimContext,
    ) -> None:
        super().__init__(entity_id, depot[0], depot[1])
        self.entity_type = entity_type  # instance attribute: one class serves Tram and Bus
        self.depot = depot
        self.blocks = blocks
        self.routes = routes
        self.tracks = tracks
        self.capacity = CAPACITY[entity_type]
        self.popularity = ctx.rng.uniform(0.6, 1.2)
        self.delay = 0.0
        self.hold_s = 0.0
        self.breakdown_until = 0.0
        self.current: tuple[float, int, list[BlockTrip]] | None = None
        self.last_t = 0.0
        self.last_d = 0.0
        self.load_noise = 0.0
        self.status = "atDepot"

    def interval(self) -> float:
        """Every few seconds in service."""
        return TRANSIT_INTERVAL_S

    def _service(self, base: float, ctx: SimContext) -> list[BlockTrip]:
        day = ctx.env.local_day(base + 43200.0)
        return self.blocks.get(service_of_epoch_day(day), [])

    def _upcoming(self, t: float, ctx: SimContext) -> tuple[float, int, list[BlockTrip]] | None:
        """(service-day base, index, trips) of the first trip not yet over by schedule."""
        today = t - ctx.env.local_seconds(t)
        best: tuple[float, int, list[BlockTrip]] | None = None
        for base in (today - 86400.0, today):
            trips = self._service(base, ctx)
            starts = [tr.start for tr in trips]
            k = max(0, bisect.bisect_left(starts, t - base - 6 * 3600.0))
            while k < len(trips) and base + trips[k].end < t:
                k += 1
            if k < len(trips) and (
                best is None or base + trips[k].start < best[0] + best[2][best[1]].start
            ):
                best = (base, k, trips)
        return best

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Position, speed, delay, load and next stop while in service; depot state otherwise."""
        if self.current is not None:
            base, k, trips = self.current
            trip = trips[k]
            track = self.tracks[(trip.route, trip.direction)]
            tau = t - base - trip.start
            if tau - self.delay <= track.duration * trip.factor:
                return self._running(t, ctx, trip, track, tau)
            arrival = base + trip.end + self.delay
            if k + 1 < len(trips) and base + trips[k + 1].start - arrival < 3 * 3600.0:
                nxt = trips[k + 1]
                depart = max(base + nxt.start, arrival + TURNAROUND_S)
                if t >= depart:
                    self._begin(base, k + 1, trips, depart - base - nxt.start, ctx)
                    return self.report(t, ctx)
                return self._layover(
                    t, ctx, nxt, track.place(track.cum[-1]), depart - base - nxt.start, depart
                )
            self.current = None
        found = self._upcoming(t, ctx)
        if found is not None:
            base, k, trips = found
            trip = trips[k]
            start = base + trip.start
            if t >= start:  # joining mid-trip (simulation start) or pulling out on time
                self._begin(base, k, trips, ctx.rng.uniform(-20.0, 40.0), ctx)
                return self.report(t, ctx)
            if start - t <= PULL_OUT_S:
                track = self.tracks[(trip.route, trip.direction)]
                return self._layover(t, ctx, trip, track.place(0.0), 0.0, start)
        self.status = "atDepot"
        self.delay = 0.0
        self.x, self.y = self.depot
        attrs = {
            "status": "atDepot",
            "speed": 0.0,
            "location": lonlat_point(*self.depot),
            "occupancy": 0.0,
            "passengerCount": 0,
        }
        wait = ctx.every(TRANSIT_IDLE_INTERVAL_S)
        if found is not None:
            wait = min(wait, max(1.0, found[0] + found[2][found[1]].start - PULL_OUT_S - t))
        return attrs, t + wait

    def _begin(
        self, base: float, k: int, trips: list[BlockTrip], delay: float, ctx: SimContext
    ) -> None:
        self.current = (base, k, trips)
        self.delay = delay
        self.last_d = 0.0
        self.last_t = 0.0
        self.load_noise = ctx.rng.gauss(0.0, 0.08)

    def _layover(
        self,
        t: float,
        ctx: SimContext,
        nxt: BlockTrip,
        place: tuple[float, float, float, float],
        delay: float,
        depart: float,
    ) -> tuple[dict[str, Any], float]:
        """Waiting at a terminus for the next trip (or for the first, after pulling out)."""
        x, y, bearing, _ = place
        track = self.tracks[(nxt.route, nxt.direction)]
        self.status = "inService"
        self.x, self.y = x, y
        attrs = {
            "status": "inService",
            "location": lonlat_point(x, y),
            "speed": 0.0,
            "bearing": round(bearing, 1),
            "routeId": self.routes[nxt.route].route_id,
            "tripId": nxt.trip_id,
            "nextStop": track.stop_ids[0],
            "delay": float(round(max(0.0, delay))),
            "occupancy": 0.0,
            "passengerCount": 0,
        }
        return attrs, min(depart, t + ctx.every(TRANSIT_INTERVAL_S) * 6)

    def _running(
        self, t: float, ctx: SimContext, trip: BlockTrip, track: Track, tau: float
    ) -> tuple[dict[str, Any], float]:
        env = ctx.env
        dt = min(60.0, t - self.last_t) if self.last_t else 0.0
        x0, y0, _, _ = track.place(self.last_d)
        broken = t < self.breakdown_until
        if not broken and ctx.rng.random() < BREAKDOWN_P:
            self.breakdown_until = t + ctx.rng.uniform(*BREAKDOWN_S)
            broken = True
        if broken:
            self.delay += dt
        elif dt > 0:
            traffic = env.traffic(t)
            slow = env.slowdown(x0, y0, t)
            drift = DELAY_DRIFT[self.entity_type] * (traffic - 0.8) + 1.5 * slow
            drift += BUNCHING_GAIN * max(-1.0, min(3.0, self.delay / 180.0))
            self.delay += dt * drift + ctx.rng.gauss(0.0, 0.8) * math.sqrt(dt)
            if self.hold_s > 0:
                self.delay += self.hold_s
                self.hold_s = 0.0
            self.delay = max(-60.0, min(3600.0, self.delay))
        dist = max(self.last_d, track.distance_at((tau - self.delay) / trip.factor))
        x, y, bearing, limit = track.place(dist)
        speed = min(limit * 1.05, max(0.0, (dist - self.last_d) / dt * 3.6)) if dt > 0 else 0.0
        self.last_d, self.last_t = dist, t
        self.status = "breakdown" if broken else "inService"
        h = env.local_hour(t)
        demand = (
            0.15
            + 0.9 * math.exp(-((h - 8.0) ** 2) / 1.5)
            + 0.5 * math.exp(-((h - 13.0) ** 2) / 4.0)
        )
        demand += 0.85 * math.exp(-((h - 17.5) ** 2) / 2.0)
        if not env.is_workday(t):
            demand = 0.2 + 0.45 * math.exp(-((h - 15.0) ** 2) / 10.0)
        along = math.sin(math.pi * min(1.0, dist / max(track.cum[-1], 1.0)))
        headway_penalty = 1.0 + 0.4 * max(0.0, min(2.0, self.delay / 300.0))
        occupancy = (
            100.0 * demand * self.popularity * (0.3 + 0.7 * along) * headway_penalty
            + 100.0 * self.load_noise
        )
        occupancy = max(0.0, min(180.0, occupancy))
        attrs = {
            "status": self.status,
            "location": lonlat_point(x, y),
            "speed": round(speed, 1),
            "bearing": round(bearing, 1),
            "routeId": self.routes[trip.route].route_id,
            "tripId": trip.trip_id,
            "nextStop": track.next_stop(dist),
            "delay": float(round(self.delay)),
            "occupancy": round(occupancy, 1),
            "passengerCount": min(400, round(occupancy / 100.0 * self.capacity)),
        }
        self.x, self.y = x, y
        return attrs, t + ctx.every(TRANSIT_INTERVAL_S)


def build_blocks(transit: Transit) -> dict[tuple[str, str], dict[str, list[BlockTrip]]]:
    """Trips of each vehicle by service type, sorted by start: {(type, local): {service: [...]}}."""
    out: dict[tuple[str, str], dict[str, list[BlockTrip]]] = {}
    for trip in transit.trips:
        route = transit.routes[trip.route]
        pattern = route.patterns[trip.direction]
        key = (route.vehicle_type, trip.block)
        out.setdefault(key, {}).setdefault(trip.service, []).append(
            BlockTrip(
                float(trip.start_s),
                float(trip.start_s + trip_duration(trip, pattern)),
                trip.route,
                trip.direction,
                trip.trip_id,
                trip.factor,
            )
        )
    for services in out.values():
        for trips in services.values():
            trips.sort(key=lambda tr: tr.start)
    return out
