"""Public traveller information against a real server holding a generated town's feed."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from google.transit import gtfs_realtime_pb2 as rt

from citypilot.bench.server import server_process
from citypilot.twin import Simulator, generate_city, write_gtfs
from citypilot.twin.export import write_graph
from tests.conftest import ADMIN, Server, seed_accounts

SEED, SCALE = 7, 0.1
FEEDS = ("vehicle-positions", "trip-updates", "alerts")


@dataclass
class Town:
    """The server, and the vehicles the simulator put in service on it."""

    server: Server
    running: set[str]  # GTFS vehicle ids of the vehicles on a trip
    stops: set[str]
    trips: dict[str, dict[str, str]]
    city: Any


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Town]:
    """A server holding a small generated city's GTFS and road graph, its trams and buses
    reported by the simulator over the last two minutes (whatever the hour)."""
    data = tmp_path_factory.mktemp("transit-town")
    asyncio.run(seed_accounts(data))
    city = generate_city(SEED, SCALE)
    write_gtfs(city, data / "gtfs")
    write_graph(city, data / "graph")
    now = datetime.now(UTC).replace(microsecond=0)
    observations = Simulator(city, SEED, now - timedelta(minutes=2)).run_until(now, step_s=10)
    fleet = [o for o in observations if o["type"] in ("Bus", "Tram")]
    latest = {o["id"]: o for o in fleet}
    with server_process(data) as url:
        server = Server(url, data)
        with server.client(ADMIN) as admin:
            docs = [d for d in city.entities if d["type"] in ("Bus", "Tram")]
            r = admin.post("/ngsi-ld/v1/entityOperations/upsert", json=docs)
            assert r.status_code in (201, 204), r.text
        with server.device() as device:
            r = device.post("/api/v1/ingest", json=fleet)
            assert r.status_code == 200 and not r.json()["rejected"], r.text
        with (data / "gtfs" / "trips.txt").open(encoding="utf-8") as fh:
            trips = {t["trip_id"]: t for t in csv.DictReader(fh)}
        with (data / "gtfs" / "stops.txt").open(encoding="utf-8") as fh:
            stops = {s["stop_id"] for s in csv.DictReader(fh)}
        running = {
            f"{o['type'].lower()}-{o['id'].rsplit(':', 1)[1]}"
            for o in latest.values()
            if o["attrs"].get("tripId")
        }
        yield Town(server, running, stops, trips, city)


def _feed(town: Town, name: str) -> rt.FeedMessage:
    r = httpx.get(f"{town.server.url}/gtfs-rt/{name}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf"
    message = rt.FeedMessage()
    message.ParseFromString(r.content)
    return message


def test_realtime_feeds_are_public_fresh_and_join_the_timetable(town: Town):
    for name in FEEDS:
        message = _feed(town, name)
        assert 0 <= time.time() - message.header.timestamp < 65, name
    vehicles = [e.vehicle for e in _feed(town, "vehicle-positions").entity]
    ids = [v.vehicle.id for v in vehicles]
    assert len(ids) == len(set(ids))
    assert set(ids) == town.running  # every vehicle on a trip, and only those
    for v in vehicles:
        assert town.trips[v.trip.trip_id]["route_id"] == v.trip.route_id
        assert v.stop_id in town.stops
    for e in _feed(town, "trip-updates").entity:
        times = [u.arrival.time for u in e.trip_update.stop_time_update]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert {u.stop_id for u in e.trip_update.stop_time_update} <= town.stops


def test_the_json_view_is_the_same_feed(town: Town):
    binary = _feed(town, "vehicle-positions")
    r = httpx.get(f"{town.server.url}/gtfs-rt/vehicle-positions", params={"format": "json"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["header"]["gtfs_realtime_version"] == "2.0"
    assert {e["id"] for e in doc.get("entity", [])} == {e.id for e in binary.entity}


def test_an_unknown_format_is_a_precise_400(town: Town):
    r = httpx.get(f"{town.server.url}/gtfs-rt/alerts", params={"format": "xml"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("format")


def test_the_traffic_feed_lists_closures_as_they_come_and_go(town: Town):
    r = httpx.get(town.server.url + "/api/v1/traffic")
    assert r.status_code == 200
    assert r.json()["closures"] == []
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    with town.server.client() as op:
        made = op.post(
            "/api/v1/closures", json={"edges": [3, 4], "endsAt": ends, "reason": "Water main"}
        )
        assert made.status_code == 201, made.text
        closure = made.json()
        doc = httpx.get(town.server.url + "/api/v1/traffic").json()
        (listed,) = doc["closures"]
        assert listed["reason"] == "Water main" and listed["edges"] == [3, 4]
        assert listed["geometry"]["type"] == "MultiLineString"
        assert "closedBy" not in listed and listed["status"] == "active"
        assert set(doc["congestion"]) == {"free", "moderate", "heavy", "unknown"}
        r = op.post(f"/api/v1/closures/{closure['id']}/end", json={})
        assert r.status_code == 200, r.text
    assert httpx.get(town.server.url + "/api/v1/traffic").json()["closures"] == []


def test_the_static_feed_is_served_without_login(town: Town):
    r = httpx.get(town.server.url + "/gtfs/gtfs.zip")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert {"stops.txt", "trips.txt", "stop_times.txt", "calendar_dates.txt"} <= set(
            zf.namelist()
        )
        assert zf.read("stops.txt") == (town.server.data_dir / "gtfs" / "stops.txt").read_bytes()
    again = httpx.get(
        town.server.url + "/gtfs/gtfs.zip", headers={"If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304


def test_a_server_without_a_timetable_says_so(server: Server):
    for path in ("/gtfs/gtfs.zip", "/gtfs-rt/trip-updates"):
        r = httpx.get(server.url + path)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert "GTFS" in r.json()["detail"]


def test_a_closure_across_a_bus_line_detours_it_in_the_alerts_until_it_ends(town: Town):
    route = next(r for r in town.city.transit.routes if r.vehicle_type == "Bus")
    pattern = route.patterns[0]
    edge = pattern.edges[len(pattern.edges) // 2]
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    with town.server.client() as op:
        made = op.post("/api/v1/closures", json={"edges": [edge], "endsAt": ends, "reason": "Fire"})
        assert made.status_code == 201, made.text
        alerts = [e.alert for e in _feed(town, "alerts").entity]
        detoured = {
            i.route_id for a in alerts if a.effect == rt.Alert.DETOUR for i in a.informed_entity
        }
        assert route.route_id in detoured
        assert detoured <= {t["route_id"] for t in town.trips.values()}
        assert all(i.stop_id in town.stops for a in alerts for i in a.informed_entity if i.stop_id)
        plans = httpx.get(town.server.url + "/api/v1/transit/detours").json()["detours"]
        mine = next(p for p in plans if (p["routeId"], p["directionId"]) == (route.route_id, 0))
        assert mine["kind"] == "detour" and mine["closures"] == [made.json()["id"]]
        assert mine["geometry"]["type"] == "LineString"
        r = op.post(f"/api/v1/closures/{made.json()['id']}/end", json={})
        assert r.status_code == 200, r.text
    assert not _feed(town, "alerts").entity
    assert httpx.get(town.server.url + "/api/v1/transit/detours").json() == {"detours": []}
