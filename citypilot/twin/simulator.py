"""The live simulator: every device of a generated city, reporting as time passes.

``Simulator(city, seed, start, speed)`` builds one model per device (see
:mod:`citypilot.twin.devices`) and a single time-ordered schedule.
``step(sim_time)`` runs every report due up to ``sim_time`` and returns the
compact observations, in time order::

    {"id": "urn:ngsi-ld:Streetlight:000042", "type": "Streetlight",
     "observedAt": "2026-11-20T17:10:00.000Z", "attrs": {"powerState": "on", ...}}

The output depends only on the city, the seed, the start and the scenario
events, not on how time is sliced into steps (as long as no step jumps more
than MAX_CATCHUP_S). The simulator never talks to a store: clients send the
observations (:mod:`citypilot.twin.clients`).

Commands hook in through :meth:`Simulator.device` and :meth:`Simulator.wake`
(see :mod:`citypilot.twin.device_commands`): the command changes the model's
documented state (and may set ``pending_attrs``, reported with the next report),
and the device, woken, reports its new state at once.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from citypilot.model.timeutil import format_instant
from citypilot.twin.city import City
from citypilot.twin.devices.base import DeviceModel, SimContext
from citypilot.twin.devices.buildings import AccessPointModel, BuildingModel
from citypilot.twin.devices.car_parks import OffStreetParkingModel
from citypilot.twin.devices.lighting import Cabinet, StreetlightModel
from citypilot.twin.devices.parking import BikeStationModel, DeliveryAreaModel, ParkingSpotModel
from citypilot.twin.devices.sensors import (
    RIVER_LAG_S,
    AirQualityModel,
    WaterLevelModel,
    WaterQualityModel,
)
from citypilot.twin.devices.traffic import CameraModel, TrafficSignalModel
from citypilot.twin.devices.units import RoadNet, UnitModel
from citypilot.twin.devices.vehicles import Track, TransitVehicleModel, build_blocks
from citypilot.twin.environment import Accident, Environment, Fire, RainEpisode
from citypilot.twin.geo import to_lonlat, to_metric
from citypilot.twin.priority_rehearsal import Rehearsal, rehearse
from citypilot.twin.roads import RING, Router
from citypilot.twin.scenario import CitizenReport, ResolvedEvent, Scenario
from citypilot.twin.street_assets import LIGHTS_PER_CABINET
from citypilot.twin.transit import rerouted

MAX_CATCHUP_S = 3600.0  # a step never replays more than this much simulated time
CAMERA_REACH_M = 250.0  # a delivery bay is watched by a camera this close
FIRE_CAMERA_M = 500.0


def _epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("simulated times must be timezone-aware datetimes")
        return value.timestamp()
    return float(value)


def _doc_xy(doc: dict[str, Any]) -> tuple[float, float]:
    geom = doc["location"]["value"]
    if geom["type"] == "Point":
        lon, lat = geom["coordinates"]
    else:
        ring = geom["coordinates"][0]
        lon = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
        lat = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
    x, y = to_metric(lon, lat)
    return float(x), float(y)


class Simulator:
    """Simulates every device of ``city`` from ``start`` on, deterministically for ``seed``.

    ``speed`` (simulated seconds per real second) is used by ``run_simulation``;
    ``interval_factor`` < 1 makes periodic reports more frequent (load tests);
    ``snapshot`` makes every device report its full state at ``start``; ``types``
    limits the simulation to some entity types (tests, partial gateways).
    """

    def __init__(
        self,
        city: City,
        seed: int | None = None,
        start: datetime | float = 0.0,
        speed: float = 1.0,
        *,
        scenario: Scenario | None = None,
        snapshot: bool = True,
        interval_factor: float = 1.0,
        types: Collection[str] | None = None,
    ) -> None:
        if speed <= 0 or interval_factor <= 0:
            raise ValueError("speed and interval_factor must be positive")
        self.city = city
        self.seed = city.seed if seed is None else seed
        self.start = _epoch(start)
        self.speed = speed
        self.now = self.start
        self.env = Environment(self.seed, city.scale)
        self.ctx = SimContext(
            env=self.env,
            rng=random.Random(f"{self.seed}:{self.start:.3f}"),
            seed=self.seed,
            interval_factor=interval_factor,
            wake=self._wake_index,
            notify=self._notify,
        )
        self.devices: list[DeviceModel] = []
        self._by_id: dict[str, int] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._version: list[int] = []
        self._events: list[ResolvedEvent] = []
        self._signals: list[TrafficSignalModel] | None = None
        #: What citizens report to the 311 desk as events happen (drained by the demo).
        self.citizen_reports: list[CitizenReport] = []
        self._event_pos = 0
        self.published = 0
        wanted = None if types is None else set(types)
        if wanted is not None and "AccessPoint" in wanted:
            wanted.add("Building")  # badge readers belong to their building's model
        self._types = None if wanted is None else frozenset(wanted)
        self._tracks: dict[tuple[int, int], Track] = {}  # (route, direction) → what it drives
        self._build()
        for dev in self.devices:
            due = dev.first_due(self.start, self.ctx)
            heapq.heappush(self._heap, (self.start if snapshot else due, dev.index, 0))
        if scenario is not None:
            self.add_scenario(scenario)

    # -- construction -------------------------------------------------------------------
    def _add(self, device: DeviceModel) -> DeviceModel:
        device.index = len(self.devices)
        self.devices.append(device)
        self._version.append(0)
        self._by_id[device.entity_id] = device.index
        return device

    def _build(self) -> None:
        city, ctx = self.city, self.ctx
        land = city.land
        core = land.core_radius
        docs_by_type: dict[str, list[dict[str, Any]]] = {}
        for doc in city.entities:
            if self._types is None or doc["type"] in self._types:
                docs_by_type.setdefault(doc["type"], []).append(doc)

        buildings: dict[str, BuildingModel] = {}
        for doc in docs_by_type.get("Building", []):
            x, y = _doc_xy(doc)
            buildings[doc["id"]] = self._add(BuildingModel(doc["id"], x, y, doc, ctx))  # type: ignore[assignment]
        doors: dict[str, int] = {}
        for doc in docs_by_type.get("AccessPoint", []):
            ref = doc["refBuilding"]["object"]
            doors[ref] = doors.get(ref, 0) + 1
        for doc in docs_by_type.get("AccessPoint", []):
            ref = doc["refBuilding"]["object"]
            x, y = _doc_xy(doc)
            self._add(
                AccessPointModel(doc["id"], x, y, buildings[ref], doors[ref], ref.rsplit(":", 1)[1])
            )

        cabinets: list[Cabinet] = []
        for k, doc in enumerate(docs_by_type.get("Streetlight", [])):
            if k % LIGHTS_PER_CABINET == 0:
                cabinets.append(Cabinet())
            x, y = _doc_xy(doc)
            light = self._add(
                StreetlightModel(doc["id"], x, y, doc, cabinets[-1], ctx.rng.uniform(-300.0, 300.0))
            )
            cabinets[-1].members.append(light.index)

        for doc in docs_by_type.get("TrafficSignal", []):
            x, y = _doc_xy(doc)
            self._add(TrafficSignalModel(doc["id"], x, y, doc, ctx))
        cameras: list[CameraModel] = []
        for doc in docs_by_type.get("Camera", []):
            x, y = _doc_xy(doc)
            cameras.append(self._add(CameraModel(doc["id"], x, y, doc, ctx)))  # type: ignore[arg-type]
        self._cameras = cameras
        cam_xy = np.array([(c.x, c.y) for c in cameras]) if cameras else np.zeros((0, 2))

        self._add_transit()
        for doc in docs_by_type.get("BikeStation", []):
            x, y = _doc_xy(doc)
            self._add(BikeStationModel(doc["id"], x, y, doc, math.hypot(x, y) < 0.4 * core))
        for doc in docs_by_type.get("ParkingSpot", []):
            x, y = _doc_xy(doc)
            self._add(ParkingSpotModel(doc["id"], x, y, doc, math.hypot(x, y) < 0.6 * core))
        for doc in docs_by_type.get("DeliveryArea", []):
            x, y = _doc_xy(doc)
            camera = None
            if len(cam_xy):
                d = np.hypot(cam_xy[:, 0] - x, cam_xy[:, 1] - y)
                k = int(np.argmin(d))
                camera = cameras[k].index if d[k] < CAMERA_REACH_M else None
            self._add(DeliveryAreaModel(doc["id"], x, y, doc, camera))
        for doc in docs_by_type.get("OffStreetParking", []):
            x, y = _doc_xy(doc)
            self._add(OffStreetParkingModel(doc["id"], x, y, doc))
        for doc in docs_by_type.get("AirQualityObserved", []):
            x, y = _doc_xy(doc)
            self._add(AirQualityModel(doc["id"], x, y, doc))
        rx0, _, rx1, _ = land.river.bounds
        for doc in docs_by_type.get("WaterLevelSensor", []):
            x, y = _doc_xy(doc)
            lag = RIVER_LAG_S * min(1.0, max(0.0, (x - rx0) / max(rx1 - rx0, 1.0)))
            self._add(WaterLevelModel(doc["id"], x, y, doc, lag))
        for doc in docs_by_type.get("WaterQualityObserved", []):
            x, y = _doc_xy(doc)
            lag = RIVER_LAG_S * min(1.0, max(0.0, (x - rx0) / max(rx1 - rx0, 1.0)))
            self._add(WaterQualityModel(doc["id"], x, y, doc, lag))
        self._add_units(docs_by_type)

    def _add_transit(self) -> None:
        transit = self.city.transit
        graph = self.city.roads
        tracks = self._tracks
        tracks.update(
            {
                (r, p.direction): Track(graph, p)
                for r, route in enumerate(transit.routes)
                for p in route.patterns
            }
        )
        blocks = build_blocks(transit)
        wanted = [t for t in ("Tram", "Bus") if self._types is None or t in self._types]
        docs = {d["id"]: d for t in wanted for d in self.city.of_type(t)}
        for vtype, local, _route in transit.vehicles:
            eid = f"urn:ngsi-ld:{vtype}:{local}"
            if eid not in docs:
                continue
            x, y = _doc_xy(docs[eid])
            self._add(
                TransitVehicleModel(
                    eid,
                    vtype,
                    (x, y),
                    blocks.get((vtype, local), {}),
                    transit.routes,
                    tracks,
                    self.ctx,
                )
            )

    def _add_units(self, docs_by_type: dict[str, list[dict[str, Any]]]) -> None:
        graph = self.city.roads
        units = docs_by_type.get("PoliceUnit", []) + docs_by_type.get("TechnicalVehicle", [])
        if not units:
            return
        cost = graph.length / np.maximum(graph.maxspeed, 5) * 3.6
        net = RoadNet(graph, Router(graph, cost))
        usable = np.zeros(graph.node_count, dtype=bool)
        usable[graph.u[graph.cls != RING]] = True
        for slot, doc in enumerate(units):
            home = self.city.entity(doc["refHomeBase"]["object"])
            bx, by = _doc_xy(home)
            x, y = bx, by - 10.0
            node = graph.nearest_node(bx, by, usable)
            kind = doc.get("vehicleType", {}).get("value", "police")
            self._add(UnitModel(doc["id"], doc["type"], x, y, kind, net, node, slot))

    # -- scheduling -----------------------------------------------------------------------
    def _push(self, index: int, at: float) -> None:
        heapq.heappush(self._heap, (at, index, self._version[index]))

    def _wake_index(self, index: int, at: float) -> None:
        """Reschedule device ``index`` to report at ``at`` (its pending report is dropped)."""
        self._version[index] += 1
        self._push(index, max(at, self.now))

    def _notify(self, camera_index: int, at: float, event: dict[str, Any]) -> None:
        camera = self.devices[camera_index]
        if isinstance(camera, CameraModel):
            camera.push_event(at, event)
            self._wake_index(camera_index, at)

    def device(self, entity_id: str) -> DeviceModel:
        """The model of a simulated device (KeyError for an entity that is not simulated)."""
        return self.devices[self._by_id[entity_id]]

    def reroute(
        self,
        route_id: str,
        direction: int,
        path: tuple[Sequence[int], Sequence[int], Sequence[str]] | None,
    ) -> None:
        """Run one direction of a line along ``path`` (nodes, edges, stops served) from now
        on — a detour or a short turn — or along its own route again (None).
        KeyError for a route the city lacks."""
        routes = self.city.transit.routes
        r = next((k for k, route in enumerate(routes) if route.route_id == route_id), None)
        if r is None:
            raise KeyError(f"there is no route {route_id!r}")
        pattern = routes[r].patterns[direction]
        if path is not None:
            pattern = rerouted(self.city.roads, pattern, *path)
        self._tracks[(r, direction)] = Track(self.city.roads, pattern)

    def drive_unit(self, entity_id: str, nodes: list[int], incident: str) -> Rehearsal:
        """Send a unit along a route of road-graph nodes to an incident (KeyError if
        unknown); returns the same drive rehearsed with and without signal priority."""
        dev = self.device(entity_id)
        if not isinstance(dev, UnitModel):
            raise KeyError(f"{entity_id} is not a unit")
        if self._signals is None:
            self._signals = [d for d in self.devices if isinstance(d, TrafficSignalModel)]
        rehearsal = rehearse(dev, nodes, self._signals, self.now, self.ctx)
        dev.follow(nodes, incident)
        self.wake(entity_id)
        return rehearsal

    def wake(self, entity_id: str, at: float | None = None) -> None:
        """Make a device report at ``at`` (default: the current simulated time)."""
        self._wake_index(self._by_id[entity_id], self.now if at is None else at)

    # -- scenario events -------------------------------------------------------------------
    def add_scenario(self, scenario: Scenario) -> list[ResolvedEvent]:
        """Schedule every event of ``scenario`` relative to the simulation start."""
        resolved = scenario.resolve(self.city, self.start)
        for ev in resolved:
            self.inject(ev)
        return resolved

    def inject(self, event: ResolvedEvent) -> None:
        """Schedule one event (applied when simulated time reaches ``event.t``)."""
        pending = self._events[self._event_pos :]
        pending.append(event)
        pending.sort(key=lambda e: e.t)
        self._events = pending
        self._event_pos = 0

    def _apply(self, ev: ResolvedEvent) -> None:
        env = self.env
        p = ev.params
        duration = float(p.get("duration_s", 3600.0))
        if ev.kind == "heavyRain":
            env.extra_rain.append(
                RainEpisode(ev.t, ev.t + duration, float(p.get("intensity", 20.0)))
            )
            for dev in self.devices:
                if isinstance(dev, WaterLevelModel):
                    self._wake_index(dev.index, ev.t)
        elif ev.kind == "roadAccident":
            assert ev.x is not None and ev.y is not None
            radius = float(p.get("radius", 300.0))
            env.accidents.append(
                Accident(ev.x, ev.y, radius, ev.t, ev.t + duration, float(p.get("severity", 0.7)))
            )
            for cam in self._cameras_near(ev.x, ev.y, radius):
                self._notify(
                    cam.index,
                    ev.t,
                    {"kind": "roadAccident", "severity": float(p.get("severity", 0.7))},
                )
        elif ev.kind == "fireReport":
            assert ev.x is not None and ev.y is not None
            env.fires.append(Fire(ev.x, ev.y, ev.t, ev.t + duration, int(p.get("crowd", 120))))
            if p.get("report311", True):
                lon, lat = to_lonlat(ev.x, ev.y)
                self.citizen_reports.append(
                    CitizenReport(
                        ev.t,
                        "fire-smoke",
                        round(float(lon), 6),
                        round(float(lat), 6),
                        str(p.get("description", "Thick smoke coming out of a building")),
                        float(p.get("close_m", 0.0)),
                        duration,
                    )
                )
            for cam in self._cameras_near(ev.x, ev.y, FIRE_CAMERA_M):
                self._notify(cam.index, ev.t, {"kind": "crowdGathering"})
        elif ev.kind == "deviceFault":
            index = self._by_id.get(str(p["entity"]))
            if index is None:
                return
            self.devices[index].fault = str(p.get("status", "fault"))
            self._wake_index(index, ev.t)
            if duration > 0:
                self.inject(
                    ResolvedEvent(
                        ev.t + duration, "clearFault", None, None, {"entity": p["entity"]}
                    )
                )
        elif ev.kind == "clearFault":
            index = self._by_id.get(str(p["entity"]))
            if index is not None:
                self.devices[index].fault = None
                self._wake_index(index, ev.t)

    def _cameras_near(self, x: float, y: float, radius: float) -> list[CameraModel]:
        return [c for c in self._cameras if math.hypot(c.x - x, c.y - y) < radius]

    # -- running ---------------------------------------------------------------------------
    def step(self, sim_time: datetime | float) -> list[dict[str, Any]]:
        """Run every report and event due up to ``sim_time``; return the observations."""
        t_end = _epoch(sim_time)
        floor = t_end - MAX_CATCHUP_S
        out: list[dict[str, Any]] = []
        heap, devices, version, ctx = self._heap, self.devices, self._version, self.ctx
        events = self._events
        while True:
            next_event = events[self._event_pos].t if self._event_pos < len(events) else math.inf
            next_due = heap[0][0] if heap else math.inf
            if min(next_event, next_due) > t_end:
                break
            if next_event <= next_due:
                ev = events[self._event_pos]
                self._event_pos += 1
                self.now = max(self.now, ev.t)
                self._apply(ev)
                events = self._events
                continue
            due, index, ver = heapq.heappop(heap)
            if ver != version[index]:
                continue
            at = max(due, floor)
            self.now = max(self.now, at)
            dev = devices[index]
            attrs, nxt = dev.report(at, ctx)
            if dev.pending_attrs:  # the state a command changed, reported at once
                attrs = {**(attrs or {}), **dev.pending_attrs}
                dev.pending_attrs = None
            if attrs:
                out.append(
                    {
                        "id": dev.entity_id,
                        "type": dev.entity_type,
                        "observedAt": format_instant(at),
                        "attrs": attrs,
                    }
                )
            heapq.heappush(heap, (max(nxt, at + 0.001), index, ver))
        self.now = max(self.now, t_end)
        self.published += len(out)
        return out

    def run_until(self, sim_time: datetime | float, step_s: float = 60.0) -> list[dict[str, Any]]:
        """Step to ``sim_time`` in ``step_s`` slices; every observation (tests, replays)."""
        t_end = _epoch(sim_time)
        out: list[dict[str, Any]] = []
        t = self.now
        while t < t_end:
            t = min(t + step_s, t_end)
            out.extend(self.step(t))
        return out


__all__ = ["MAX_CATCHUP_S", "Simulator"]
