"""A small hand-made town for the incident tests: a street grid cut by a river.

Five by five junctions 200 m apart; the river runs between rows 2 and 3 and only
the easternmost street (column 4) bridges it. So a unit just across the river
is near as the crow flies but far by road.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from citypilot.twin.geo import to_lonlat

SPACING_M = 200.0
SIZE = 5
BRIDGE_COLUMN = 4
MUNICIPALITY = "urn:ngsi-ld:Municipality:riverton"


def node(col: int, row: int) -> int:
    """Index of the junction at column ``col`` and row ``row``."""
    return row * SIZE + col


def lonlat(col: float, row: float) -> tuple[float, float]:
    """Longitude and latitude of a point of the grid."""
    lon, lat = to_lonlat(col * SPACING_M, row * SPACING_M)
    return round(float(lon), 6), round(float(lat), 6)


def write_graph_files(
    folder: Path, points: list[tuple[float, float]], edges: list[tuple[int, int]]
) -> None:
    """Write a two-way local street graph as the server reads it (nodes.csv, edges.csv):
    junction ``k`` at ``points[k]`` (lon, lat), one street per (from, to) of ``edges``."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "nodes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "lon", "lat"])
        w.writerows([k, lon, lat] for k, (lon, lat) in enumerate(points))
    header = ["edge", "from", "to", "class", "oneway", "maxspeed", "lanes", "bus_lane"]
    with (folder / "edges.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*header, "bridge", "length_m", "name"])
        for k, (a, b) in enumerate(edges):
            (x0, y0), (x1, y1) = points[a], points[b]
            dx = (x1 - x0) * 111_320 * math.cos(math.radians((y0 + y1) / 2))
            metres = round(math.hypot(dx, (y1 - y0) * 110_540), 1)
            w.writerow([k, a, b, "local", 0, 50, 1, 0, 0, metres, f"Street {k}"])


def write_graph(folder: Path) -> list[tuple[int, int]]:
    """Write the grid's nodes.csv and edges.csv; returns the (from, to) of each edge."""
    points = [lonlat(col, row) for row in range(SIZE) for col in range(SIZE)]
    edges = []
    for row in range(SIZE):
        for col in range(SIZE):
            if col + 1 < SIZE:
                edges.append((node(col, row), node(col + 1, row)))
            if row + 1 < SIZE and (row != 2 or col == BRIDGE_COLUMN):
                edges.append((node(col, row), node(col, row + 1)))
    write_graph_files(folder, points, edges)
    return edges


def municipality() -> dict[str, Any]:
    """The town's municipality, a square around the grid."""
    a, b = lonlat(-1, -1), lonlat(SIZE, SIZE)
    ring = [[a[0], a[1]], [b[0], a[1]], [b[0], b[1]], [a[0], b[1]], [a[0], a[1]]]
    return {
        "id": MUNICIPALITY,
        "type": "Municipality",
        "name": "Riverton",
        "location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [ring]}},
    }


def unit(local: str, unit_type: str, col: float, row: float, **attrs: Any) -> dict[str, Any]:
    """A police unit or technical vehicle parked at a point of the grid."""
    lon, lat = lonlat(col, row)
    doc: dict[str, Any] = {
        "id": f"urn:ngsi-ld:{unit_type}:{local}",
        "type": unit_type,
        "callSign": {"type": "Property", "value": local},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "refMunicipality": {"type": "Relationship", "object": MUNICIPALITY},
    }
    doc.update({k: {"type": "Property", "value": v} for k, v in attrs.items()})
    return doc


def signal(local: str, col: float, row: float) -> dict[str, Any]:
    """A traffic signal at a junction of the grid."""
    lon, lat = lonlat(col, row)
    return {
        "id": f"urn:ngsi-ld:TrafficSignal:{local}",
        "type": "TrafficSignal",
        "status": {"type": "Property", "value": "ok"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "refMunicipality": {"type": "Relationship", "object": MUNICIPALITY},
    }
