"""Stops of the transit network: platforms grouped into named stations.

A line stops at a road-graph node; each direction of travel there gets its own
*platform* (GTFS ``location_type`` 0) a few metres to the right of the road, and
the platforms of one place, whatever the line or mode, belong to one *station*
(``location_type`` 1) within :data:`STATION_RADIUS_M` of its first node. A
station is named after its place (a town hall) or its streets — the cross street,
then the pair of streets, then either with the municipality, then the street and
a lieu-dit (a hamlet or field name) — and no two
stations share a name, so a name always means one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from citypilot.twin.land import Land
from citypilot.twin.names import LOCALITIES
from citypilot.twin.roads import RING, RoadGraph

STATION_RADIUS_M = 150.0
PLATFORM_OFFSET_M = 7.0
TOWN_HALL_RADIUS_M = 350.0
HEADINGS = "NESW"


@dataclass
class Stop:
    """A GTFS platform on a road-graph node, for one mode and one direction of travel."""

    stop_id: str
    name: str
    node: int
    x: float
    y: float
    station: str  # stop_id of the parent station
    platform_code: str


@dataclass
class Station:
    """A GTFS station: the place whose platforms share its name."""

    stop_id: str
    name: str
    x: float
    y: float


class StopPlacer:
    """Creates platforms and stations as the lines are laid, naming each station once."""

    def __init__(self, graph: RoadGraph, land: Land) -> None:
        self.graph = graph
        self.land = land
        self.stops: dict[str, Stop] = {}
        self.stations: dict[str, Station] = {}
        self._station_of_node: dict[int, str] = {}
        self._platforms: dict[str, int] = {}  # station → platforms so far
        self._names: set[str] = set()

    def platform(self, prefix: str, nodes: list[int], k: int, edges: list[int]) -> str:
        """The platform (created if new) where a line along ``nodes`` stops at ``nodes[k]``."""
        g = self.graph
        node = nodes[k]
        a, b = (nodes[k - 1], node) if k > 0 else (node, nodes[k + 1])
        dx, dy = float(g.x[b] - g.x[a]), float(g.y[b] - g.y[a])
        norm = math.hypot(dx, dy) or 1.0
        bearing = math.degrees(math.atan2(dx, dy)) % 360.0
        heading = HEADINGS[int((bearing + 45.0) % 360.0 // 90.0)]
        sid = f"{prefix}{node:06d}{heading}"
        if sid not in self.stops:
            station = self._station(node, edges[min(k, len(edges) - 1)])
            count = self._platforms.get(station, 0)
            self._platforms[station] = count + 1
            self.stops[sid] = Stop(
                sid,
                self.stations[station].name,
                node,
                float(g.x[node]) + PLATFORM_OFFSET_M * dy / norm,
                float(g.y[node]) - PLATFORM_OFFSET_M * dx / norm,
                station,
                _platform_code(count),
            )
        return sid

    def line_name(self, stop_ids: list[str]) -> str:
        """'First – Last': a line named after the stations at its ends."""
        return f"{self.stops[stop_ids[0]].name} – {self.stops[stop_ids[-1]].name}"

    def _station(self, node: int, edge: int) -> str:
        found = self._station_of_node.get(node)
        if found is None:
            x, y = float(self.graph.x[node]), float(self.graph.y[node])
            best, best_d = None, STATION_RADIUS_M
            for station in self.stations.values():
                d = math.hypot(station.x - x, station.y - y)
                if d <= best_d:
                    best, best_d = station.stop_id, d
            if best is None:
                best = f"ST{node:06d}"
                self.stations[best] = Station(best, self._name(node, edge), x, y)
            found = self._station_of_node[node] = best
        return found

    def _name(self, node: int, edge: int) -> str:
        g, land = self.graph, self.land
        x, y = float(g.x[node]), float(g.y[node])
        muni = int(land.municipality_of(np.array([x]), np.array([y]))[0])
        town = land.muni_names[muni]
        own = _short(g.way_names[g.way[edge]])
        touching = np.nonzero((g.u == node) | (g.v == node))[0]
        crosses = [
            _short(g.way_names[g.way[e]])
            for e in touching
            if g.way[e] != g.way[edge] and g.cls[e] != RING
        ]
        crosses = [c for c in dict.fromkeys(crosses) if c != own] or [own]
        candidates = []
        hall_x, hall_y = land.muni_xy[muni]
        if math.hypot(hall_x - x, hall_y - y) <= TOWN_HALL_RADIUS_M:
            candidates.append("Hôtel de Ville" if muni == 0 else f"{town} Mairie")
        candidates += crosses
        candidates += [f"{own} – {c}" for c in crosses if c != own]
        candidates += [f"{c} ({town})" for c in crosses]
        candidates += [f"{own} – {c} ({town})" for c in crosses if c != own]
        start = node % len(LOCALITIES)
        places = LOCALITIES[start:] + LOCALITIES[:start]
        candidates += [f"{own} – {p}" for p in places] + [f"{p} ({town})" for p in places]
        for name in candidates:
            if name not in self._names:
                self._names.add(name)
                return name
        n = 2
        while f"{candidates[0]} {n}" in self._names:
            n += 1
        self._names.add(f"{candidates[0]} {n}")
        return f"{candidates[0]} {n}"


def _platform_code(k: int) -> str:
    """A, B, …, Z, then AA, AB, …"""
    letters = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        letters = chr(ord("A") + r) + letters
    return letters


def _short(street: str) -> str:
    """'Rue Victor Hugo' → 'Victor Hugo'; 'Rue de la Gare' → 'Gare'."""
    rest = street.split(" ", 1)[1] if " " in street else street
    for article in ("de la ", "de l'", "des ", "du ", "de "):
        if rest.startswith(article):
            word = rest[len(article) :]
            return word[:1].upper() + word[1:]
    return rest
