"""The static GTFS as a journey planner reads it: the served zip, read back file by file."""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections import defaultdict
from datetime import date, timedelta

import partridge as ptg
import pytest

from citypilot.publish.gtfs_static import StaticFeed
from citypilot.twin import generate_city, write_gtfs
from citypilot.twin.geo import to_metric

from .conftest import SEED, local

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")


def _seconds(hhmmss: str) -> int:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return h * 3600 + m * 60 + s


@pytest.fixture(scope="module")
def feed_dir(small_city, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gtfs")
    write_gtfs(small_city, folder)
    return folder


@pytest.fixture(scope="module")
def tables(feed_dir) -> dict[str, list[dict[str, str]]]:
    """Every file of the served zip, as rows."""
    zipped = StaticFeed(feed_dir).zipped()
    assert zipped is not None
    with zipfile.ZipFile(io.BytesIO(zipped.data)) as zf:
        return {
            name.removesuffix(".txt"): list(csv.DictReader(io.StringIO(zf.read(name).decode())))
            for name in zf.namelist()
        }


def test_the_zip_holds_the_feed_files_and_is_the_same_bytes_each_time(feed_dir, tables):
    assert set(tables) >= {
        "agency",
        "stops",
        "routes",
        "trips",
        "stop_times",
        "calendar",
        "calendar_dates",
        "shapes",
        "feed_info",
    }
    assert StaticFeed(feed_dir).zipped() == StaticFeed(feed_dir).zipped()


def test_every_reference_resolves(tables):
    stops = {s["stop_id"]: s for s in tables["stops"]}
    stations = {k for k, s in stops.items() if s["location_type"] == "1"}
    platforms = {k for k, s in stops.items() if s["location_type"] == "0"}
    assert stations and platforms
    assert {s["parent_station"] for s in stops.values() if s["location_type"] == "0"} == stations
    assert all(not stops[k]["parent_station"] for k in stations)
    assert {r["agency_id"] for r in tables["routes"]} <= {a["agency_id"] for a in tables["agency"]}
    routes = {r["route_id"] for r in tables["routes"]}
    services = {c["service_id"] for c in tables["calendar"]}
    shapes = {s["shape_id"] for s in tables["shapes"]}
    trips = {t["trip_id"]: t for t in tables["trips"]}
    assert {t["route_id"] for t in trips.values()} == routes
    assert {t["service_id"] for t in trips.values()} <= services
    assert {t["shape_id"] for t in trips.values()} <= shapes
    assert {c["service_id"] for c in tables["calendar_dates"]} <= services
    assert {st["trip_id"] for st in tables["stop_times"]} == set(trips)
    # riders board at platforms, never at a station as a whole
    assert {st["stop_id"] for st in tables["stop_times"]} <= platforms


def test_stop_times_increase_along_every_trip(tables):
    by_trip = defaultdict(list)
    for st in tables["stop_times"]:
        by_trip[st["trip_id"]].append(st)
    for trip_id, rows in by_trip.items():
        rows.sort(key=lambda r: int(r["stop_sequence"]))
        last = -1
        for r in rows:
            arr, dep = _seconds(r["arrival_time"]), _seconds(r["departure_time"])
            assert last < arr <= dep, trip_id
            last = dep
        dist = [float(r["shape_dist_traveled"]) for r in rows]
        assert dist == sorted(dist), trip_id


def test_a_name_means_one_station_and_its_platforms_stand_close_by(tables):
    stops = {s["stop_id"]: s for s in tables["stops"]}
    station_of_name: dict[str, set[str]] = defaultdict(set)
    for s in stops.values():
        station = s["stop_id"] if s["location_type"] == "1" else s["parent_station"]
        station_of_name[s["stop_name"]].add(station)
        if s["location_type"] == "0":
            parent = stops[station]
            assert s["stop_name"] == parent["stop_name"]
            x, y = to_metric(float(s["stop_lon"]), float(s["stop_lat"]))
            px, py = to_metric(float(parent["stop_lon"]), float(parent["stop_lat"]))
            assert math.hypot(x - px, y - py) < 200.0, s["stop_id"]
    assert all(len(v) == 1 for v in station_of_name.values()), [
        k for k, v in station_of_name.items() if len(v) > 1
    ]


def test_a_station_has_a_platform_for_each_direction_of_travel(tables):
    platforms = defaultdict(list)
    for s in tables["stops"]:
        if s["location_type"] == "0":
            platforms[s["parent_station"]].append(s["platform_code"])
    assert max(len(v) for v in platforms.values()) >= 2
    assert all(len(set(v)) == len(v) for v in platforms.values())


def test_names_stay_unique_in_the_whole_metropole():
    """At scale 1 (hundreds of stations), still one station per name."""
    transit = generate_city(SEED, 1.0).transit
    names = [s.name for s in transit.stations.values()]
    assert len(transit.stations) > 300
    assert len(set(names)) == len(names)
    assert {s.name for s in transit.stops.values()} == set(names)


def test_peak_trips_run_longer_than_early_and_late_ones(small_city, tables):
    route = next(r for r in small_city.transit.routes if r.vehicle_type == "Bus").route_id
    durations: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for st in tables["stop_times"]:
        durations[st["trip_id"]].append((int(st["stop_sequence"]), _seconds(st["arrival_time"])))
    trips = [
        t
        for t in tables["trips"]
        if t["route_id"] == route and t["service_id"] == "weekday" and t["direction_id"] == "0"
    ]

    def run(t):
        rows = sorted(durations[t["trip_id"]])
        return rows[0][1], rows[-1][1] - rows[0][1]

    runs = [run(t) for t in trips]
    early = [d for start, d in runs if start < 6.5 * 3600]
    peak = [d for start, d in runs if 7.5 * 3600 <= start < 9.5 * 3600]
    evening = [d for start, d in runs if start >= 21 * 3600]
    assert early and peak and evening
    assert min(peak) > 1.15 * max(early)
    assert min(peak) > 1.15 * max(evening)


def test_public_holidays_run_the_weekend_timetable(feed_dir):
    by_date = ptg.read_service_ids_by_date(str(feed_dir))
    assert by_date[date(2026, 7, 14)] == frozenset({"weekend"})  # a Tuesday: Bastille Day
    assert by_date[date(2026, 12, 25)] == frozenset({"weekend"})  # a Friday: Christmas
    assert by_date[date(2026, 7, 15)] == frozenset({"weekday"})
    assert by_date[date(2026, 7, 18)] == frozenset({"weekend"})


def test_the_simulated_fleet_runs_the_holiday_timetable(small_city):
    from citypilot.twin import Simulator

    holiday = local("2026-07-14 08:30")  # a Tuesday
    sim = Simulator(small_city, SEED, holiday)
    observations = sim.run_until(holiday + timedelta(minutes=2), step_s=30)
    trips = {o["attrs"]["tripId"] for o in observations if o["attrs"].get("tripId")}
    assert trips
    assert all("-WE-" in t for t in trips), trips
