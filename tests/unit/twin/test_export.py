"""Files of a generated city: NDJSON entities, GeoJSON layers, road graph and a GTFS feed."""

from __future__ import annotations

import csv

import orjson
import partridge as ptg
import pytest
import shapely

from citypilot.twin import write_city

# partridge 1.1.2 calls a pandas API that pandas 3 deprecates; not our code to fix
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")


@pytest.fixture(scope="module")
def written(small_city, tmp_path_factory):
    out = tmp_path_factory.mktemp("city")
    paths = write_city(small_city, out)
    return out, paths


def test_entities_file_holds_one_document_per_line(small_city, written):
    out, _ = written
    lines = (out / "entities.ndjson").read_bytes().splitlines()
    assert len(lines) == len(small_city.entities)
    assert orjson.loads(lines[0])["type"] == "Municipality"


def test_map_layers_are_valid_geojson(written):
    out, _ = written
    for name in ("municipalities", "zones", "roads", "river", "buildings", "transit"):
        doc = orjson.loads((out / f"{name}.geojson").read_bytes())
        assert doc["type"] == "FeatureCollection"
        assert doc["features"], name
        for feature in doc["features"][:200]:
            geom = shapely.geometry.shape(feature["geometry"])
            assert geom.is_valid, (name, feature["properties"])


def test_roads_layer_keeps_the_attributes_the_console_draws(written):
    out, _ = written
    feats = orjson.loads((out / "roads.geojson").read_bytes())["features"]
    classes = {f["properties"]["class"] for f in feats}
    assert classes == {"local", "arterial", "ring"}
    assert any(f["properties"]["oneway"] for f in feats)
    assert any(f["properties"].get("busLane") for f in feats)
    assert all(f["properties"]["maxspeed"] in (30, 50, 70, 80, 90) for f in feats)


def test_graph_files_describe_every_edge(small_city, written):
    out, _ = written
    with (out / "graph" / "edges.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == small_city.roads.edge_count
    assert {r["class"] for r in rows} == {"local", "arterial", "ring"}


def test_gtfs_feed_reads_back_with_partridge(small_city, written):
    out, _ = written
    date, service_ids = ptg.read_busiest_date(str(out / "gtfs"))
    assert service_ids == frozenset({"weekday"})
    feed = ptg.load_feed(str(out / "gtfs"), {"trips.txt": {"service_id": service_ids}})
    assert len(feed.routes) == len(small_city.transit.routes)
    assert set(feed.routes.route_type) == {0, 3}
    assert len(feed.trips) > 100
    assert set(feed.stop_times.stop_id) <= set(feed.stops.stop_id)
    assert set(feed.trips.shape_id) <= set(feed.shapes.shape_id)
    first = feed.stop_times.sort_values(["trip_id", "stop_sequence"]).groupby("trip_id")
    assert (first.arrival_time.diff().dropna() > 0).all()
    assert date.weekday() < 5


def test_gtfs_vehicle_blocks_match_the_fleet(small_city, written):
    out, _ = written
    feed = ptg.load_raw_feed(str(out / "gtfs"))
    blocks = set(feed.trips.block_id)
    fleet = {f"{t.lower()}-{local}" for t, local, _ in small_city.transit.vehicles}
    assert blocks == fleet
