"""Generate the demo metropole: ``generate_city(seed, scale) -> City``.

The generator is deterministic: it draws from one ``numpy.random.default_rng(seed)``
in a fixed order, never iterates sets, never reads the clock, so the same seed
and scale give the same city byte for byte. At scale 1.0 the city is modelled
on a metropole of about 260,000 inhabitants in 23 municipalities; ``scale``
multiplies population, area and every asset count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from citypilot.model.ids import entity_id
from citypilot.twin import facilities, street_assets
from citypilot.twin.car_parks import place_car_parks
from citypilot.twin.entities import (
    DEPARTMENTS,
    DocFactory,
    geo,
    insee_code,
    install_dates,
    prop,
    rel,
)
from citypilot.twin.facilities import BuildingSite
from citypilot.twin.geo import CENTRE_LAT, CENTRE_LON, geometry_to_lonlat, to_lonlat
from citypilot.twin.land import Land, build_land
from citypilot.twin.names import METROPOLE_NAME
from citypilot.twin.roads import RoadGraph, build_roads
from citypilot.twin.transit import Transit, build_transit

GENERATOR_VERSION = 1
#: Order of entity types in ``City.entities`` (and so in entities.ndjson).
TYPE_ORDER = (
    "Municipality",
    "Zone",
    "Building",
    "AccessPoint",
    "Streetlight",
    "TrafficSignal",
    "Camera",
    "Tram",
    "Bus",
    "BikeStation",
    "ParkingSpot",
    "DeliveryArea",
    "OffStreetParking",
    "AirQualityObserved",
    "WaterLevelSensor",
    "WaterQualityObserved",
    "PoliceUnit",
    "TechnicalVehicle",
)


@dataclass
class City:
    """A generated metropole: land, roads, transit, buildings and every entity document."""

    seed: int
    scale: float
    name: str
    land: Land
    roads: RoadGraph
    transit: Transit
    buildings: list[BuildingSite]
    entities: list[dict[str, Any]]
    signal_nodes: np.ndarray
    _by_id: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def entity(self, entity_id_: str) -> dict[str, Any]:
        """The entity document with this id (KeyError if there is none)."""
        if not self._by_id:
            self._by_id = {e["id"]: e for e in self.entities}
        return self._by_id[entity_id_]

    def of_type(self, type_name: str) -> list[dict[str, Any]]:
        """Entity documents of one type, in id order."""
        return [e for e in self.entities if e["type"] == type_name]

    def counts(self) -> dict[str, int]:
        """Number of entities per type, in TYPE_ORDER."""
        out = dict.fromkeys(TYPE_ORDER, 0)
        for e in self.entities:
            out[e["type"]] += 1
        return out

    def bbox(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat) of the metropole's boundary."""
        minx, miny, maxx, maxy = self.land.boundary.bounds
        lon0, lat0 = to_lonlat(minx, miny)
        lon1, lat1 = to_lonlat(maxx, maxy)
        return (
            round(float(lon0), 5),
            round(float(lat0), 5),
            round(float(lon1), 5),
            round(float(lat1), 5),
        )

    def metadata(self) -> dict[str, Any]:
        """Summary written as city.json: seed, scale, centre, bbox, counts, population."""
        return {
            "name": f"Métropole de {self.name}",
            "generator": "citypilot.twin",
            "generatorVersion": GENERATOR_VERSION,
            "seed": self.seed,
            "scale": self.scale,
            "centre": [CENTRE_LON, CENTRE_LAT],
            "bbox": list(self.bbox()),
            "timezone": "Europe/Paris",
            "population": int(self.land.muni_population.sum()),
            "municipalities": len(self.land.muni_names),
            "roadNodes": self.roads.node_count,
            "roadEdges": self.roads.edge_count,
            "roadLengthKm": round(float(self.roads.length.sum()) / 1000.0, 1),
            "transitRoutes": len(self.transit.routes),
            "transitStops": len(self.transit.stops),
            "transitTrips": len(self.transit.trips),
            "entities": self.counts(),
        }


