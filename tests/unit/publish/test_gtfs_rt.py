"""GTFS-Realtime feeds of a simulated morning, parsed back with gtfs-realtime-bindings
and joined to the static feed the same city publishes."""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from citypilot.publish.fleet import fleet_from_observations
from citypilot.publish.gtfs_rt import FeedBuilder, ServiceAlert, as_json
from citypilot.publish.gtfs_static import StaticFeed
from citypilot.twin import Simulator, generate_city, write_gtfs
from citypilot.twin.environment import TIMEZONE
from citypilot.twin.geo import to_metric
from tests.unit.shape_distance import distance_to_shape

SEED = 7
MORNING = datetime(2025, 11, 20, 7, 45, tzinfo=TIMEZONE)  # a Thursday


@pytest.fixture(scope="module")
def city():
    return generate_city(SEED, 0.1)


@pytest.fixture(scope="module")
def static(city, tmp_path_factory):
    """The static feed as a rider's app reads it: the zip, file by file."""
    folder = tmp_path_factory.mktemp("gtfs")
    write_gtfs(city, folder)
    feed = StaticFeed(folder)
    with zipfile.ZipFile(io.BytesIO(feed.zipped().data)) as zf:
        tables = {
            n.removesuffix(".txt"): list(csv.DictReader(io.StringIO(zf.read(n).decode())))
            for n in zf.namelist()
        }
    return feed, tables


@pytest.fixture(scope="module")
def feeds(city, static):
    """The three feeds, serialised and parsed back, after two simulated minutes."""
    sim = Simulator(city, SEED, MORNING)
    end = MORNING + timedelta(minutes=2)
    fleet = fleet_from_observations(sim.run_until(end, step_s=10))
    builder = FeedBuilder(static[0].index())
    now = end.timestamp()
    placed = builder.place(fleet, now)
    alert = ServiceAlert(
        "detour-1",
        "DETOUR",
        "CONSTRUCTION",
        "Ligne 1 déviée",
        "Rue fermée",
        route_ids=(city.transit.routes[-1].route_id,),
        start=now - 60,
        end=now + 3600,
    )
    out = {}
    for name, message in (
        ("vehicles", builder.vehicle_positions(placed, now)),
        ("trips", builder.trip_updates(placed, now)),
        ("alerts", builder.alerts([alert], now)),
    ):
        parsed = rt.FeedMessage()
        parsed.ParseFromString(message.SerializeToString())
        out[name] = parsed
    return fleet, now, out


def _seconds(hhmmss: str) -> int:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return h * 3600 + m * 60 + s


def test_headers_are_fresh_full_datasets(feeds):
    _, now, out = feeds
    for message in out.values():
        assert message.header.gtfs_realtime_version == "2.0"
        assert message.header.incrementality == rt.FeedHeader.FULL_DATASET
        assert 0 <= now - message.header.timestamp < 65


def test_every_vehicle_in_service_is_positioned_once_on_a_trip_of_the_timetable(feeds, static):
    fleet, _, out = feeds
    _, tables = static
    trips = {t["trip_id"]: t for t in tables["trips"]}
    routes = {r["route_id"] for r in tables["routes"]}
    stops = {s["stop_id"] for s in tables["stops"]}
    running = {v.vehicle_id for v in fleet if v.trip_id}
    entities = [e.vehicle for e in out["vehicles"].entity]
    ids = [vp.vehicle.id for vp in entities]
    assert len(ids) == len(set(ids))
    assert set(ids) == running and len(running) > 5
    for vp in entities:
        trip = trips[vp.trip.trip_id]
        assert vp.trip.route_id == trip["route_id"] in routes
        assert vp.vehicle.id == trip["block_id"]  # the vehicle runs its own block
        assert vp.trip.start_date == "20251120"
        assert vp.stop_id in stops
        assert vp.HasField("position") and vp.position.speed >= 0


def test_positions_lie_on_the_trip_shape(feeds, static):
    _, _, out = feeds
    _, tables = static
    shape_of = {t["trip_id"]: t["shape_id"] for t in tables["trips"]}
    points: dict[str, list[tuple[float, float]]] = {}
    for p in tables["shapes"]:
        points.setdefault(p["shape_id"], []).append(
            to_metric(float(p["shape_pt_lon"]), float(p["shape_pt_lat"]))
        )
    for e in out["vehicles"].entity:
        vp = e.vehicle
        x, y = to_metric(vp.position.longitude, vp.position.latitude)
        shape = points[shape_of[vp.trip.trip_id]]
        nearest = distance_to_shape(x, y, shape)
        assert nearest < 5.0, (vp.vehicle.id, nearest)


def test_trip_updates_predict_increasing_times_at_the_stops_ahead(feeds, static):
    fleet, now, out = feeds
    _, tables = static
    scheduled: dict[tuple[str, int], tuple[str, int]] = {}
    for st in tables["stop_times"]:
        scheduled[(st["trip_id"], int(st["stop_sequence"]))] = (
            st["stop_id"],
            _seconds(st["arrival_time"]),
        )
    delay_of = {v.vehicle_id: round(v.delay) for v in fleet}
    midnight = MORNING.replace(hour=0, minute=0).timestamp()
    updates = [e.trip_update for e in out["trips"].entity]
    assert len(updates) > 5
    assert len({(u.trip.trip_id, u.trip.start_date) for u in updates}) == len(updates)
    for tu in updates:
        assert tu.delay == delay_of[tu.vehicle.id]
        last = -math.inf
        for stu in tu.stop_time_update:
            stop_id, arrival = scheduled[(tu.trip.trip_id, stu.stop_sequence)]
            assert stu.stop_id == stop_id
            assert stu.arrival.time == midnight + arrival + tu.delay
            assert last < stu.arrival.time <= stu.departure.time
            last = stu.departure.time
        # the first update is the vehicle's next stop, not one it has passed
        assert tu.stop_time_update[0].arrival.time > now - 300


def test_alerts_name_routes_of_the_timetable_and_the_json_view_reads_the_same(feeds, static):
    _, now, out = feeds
    _, tables = static
    routes = {r["route_id"] for r in tables["routes"]}
    (entity,) = out["alerts"].entity
    alert = entity.alert
    assert alert.effect == rt.Alert.DETOUR
    assert {i.route_id for i in alert.informed_entity} <= routes
    assert alert.active_period[0].start <= now < alert.active_period[0].end
    doc = as_json(out["alerts"])
    assert doc["entity"][0]["alert"]["effect"] == "DETOUR"
    assert doc["entity"][0]["alert"]["header_text"]["translation"][0]["text"] == "Ligne 1 déviée"


def test_a_silent_vehicle_or_an_unknown_trip_is_left_out(feeds, static):
    fleet, now, _ = feeds
    builder = FeedBuilder(static[0].index())
    running = [v for v in fleet if v.trip_id]
    silent = replace(running[0], observed_at=now - 3600)
    stranger = replace(running[1], trip_id="no-such-trip")
    placed = builder.place([silent, stranger, *running[2:]], now)
    assert {p.vehicle.vehicle_id for p in placed} == {v.vehicle_id for v in running[2:]}
