"""Writing a generated city to disk: entities, map layers, road graph and GTFS feed.

``write_city(city, out_dir)`` writes::

    city.json               summary: seed, scale, centre, bbox, counts
    entities.ndjson         one NGSI-LD entity (normalized) per line, in City order
    municipalities.geojson  zones.geojson  roads.geojson  river.geojson
    buildings.geojson       transit.geojson (route shapes and stops)
    graph/nodes.csv         graph/edges.csv  (the routable road graph)
    gtfs/                   a GTFS static feed (agency, stops with stations and
                            platforms, routes, trips, stop_times, calendar,
                            calendar_dates with the public holidays, shapes,
                            feed_info)

Every file is written deterministically (no timestamps), so the same seed gives
the same bytes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from citypilot.twin.city import City
from citypilot.twin.geo import LAYER_DECIMALS, geometry_to_lonlat, to_lonlat
from citypilot.twin.names import RIVER_NAME
from citypilot.twin.roads import CLASS_NAMES
from citypilot.twin.service_calendar import FEED_END, FEED_START, holiday_exceptions
from citypilot.twin.transit import ROUTE_TYPE, scheduled_times

AGENCY_ID = "VALMONT"
AGENCY_NAME = "Valmont Mobilités"
AGENCY_URL = "https://transit.valmont.example"
TIMEZONE = "Europe/Paris"


def write_city(city: City, out_dir: str | Path) -> dict[str, Path]:
    """Write every file of ``city`` under ``out_dir``; returns the paths by short name."""
    out = Path(out_dir)
    (out / "gtfs").mkdir(parents=True, exist_ok=True)
    (out / "graph").mkdir(parents=True, exist_ok=True)
    paths = {
        "city": out / "city.json",
        "entities": out / "entities.ndjson",
        "municipalities": out / "municipalities.geojson",
        "zones": out / "zones.geojson",
        "roads": out / "roads.geojson",
        "river": out / "river.geojson",
        "buildings": out / "buildings.geojson",
        "transit": out / "transit.geojson",
        "nodes": out / "graph" / "nodes.csv",
        "edges": out / "graph" / "edges.csv",
        "gtfs": out / "gtfs",
    }
    paths["city"].write_bytes(orjson.dumps(city.metadata(), option=orjson.OPT_INDENT_2) + b"\n")
    write_entities(city.entities, paths["entities"])
    write_layers(city, out)
    _write_graph(city, paths["nodes"], paths["edges"])
    write_gtfs(city, paths["gtfs"])
    return paths


LAYERS = ("municipalities", "zones", "roads", "river", "buildings", "transit")


def write_layers(city: City, folder: str | Path) -> list[Path]:
    """The map layers as GeoJSON files ``<folder>/<layer>.geojson`` (see LAYERS)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    makers = {
        "municipalities": _municipality_features,
        "zones": _zone_features,
        "roads": road_features,
        "river": _river_features,
        "buildings": _building_features,
        "transit": _transit_features,
    }
    paths = []
    for name in LAYERS:
        path = out / f"{name}.geojson"
        _write_geojson(path, makers[name](city))
        paths.append(path)
    return paths


def write_entities(entities: Iterable[dict[str, Any]], path: Path) -> None:
    """Entities as NDJSON, one compact JSON document per line."""
    with path.open("wb") as fh:
        for doc in entities:
            fh.write(orjson.dumps(doc))
            fh.write(b"\n")


def _write_geojson(path: Path, features: list[dict[str, Any]]) -> None:
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}) + b"\n")