def generate_city(seed: int, scale: float = 1.0) -> City:
    """Generate the metropole for ``seed`` at ``scale`` (1.0 ≈ 260,000 inhabitants)."""
    if not (0.01 <= scale <= 20.0) or not math.isfinite(scale):
        raise ValueError(f"scale must be between 0.01 and 20, not {scale}")
    rng = np.random.default_rng(seed)
    land = build_land(rng, scale)
    roads = build_roads(rng, land)
    transit = build_transit(rng, land, roads, scale)
    factory = DocFactory(land, roads, seed)

    buildings, sites = facilities.place_buildings(rng, factory, scale, transit)
    access = facilities.place_access_points(rng, factory, sites)
    lights = street_assets.place_streetlights(rng, factory, scale)
    signals, signal_nodes = street_assets.place_traffic_signals(rng, factory, scale)
    building_xy = np.array([(s.x, s.y) for s in sites])
    cameras = street_assets.place_cameras(rng, factory, scale, signal_nodes, transit, building_xy)
    bikes = street_assets.place_bike_stations(rng, factory, scale, transit)
    parking = street_assets.place_parking(rng, factory, scale)
    delivery = street_assets.place_delivery_areas(rng, factory, scale)
    air = facilities.place_air_stations(rng, factory, scale, signal_nodes)
    water = facilities.place_water_sensors(rng, factory, scale)
    units = facilities.place_units(rng, factory, scale, sites)
    vehicles = _transit_vehicles(rng, factory, transit)
    car_parks = place_car_parks(seed, factory, scale)  # their own random stream

    entities = (
        _municipalities(land)
        + _zones(land, factory)
        + buildings
        + access
        + lights
        + signals
        + cameras
        + vehicles
        + bikes
        + parking
        + delivery
        + car_parks
        + water_sorted(air, water)
        + units
    )
    return City(
        seed=seed,
        scale=scale,
        name=METROPOLE_NAME,
        land=land,
        roads=roads,
        transit=transit,
        buildings=sites,
        entities=entities,
        signal_nodes=signal_nodes,
    )


def water_sorted(air: list[dict[str, Any]], water: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Air-quality then water-level then water-quality documents (TYPE_ORDER)."""
    rank = {t: i for i, t in enumerate(TYPE_ORDER)}
    return sorted(air + water, key=lambda d: (rank[d["type"]], d["id"]))


def _municipalities(land: Land) -> list[dict[str, Any]]:
    out = []
    for m, poly in enumerate(land.muni_polygons):
        out.append(
            {
                "id": entity_id("Municipality", f"{m + 1:02d}"),
                "type": "Municipality",
                "location": geo(geometry_to_lonlat(poly)),
                "name": prop(land.muni_names[m]),
                "department": prop(DEPARTMENTS["Municipality"]),
                "population": prop(int(land.muni_population[m])),
                "areaServed": prop(round(poly.area / 1e6, 2)),
                "code": prop(insee_code(m)),
            }
        )
    return out


def _zones(land: Land, f: DocFactory) -> list[dict[str, Any]]:
    out = []
    for zone in land.zones + land.overlay_zones:
        out.append(
            {
                "id": entity_id("Zone", zone.local_id),
                "type": "Zone",
                "location": geo(geometry_to_lonlat(zone.polygon)),
                "name": prop(zone.name),
                "department": prop(DEPARTMENTS["Zone"]),
                "refMunicipality": rel(f.muni_ids[zone.municipality]),
                "category": prop(zone.category),
                "population": prop(zone.population),
            }
        )
    return out


def _transit_vehicles(
    rng: np.random.Generator, f: DocFactory, transit: Transit
) -> list[dict[str, Any]]:
    """Tram and Bus entities, parked at their depot."""
    docs: list[dict[str, Any]] = []
    for vtype in ("Tram", "Bus"):
        fleet = [(local, r) for t, local, r in transit.vehicles if t == vtype]
        if not fleet:
            continue
        n = len(fleet)
        depot_idx = [transit.vehicle_depot[f"{vtype}:{local}"] for local, _ in fleet]
        slot = np.arange(n)
        x = np.array([transit.depots[d][1] for d in depot_idx]) + (slot % 10) * 6.0 - 27.0
        y = np.array([transit.depots[d][2] for d in depot_idx]) + (slot // 10 % 8) * 5.0 - 20.0
        extra = [{"status": "atDepot", "speed": 0.0} for _ in fleet]
        names = [
            f"{'Rame' if vtype == 'Tram' else 'Bus'} {local} ({transit.depots[d][0]})"
            for (local, _), d in zip(fleet, depot_idx, strict=True)
        ]
        docs += f.docs(
            vtype,
            [local for local, _ in fleet],
            x,
            y,
            names,
            None,
            extra,
            "TRM" if vtype == "Tram" else "BUS",
            install_dates(rng, n, 2008, 2025),
        )
    return docs


__all__ = ["TYPE_ORDER", "City", "generate_city"]
