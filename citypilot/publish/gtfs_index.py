"""The static GTFS read into lookups the real-time feeds join to.

Each trip keeps its route, direction, stops and scheduled times (seconds after the
service day's midnight, as GTFS counts them); stops keep their position. Read once
per feed (the files are only rewritten by the demo).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TripTimes:
    """One trip of the timetable: its stops in order and their scheduled times."""

    trip_id: str
    route_id: str
    direction_id: int
    service_id: str
    shape_id: str
    stop_ids: tuple[str, ...]
    sequences: tuple[int, ...]
    arrivals: tuple[int, ...]
    departures: tuple[int, ...]

    def position_of(self, stop_id: str) -> int | None:
        """Index of ``stop_id`` in the trip (its first visit), or None."""
        try:
            return self.stop_ids.index(stop_id)
        except ValueError:
            return None


@dataclass(frozen=True)
class StopPlace:
    """A stop (platform or station) and where it is."""

    stop_id: str
    name: str
    lon: float
    lat: float
    parent: str


@dataclass
class StaticIndex:
    """Trips, stops and routes of a GTFS feed by id."""

    trips: dict[str, TripTimes]
    stops: dict[str, StopPlace]
    routes: dict[str, str]  # route_id → short name
    route_type: dict[str, int]
    timezone: str  # the agency's, in which the timetable's times are counted
    shapes: dict[str, list[tuple[float, float]]]  # shape_id → (lon, lat) points in order


def _seconds(hhmmss: str) -> int:
    h, m, s = hhmmss.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def load_index(folder: Path) -> StaticIndex:
    """Read ``agency``, ``stops``, ``routes``, ``trips``, ``stop_times`` and ``shapes`` of
    the feed in ``folder``."""
    stops = {
        r["stop_id"]: StopPlace(
            r["stop_id"],
            r["stop_name"],
            float(r["stop_lon"]),
            float(r["stop_lat"]),
            r.get("parent_station", ""),
        )
        for r in _rows(folder / "stops.txt")
    }
    routes_rows = _rows(folder / "routes.txt")
    times: dict[str, list[tuple[int, str, int, int]]] = {}
    with (folder / "stop_times.txt").open(newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)  # the largest file: by column position, not as dicts
        col = {name: k for k, name in enumerate(next(rows))}
        trip, seq, stop = col["trip_id"], col["stop_sequence"], col["stop_id"]
        arr, dep = col["arrival_time"], col["departure_time"]
        for r in rows:
            times.setdefault(r[trip], []).append(
                (int(r[seq]), r[stop], _seconds(r[arr]), _seconds(r[dep]))
            )
    trips = {}
    for r in _rows(folder / "trips.txt"):
        rows = sorted(times.get(r["trip_id"], ()))
        trips[r["trip_id"]] = TripTimes(
            r["trip_id"],
            r["route_id"],
            int(r.get("direction_id") or 0),
            r["service_id"],
            r.get("shape_id", ""),
            tuple(x[1] for x in rows),
            tuple(x[0] for x in rows),
            tuple(x[2] for x in rows),
            tuple(x[3] for x in rows),
        )
    return StaticIndex(
        trips,
        stops,
        {r["route_id"]: r["route_short_name"] for r in routes_rows},
        {r["route_id"]: int(r["route_type"]) for r in routes_rows},
        _rows(folder / "agency.txt")[0]["agency_timezone"],
        _shapes(folder / "shapes.txt"),
    )


def _shapes(path: Path) -> dict[str, list[tuple[float, float]]]:
    points: dict[str, list[tuple[int, float, float]]] = {}
    if path.is_file():
        for r in _rows(path):
            points.setdefault(r["shape_id"], []).append(
                (int(r["shape_pt_sequence"]), float(r["shape_pt_lon"]), float(r["shape_pt_lat"]))
            )
    return {k: [(lon, lat) for _, lon, lat in sorted(v)] for k, v in points.items()}
