"""The generated city: deterministic, valid for the platform, with assets where they belong."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
import shapely

from citypilot.model.entity import parse_entity
from citypilot.twin import City, generate_city, write_entities
from citypilot.twin.geo import to_metric

from .conftest import SEED, SMALL


def _entities_digest(city: City, tmp_path, name: str) -> str:
    path = tmp_path / name
    write_entities(city.entities, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_the_same_city_byte_for_byte(small_city, tmp_path):
    again = generate_city(SEED, SMALL)
    assert _entities_digest(small_city, tmp_path, "a.ndjson") == _entities_digest(
        again, tmp_path, "b.ndjson"
    )


def test_another_seed_gives_another_city(small_city):
    other = generate_city(SEED + 1, SMALL)
    first = {d["id"]: d["location"] for d in small_city.of_type("Streetlight")[:50]}
    second = {d["id"]: d["location"] for d in other.of_type("Streetlight")[:50]}
    assert first != second


def test_every_entity_passes_the_platform_validation(small_city, registry):
    for doc in small_city.entities:
        parse_entity(doc, registry)


def test_ids_are_unique_zero_padded_and_in_type_order(small_city):
    ids = [d["id"] for d in small_city.entities]
    assert len(ids) == len(set(ids))
    lights = [d["id"] for d in small_city.of_type("Streetlight")]
    assert lights[0] == "urn:ngsi-ld:Streetlight:000001"
    assert lights == sorted(lights)


def test_counts_at_scale_0_1_are_the_scaled_figures(small_city):
    counts = small_city.counts()
    assert counts["Municipality"] == 3
    assert counts["Streetlight"] == 4500
    assert 25 <= counts["TrafficSignal"] <= 35
    assert 20 <= counts["Camera"] <= 35
    assert counts["Tram"] >= 2 and counts["Bus"] >= 4
    assert 3 <= counts["BikeStation"] <= 6
    assert counts["ParkingSpot"] == 300
    assert counts["DeliveryArea"] == 30
    assert counts["AirQualityObserved"] >= 2
    assert counts["WaterLevelSensor"] >= 3 and counts["WaterQualityObserved"] >= 2
    assert 12 <= counts["Building"] <= 40
    assert 2.5 <= counts["AccessPoint"] / counts["Building"] <= 6
    assert counts["PoliceUnit"] >= 2 and counts["TechnicalVehicle"] >= 5
    assert small_city.roads.edge_count > 1500
    assert int(small_city.land.muni_population.sum()) == 26_000


def test_every_asset_has_a_department_municipality_and_zone(small_city):
    muni_ids = {d["id"] for d in small_city.of_type("Municipality")}
    zone_ids = {d["id"] for d in small_city.of_type("Zone")}
    for doc in small_city.entities:
        if doc["type"] in ("Municipality", "Zone"):
            continue
        assert doc["department"]["value"]
        assert doc["refMunicipality"]["object"] in muni_ids
        assert doc["refZone"]["object"] in zone_ids


def test_assets_lie_in_the_municipality_they_name(small_city):
    polygons = {
        d["id"]: shapely.geometry.shape(d["location"]["value"])
        for d in small_city.of_type("Municipality")
    }
    docs = [d for d in small_city.entities if d["location"]["value"]["type"] == "Point"]
    misplaced = 0
    for doc in docs[::7]:
        point = shapely.geometry.Point(doc["location"]["value"]["coordinates"])
        if not polygons[doc["refMunicipality"]["object"]].buffer(1e-4).contains(point):
            misplaced += 1
    assert misplaced == 0


def _points(docs) -> tuple[np.ndarray, np.ndarray]:
    lon = np.array([d["location"]["value"]["coordinates"][0] for d in docs])
    lat = np.array([d["location"]["value"]["coordinates"][1] for d in docs])
    x, y = to_metric(lon, lat)
    return np.asarray(x), np.asarray(y)


def test_streetlights_stand_along_the_streets(small_city):
    g = small_city.roads
    lines = shapely.linestrings(
        np.stack([np.column_stack([g.x[g.u], g.y[g.u]]), np.column_stack([g.x[g.v], g.y[g.v]])], 1)
    )
    tree = shapely.STRtree(lines)
    x, y = _points(small_city.of_type("Streetlight")[::10])
    _, dist = tree.query_nearest(shapely.points(x, y), return_distance=True, all_matches=False)
    assert np.max(dist) < 20.0
    assert np.median(dist) > 2.0  # beside the carriageway, not in the middle of it


def test_signals_stand_at_junctions(small_city):
    g = small_city.roads
    degree = g.degree()
    x, y = _points(small_city.of_type("TrafficSignal"))
    for px, py in zip(x, y, strict=True):
        node = g.nearest_node(px, py)
        assert np.hypot(g.x[node] - px, g.y[node] - py) < 15.0
        assert degree[node] >= 3


def test_the_road_graph_is_strongly_connected_and_varied(small_city):
    g = small_city.roads
    from citypilot.twin.roads import _strong_component

    alive = _strong_component(g.node_count, g.u, g.v, g.oneway, 0)
    assert alive.all()
    classes = Counter(int(c) for c in g.cls)
    assert classes[0] and classes[1] and classes[2]  # local, arterial, ring
    assert g.oneway.any() and g.bus_lane.any() and g.bridge.any()
    assert set(np.unique(g.maxspeed).tolist()) >= {30, 50, 90}


def test_stops_sit_on_their_route(small_city):
    g = small_city.roads
    for route in small_city.transit.routes:
        for pattern in route.patterns:
            path = set(pattern.nodes)
            for sid in pattern.stop_ids:
                assert small_city.transit.stops[sid].node in path
            assert pattern.arrival_s == sorted(pattern.arrival_s)
            assert pattern.cum_m[-1] > 1000.0
    assert len(g.x) == g.node_count


def test_flood_zones_follow_the_river(small_city):
    flood = [z for z in small_city.land.overlay_zones if z.category == "floodProne"]
    assert flood
    river = small_city.land.river
    plain = river.buffer(300.0)
    for zone in flood:
        assert zone.polygon.difference(plain).area < 1.0  # within 300 m of the river
    assert shapely.union_all([z.polygon for z in flood]).intersects(river)


@pytest.mark.slow
def test_full_scale_city_matches_the_published_figures(tmp_path):
    city = generate_city(SEED, 1.0)  # its speed is measured by `citypilot bench city`
    counts = city.counts()
    assert counts["Municipality"] == 23
    assert int(city.land.muni_population.sum()) == 260_000
    assert 44_000 <= counts["Streetlight"] <= 46_000
    assert 280 <= counts["TrafficSignal"] <= 320
    assert 250 <= counts["Camera"] <= 290
    assert len([r for r in city.transit.routes if r.vehicle_type == "Tram"]) == 2
    assert 14 <= len([r for r in city.transit.routes if r.vehicle_type == "Bus"]) <= 16
    assert 36 <= counts["BikeStation"] <= 44
    assert 13 <= counts["AirQualityObserved"] <= 17
    assert 140 <= counts["Building"] <= 160
    assert 550 <= counts["AccessPoint"] <= 650
    assert 23 <= counts["PoliceUnit"] <= 27
    assert 36 <= counts["TechnicalVehicle"] <= 44
    assert counts["WaterLevelSensor"] >= 8 and counts["WaterQualityObserved"] >= 4
    assert 10_000 <= city.roads.edge_count <= 99_999  # tens of thousands: real routing
    path = tmp_path / "roads.geojson"
    from citypilot.twin.export import LAYERS, write_layers

    write_layers(city, tmp_path)
    assert path.stat().st_size < 15 * 1024 * 1024
    assert all((tmp_path / f"{name}.geojson").exists() for name in LAYERS)
