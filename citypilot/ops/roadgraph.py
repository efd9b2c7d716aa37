"""The routable road graph: nodes and street segments as the demo writes them.

``graph/nodes.csv`` (node, lon, lat) and ``graph/edges.csv`` (edge, from, to, class,
oneway, maxspeed, lanes, bus_lane, bridge, length_m, name) in the data directory
become a :class:`RoadNetwork`: parallel numpy arrays of nodes and of *arcs* (one
per drivable direction: a two-way street gives two arcs, a one-way street one),
each arc with its free-flow travel time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citypilot.twin.geo import to_metric

#: Share of the speed limit a vehicle keeps on average on each road class
#: (junctions, crossings and bends slow local streets most).
CLASS_SPEED_FACTOR = {"local": 0.6, "arterial": 0.75, "ring": 0.9}
DEFAULT_SPEED_KMH = 50.0
MIN_SPEED_KMH = 5.0


@dataclass
class RoadNetwork:
    """Nodes (lon/lat and metric x/y) and directed arcs with length and travel time."""

    lon: np.ndarray
    lat: np.ndarray
    x: np.ndarray
    y: np.ndarray
    arc_from: np.ndarray
    arc_to: np.ndarray
    arc_edge: np.ndarray  # the street segment (edges.csv row) an arc drives along
    arc_length: np.ndarray  # metres
    arc_seconds: np.ndarray  # free-flow travel time
    edge_names: list[str]
    edge_class: list[str]

    @property
    def node_count(self) -> int:
        """Number of nodes."""
        return len(self.lon)

    @property
    def edge_count(self) -> int:
        """Number of street segments (a two-way segment counts once)."""
        return len(self.edge_names)

    def nearest_node(self, lon: float, lat: float) -> tuple[int, float]:
        """The node nearest a position and its distance in metres."""
        x, y = to_metric(lon, lat)
        d2 = (self.x - x) ** 2 + (self.y - y) ** 2
        k = int(np.argmin(d2))
        return k, float(np.sqrt(d2[k]))

    def edges_within(self, lon: float, lat: float, radius_m: float) -> np.ndarray:
        """The street segments passing within ``radius_m`` of a position."""
        px, py = to_metric(lon, lat)
        e = self.edge_count  # the first arcs are the segments, in their own direction
        ax, ay = self.x[self.arc_from[:e]], self.y[self.arc_from[:e]]
        dx, dy = self.x[self.arc_to[:e]] - ax, self.y[self.arc_to[:e]] - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0, 1)
        d2 = (ax + t * dx - px) ** 2 + (ay + t * dy - py) ** 2
        return np.nonzero(d2 <= radius_m**2)[0]


def travel_seconds(length_m: np.ndarray, maxspeed_kmh: np.ndarray, cls: list[str]) -> np.ndarray:
    """Free-flow seconds to drive each segment: its length at the class share of its limit."""
    factor = np.array([CLASS_SPEED_FACTOR.get(c, 0.6) for c in cls])
    limit = np.where(maxspeed_kmh > 0, maxspeed_kmh, DEFAULT_SPEED_KMH)
    kmh = np.maximum(limit * factor, MIN_SPEED_KMH)
    return length_m / (kmh / 3.6)


def graph_present(folder: str | Path) -> bool:
    """Whether ``folder`` holds ``nodes.csv`` and ``edges.csv``."""
    base = Path(folder)
    return (base / "nodes.csv").is_file() and (base / "edges.csv").is_file()


def load_network(folder: str | Path) -> RoadNetwork:
    """Read ``nodes.csv`` and ``edges.csv`` of ``folder`` (ValueError naming a bad row)."""
    base = Path(folder)
    with (base / "nodes.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    n = len(rows)
    lon = np.empty(n)
    lat = np.empty(n)
    for row in rows:
        k = int(row["node"])
        if not 0 <= k < n:
            raise ValueError(f"nodes.csv: node {k} outside 0..{n - 1}")
        lon[k], lat[k] = float(row["lon"]), float(row["lat"])
    with (base / "edges.csv").open(newline="", encoding="utf-8") as fh:
        edges = list(csv.DictReader(fh))
    u = np.array([int(e["from"]) for e in edges], dtype=np.int64)
    v = np.array([int(e["to"]) for e in edges], dtype=np.int64)
    if len(edges) and (min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= n):
        raise ValueError("edges.csv: an edge names a node that nodes.csv lacks")
    oneway = np.array([e["oneway"] == "1" for e in edges], dtype=bool)
    length = np.array([float(e["length_m"]) for e in edges])
    maxspeed = np.array([float(e["maxspeed"] or 0) for e in edges])
    cls = [e["class"] for e in edges]
    seconds = travel_seconds(length, maxspeed, cls)
    two = np.nonzero(~oneway)[0]
    x, y = to_metric(lon, lat)
    return RoadNetwork(
        lon=lon,
        lat=lat,
        x=np.asarray(x),
        y=np.asarray(y),
        arc_from=np.concatenate([u, v[two]]),
        arc_to=np.concatenate([v, u[two]]),
        arc_edge=np.concatenate([np.arange(len(edges)), two]),
        arc_length=np.concatenate([length, length[two]]),
        arc_seconds=np.concatenate([seconds, seconds[two]]),
        edge_names=[e["name"] for e in edges],
        edge_class=cls,
    )