def _feature(geometry: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _value(doc: dict[str, Any], key: str) -> Any:
    attr = doc.get(key)
    if attr is None:
        return None
    return attr.get("object") if attr.get("type") == "Relationship" else attr.get("value")


def _municipality_features(city: City) -> list[dict[str, Any]]:
    return [
        _feature(
            _value(doc, "location"),
            {
                "id": doc["id"],
                "name": _value(doc, "name"),
                "population": _value(doc, "population"),
                "code": _value(doc, "code"),
            },
        )
        for doc in city.of_type("Municipality")
    ]


def _zone_features(city: City) -> list[dict[str, Any]]:
    return [
        _feature(
            _value(doc, "location"),
            {
                "id": doc["id"],
                "name": _value(doc, "name"),
                "category": _value(doc, "category"),
                "population": _value(doc, "population"),
                "municipality": _value(doc, "refMunicipality"),
            },
        )
        for doc in city.of_type("Zone")
    ]


def road_features(city: City) -> list[dict[str, Any]]:
    """Roads merged into LineStrings: runs of one way with the same attributes.

    Merging consecutive segments keeps the layer light for the map while every
    junction stays a vertex (topology is in graph/edges.csv).
    """
    g = city.roads
    lon = np.round(g.lon, LAYER_DECIMALS)
    lat = np.round(g.lat, LAYER_DECIMALS)
    order = np.lexsort((g.along, g.way))
    feats = []
    run: list[int] = []

    def attrs(e: int) -> tuple[Any, ...]:
        return (
            int(g.way[e]),
            int(g.cls[e]),
            bool(g.oneway[e]),
            int(g.maxspeed[e]),
            int(g.lanes[e]),
            bool(g.bus_lane[e]),
            bool(g.bridge[e]),
        )

    def flush() -> None:
        if not run:
            return
        first = run[0]
        nodes = _chain(g, run)
        if g.oneway[first] and nodes[0] != int(g.u[first]):
            nodes = nodes[::-1]  # draw one-way streets in their direction of travel
        coords = [[float(lon[n]), float(lat[n])] for n in nodes]
        way, cls, oneway, maxspeed, lanes, bus_lane, bridge = attrs(first)
        props: dict[str, Any] = {
            "name": g.way_names[way],
            "class": CLASS_NAMES[cls],
            "oneway": oneway,
            "maxspeed": maxspeed,
            "lanes": lanes,
        }
        if bus_lane:
            props["busLane"] = True
        if bridge:
            props["bridge"] = True
        feats.append(_feature({"type": "LineString", "coordinates": coords}, props))

    prev_key: tuple[Any, ...] | None = None
    prev_along = None
    for e in order.tolist():
        key = attrs(e)
        contiguous = prev_along is not None and g.along[e] == prev_along + 1
        if key != prev_key or not contiguous:
            flush()
            run = []
        run.append(e)
        prev_key, prev_along = key, int(g.along[e])
    flush()
    return feats


def _chain(g: Any, run: list[int]) -> list[int]:
    """Node sequence of a run of consecutive edges (each shares one end with the next)."""
    first = run[0]
    if len(run) == 1:
        return [int(g.u[first]), int(g.v[first])]
    second = run[1]
    a, b = int(g.u[first]), int(g.v[first])
    start = a if b in (int(g.u[second]), int(g.v[second])) else b
    nodes = [start]
    for e in run:
        u, v = int(g.u[e]), int(g.v[e])
        nodes.append(v if nodes[-1] == u else u)
    return nodes


def _river_features(city: City) -> list[dict[str, Any]]:
    land = city.land
    return [
        _feature(
            geometry_to_lonlat(land.river.simplify(5.0), LAYER_DECIMALS),
            {"name": RIVER_NAME, "kind": "river", "lengthKm": round(land.river.length / 1000.0, 2)},
        ),
        _feature(
            geometry_to_lonlat(land.flood.simplify(10.0), LAYER_DECIMALS),
            {"name": f"Zone inondable de {RIVER_NAME}", "kind": "floodProne"},
        ),
    ]


def _building_features(city: City) -> list[dict[str, Any]]:
    return [
        _feature(
            geometry_to_lonlat(site.footprint, LAYER_DECIMALS),
            {"id": site.id, "name": site.name, "category": site.category},
        )
        for site in city.buildings
    ]


def _transit_features(city: City) -> list[dict[str, Any]]:
    g = city.roads
    feats = []
    for route in city.transit.routes:
        for pattern in route.patterns:
            lon, lat = to_lonlat(g.x[pattern.nodes], g.y[pattern.nodes])
            coords = [
                [round(float(a), LAYER_DECIMALS), round(float(b), LAYER_DECIMALS)]
                for a, b in zip(lon, lat, strict=True)
            ]
            feats.append(
                _feature(
                    {"type": "LineString", "coordinates": coords},
                    {
                        "routeId": route.route_id,
                        "name": route.short_name,
                        "longName": route.long_name,
                        "mode": route.vehicle_type.lower(),
                        "colour": f"#{route.colour}",
                        "direction": pattern.direction,
                    },
                )
            )
    for stop in city.transit.stops.values():
        lon, lat = to_lonlat(stop.x, stop.y)
        feats.append(
            _feature(
                {
                    "type": "Point",
                    "coordinates": [
                        round(float(lon), LAYER_DECIMALS),
                        round(float(lat), LAYER_DECIMALS),
                    ],
                },
                {
                    "stopId": stop.stop_id,
                    "name": stop.name,
                    "mode": "tram" if stop.stop_id.startswith("TR") else "bus",
                    "station": stop.station,
                    "platform": stop.platform_code,
                },
            )
        )
    return feats


def write_graph(city: City, folder: str | Path) -> None:
    """The routable road graph as ``<folder>/nodes.csv`` and ``<folder>/edges.csv``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _write_graph(city, out / "nodes.csv", out / "edges.csv")


def _write_graph(city: City, nodes_path: Path, edges_path: Path) -> None:
    g = city.roads
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["node", "lon", "lat"])
    lon = np.round(g.lon, 6).tolist()
    lat = np.round(g.lat, 6).tolist()
    w.writerows([k, lon[k], lat[k]] for k in range(g.node_count))
    nodes_path.write_text(buf.getvalue(), encoding="utf-8")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "edge",
            "from",
            "to",
            "class",
            "oneway",
            "maxspeed",
            "lanes",
            "bus_lane",
            "bridge",
            "length_m",
            "name",
        ]
    )
    length = np.round(g.length, 1).tolist()
    for e in range(g.edge_count):
        w.writerow(
            [
                e,
                int(g.u[e]),
                int(g.v[e]),
                CLASS_NAMES[g.cls[e]],
                int(g.oneway[e]),
                int(g.maxspeed[e]),
                int(g.lanes[e]),
                int(g.bus_lane[e]),
                int(g.bridge[e]),
                length[e],
                g.way_names[g.way[e]],
            ]
        )
    edges_path.write_text(buf.getvalue(), encoding="utf-8")


def _csv(path: Path, header: list[str], rows: Iterable[Iterable[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def gtfs_time(seconds: int) -> str:
    """Seconds after midnight as GTFS HH:MM:SS (hours may exceed 23)."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def write_gtfs(city: City, folder: Path) -> None:
    """The transit network as a GTFS static feed."""
    t = city.transit
    g = city.roads
    folder.mkdir(parents=True, exist_ok=True)
    feed_dates = (FEED_START.strftime("%Y%m%d"), FEED_END.strftime("%Y%m%d"))
    _csv(
        folder / "agency.txt",
        ["agency_id", "agency_name", "agency_url", "agency_timezone", "agency_lang"],
        [[AGENCY_ID, AGENCY_NAME, AGENCY_URL, TIMEZONE, "fr"]],
    )
    _csv(
        folder / "feed_info.txt",
        [
            "feed_publisher_name",
            "feed_publisher_url",
            "feed_lang",
            "feed_start_date",
            "feed_end_date",
            "feed_version",
        ],
        [
            [
                "CityPilot twin",
                AGENCY_URL,
                "fr",
                *feed_dates,
                f"seed{city.seed}-scale{city.scale:g}",
            ]
        ],
    )
    stop_rows = []
    for station in t.stations.values():
        lon, lat = to_lonlat(station.x, station.y)
        stop_rows.append(
            [station.stop_id, station.name, f"{float(lat):.6f}", f"{float(lon):.6f}", 1, "", ""]
        )
    for stop in t.stops.values():
        lon, lat = to_lonlat(stop.x, stop.y)
        stop_rows.append(
            [
                stop.stop_id,
                stop.name,
                f"{float(lat):.6f}",
                f"{float(lon):.6f}",
                0,
                stop.station,
                stop.platform_code,
            ]
        )
    _csv(
        folder / "stops.txt",
        [
            "stop_id",
            "stop_name",
            "stop_lat",
            "stop_lon",
            "location_type",
            "parent_station",
            "platform_code",
        ],
        stop_rows,
    )
    _csv(
        folder / "routes.txt",
        [
            "route_id",
            "agency_id",
            "route_short_name",
            "route_long_name",
            "route_type",
            "route_color",
            "route_text_color",
        ],
        [
            [
                r.route_id,
                AGENCY_ID,
                r.short_name,
                r.long_name,
                ROUTE_TYPE[r.vehicle_type],
                r.colour,
                "FFFFFF",
            ]
            for r in t.routes
        ],
    )
    _csv(
        folder / "calendar.txt",
        [
            "service_id",
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
            "start_date",
            "end_date",
        ],
        [
            ["weekday", 1, 1, 1, 1, 1, 0, 0, *feed_dates],
            ["weekend", 0, 0, 0, 0, 0, 1, 1, *feed_dates],
        ],
    )
    _csv(
        folder / "calendar_dates.txt",
        ["service_id", "date", "exception_type"],
        holiday_exceptions(),
    )
    shape_rows = []
    for route in t.routes:
        for p in route.patterns:
            lon, lat = to_lonlat(g.x[p.nodes], g.y[p.nodes])
            for k in range(len(p.nodes)):
                shape_rows.append(
                    [
                        route.shape_id(p.direction),
                        f"{float(lat[k]):.6f}",
                        f"{float(lon[k]):.6f}",
                        k + 1,
                        f"{float(p.cum_m[k]):.1f}",
                    ]
                )
    _csv(
        folder / "shapes.txt",
        ["shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence", "shape_dist_traveled"],
        shape_rows,
    )
    trip_rows = []
    st_rows = []
    for trip in t.trips:
        route = t.routes[trip.route]
        p = route.patterns[trip.direction]
        trip_rows.append(
            [
                route.route_id,
                trip.service,
                trip.trip_id,
                route.long_name.split(" – ")[1 - trip.direction]
                if " – " in route.long_name
                else route.long_name,
                trip.direction,
                f"{route.vehicle_type.lower()}-{trip.block}",
                route.shape_id(trip.direction),
            ]
        )
        times = scheduled_times(trip, p)
        for k, sid in enumerate(p.stop_ids):
            arr, dep = times[k]
            st_rows.append(
                [
                    trip.trip_id,
                    gtfs_time(arr),
                    gtfs_time(dep),
                    sid,
                    k + 1,
                    f"{float(p.cum_m[p.stop_pos[k]]):.1f}",
                ]
            )
    _csv(
        folder / "trips.txt",
        [
            "route_id",
            "service_id",
            "trip_id",
            "trip_headsign",
            "direction_id",
            "block_id",
            "shape_id",
        ],
        trip_rows,
    )
    _csv(
        folder / "stop_times.txt",
        [
            "trip_id",
            "arrival_time",
            "departure_time",
            "stop_id",
            "stop_sequence",
            "shape_dist_traveled",
        ],
        st_rows,
    )
