"""A small, realistic city for the browser tests: a few assets of every silo, two
municipalities, roads, a river and buildings — seeded through the public API.

Every count is fixed (``COUNTS``) so tests can check what each layer draws; states are
chosen so that each kind of alert the console shows (a defective lamp, a late bus, a
river above its alert level...) is present once.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.integration.incident_world import write_graph_files

#: The city's frame: two municipalities side by side, split at WEST_EAST_LON.
BBOX = (5.000, 47.300, 5.080, 47.340)
WEST_EAST_LON = 5.040
RIVER_LAT = 47.318

#: How many assets of each type the seed creates.
COUNTS: dict[str, int] = {
    "Streetlight": 40,
    "TrafficSignal": 6,
    "Camera": 5,
    "Tram": 3,
    "Bus": 5,
    "BikeStation": 4,
    "ParkingSpot": 20,
    "DeliveryArea": 3,
    "AirQualityObserved": 3,
    "WaterLevelSensor": 2,
    "WaterQualityObserved": 2,
    "Building": 3,
    "AccessPoint": 4,
    "PoliceUnit": 3,
    "TechnicalVehicle": 3,
}

#: Silo of the console → the types it shows (as the layers panel groups them).
SILO_TYPES: dict[str, list[str]] = {
    "lighting": ["Streetlight"],
    "signals": ["TrafficSignal"],
    "cameras": ["Camera"],
    "trams": ["Tram"],
    "buses": ["Bus"],
    "bikes": ["BikeStation"],
    "parking": ["ParkingSpot", "DeliveryArea"],
    "air": ["AirQualityObserved"],
    "water": ["WaterLevelSensor", "WaterQualityObserved"],
    "buildings": ["Building", "AccessPoint"],
    "police": ["PoliceUnit"],
    "technical": ["TechnicalVehicle"],
}

MUNICIPALITIES = (
    ("urn:ngsi-ld:Municipality:W", "Valmont-Ouest", (BBOX[0], BBOX[1], WEST_EAST_LON, BBOX[3])),
    ("urn:ngsi-ld:Municipality:E", "Valmont-Est", (WEST_EAST_LON, BBOX[1], BBOX[2], BBOX[3])),
)
STREETS = (
    "Rue Chabot",
    "Avenue Victor Hugo",
    "Rue Pasteur",
    "Boulevard Carnot",
    "Rue des Tilleuls",
)

#: Well-known assets the tests use.
LAMP = "urn:ngsi-ld:Streetlight:0001"
FAULTY_LAMP = "urn:ngsi-ld:Streetlight:0002"
LATE_BUS = "urn:ngsi-ld:Bus:0001"
MOVING_BUS = "urn:ngsi-ld:Bus:0002"
HIGH_RIVER = "urn:ngsi-ld:WaterLevelSensor:0001"
LAMP_STREET = "Rue Chabot"


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


def _square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {
        "type": "Polygon",
        "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
    }


def municipality_of(lon: float) -> str:
    """The municipality id of a longitude."""
    return MUNICIPALITIES[0][0] if lon < WEST_EAST_LON else MUNICIPALITIES[1][0]


def _state(type_name: str, n: int, rng: random.Random) -> dict[str, Any]:
    """Attributes of the n-th asset (1-based) of a type; the first ones carry the alerts."""
    if type_name == "Streetlight":
        return {
            "status": "defectiveLamp" if n == 2 else "ok",
            "powerState": "off" if n % 5 == 0 else "on",
            "powerConsumption": 0.0 if n % 5 == 0 else round(rng.uniform(30, 90), 1),
            "illuminanceLevel": 0.0 if n % 5 == 0 else 1.0,
        }
    if type_name == "TrafficSignal":
        return {"status": "ok", "phase": "green", "controlMode": "actuated", "vehicleCount": 12}
    if type_name == "Camera":
        return {"status": "offline" if n == 1 else "online", "cameraUsage": "cctv"}
    if type_name in ("Tram", "Bus"):
        return {
            "status": "inService",
            "delay": 600 if (type_name, n) == ("Bus", 1) else 30,
            "speed": 25.0,
            "routeId": f"{type_name[0]}{n}",
            "occupancy": 40.0,
        }
    if type_name == "BikeStation":
        return {
            "status": "working",
            "availableBikeNumber": 5,
            "freeSlotNumber": 15,
            "totalSlotNumber": 20,
        }
    if type_name == "ParkingSpot":
        return {"status": "occupied" if n % 2 else "free", "category": "onStreet"}
    if type_name == "DeliveryArea":
        return {"status": "free", "overstay": False, "maximumParkingDuration": 1800}
    if type_name == "AirQualityObserved":
        aqi = (35, 60, 120)[(n - 1) % 3]
        level = {35: "good", 60: "moderate", 120: "unhealthyForSensitive"}[aqi]
        return {"no2": 20.0 + n, "pm10": 15.0 + n, "airQualityIndex": aqi, "airQualityLevel": level}
    if type_name == "WaterLevelSensor":
        return {"status": "ok", "waterLevel": 3.9 if n == 1 else 1.2, "alertLevel": 3.5}
    if type_name == "WaterQualityObserved":
        return {"status": "ok", "pH": 7.4, "turbidity": 3.0}
    if type_name == "Building":
        return {"status": "open", "category": "school", "floorsAboveGround": 3}
    if type_name == "AccessPoint":
        return {"status": "online", "locked": True, "badgesEnabled": True, "accessCount": 3}
    if type_name == "PoliceUnit":
        return {"status": "patrolling", "callSign": f"PM-{n:02d}", "speed": 30.0}
    if type_name == "TechnicalVehicle":
        return {"status": "onRoute", "vehicleType": "repair", "callSign": f"VT-{n:02d}"}
    return {}


def entities(seed: int = 7) -> list[dict[str, Any]]:
    """Every entity of the small city, normalised NGSI-LD."""
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    for mid, name, box in MUNICIPALITIES:
        docs.append(
            {
                "id": mid,
                "type": "Municipality",
                "location": {"type": "GeoProperty", "value": _square(*box)},
                "name": _prop(name),
                "population": _prop(12000),
                "code": _prop(mid[-1]),
            }
        )
    margin = 0.004
    for type_name, count in COUNTS.items():
        for n in range(1, count + 1):
            lon = round(rng.uniform(BBOX[0] + margin, BBOX[2] - margin), 6)
            lat = round(rng.uniform(BBOX[1] + margin, BBOX[3] - margin), 6)
            street = STREETS[(n - 1) % len(STREETS)]
            eid = f"urn:ngsi-ld:{type_name}:{n:04d}"
            geometry: dict[str, Any] = {"type": "Point", "coordinates": [lon, lat]}
            if type_name == "Building":
                geometry = _square(lon - 0.0005, lat - 0.0003, lon + 0.0005, lat + 0.0003)
            doc: dict[str, Any] = {
                "id": eid,
                "type": type_name,
                "location": {"type": "GeoProperty", "value": geometry},
                "name": _prop(
                    f"{street} {n}" if type_name == "Streetlight" else f"{type_name} {n}"
                ),
                "address": _prop({"streetAddress": f"{n} {street}", "addressLocality": "Valmont"}),
                "refMunicipality": _rel(municipality_of(lon)),
            }
            for key, value in _state(type_name, n, rng).items():
                doc[key] = _prop(value)
            if type_name == "AccessPoint":  # the readers are on the schools' doors
                building = (n - 1) % COUNTS["Building"] + 1
                doc["refBuilding"] = _rel(f"urn:ngsi-ld:Building:{building:04d}")
            docs.append(doc)
    return docs


def layers() -> dict[str, dict[str, Any]]:
    """The background map layers (GeoJSON FeatureCollections) by name."""

    def fc(features: list[dict[str, Any]]) -> dict[str, Any]:
        return {"type": "FeatureCollection", "features": features}

    def feat(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
        return {"type": "Feature", "geometry": geometry, "properties": props}

    x0, y0, x1, y1 = BBOX
    roads = []
    for k in range(1, 8):
        lat = y0 + (y1 - y0) * k / 8
        lon = x0 + (x1 - x0) * k / 8
        cls = "arterial" if k == 4 else "local"
        roads.append(
            feat(
                {"type": "LineString", "coordinates": [[x0, lat], [x1, lat]]},
                **{"class": cls, "name": STREETS[k % 5]},
            )
        )
        roads.append(
            feat(
                {"type": "LineString", "coordinates": [[lon, y0], [lon, y1]]},
                **{"class": cls, "name": STREETS[(k + 2) % 5]},
            )
        )
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    roads.append(
        feat({"type": "LineString", "coordinates": ring}, **{"class": "ring", "name": "Rocade"})
    )
    river_line = [
        [x0, RIVER_LAT - 0.004],
        [5.03, RIVER_LAT],
        [5.05, RIVER_LAT + 0.002],
        [x1, RIVER_LAT - 0.001],
    ]
    return {
        "municipalities": fc(
            [feat(_square(*box), id=mid, name=name) for mid, name, box in MUNICIPALITIES]
        ),
        "roads": fc(roads),
        "river": fc(
            [
                feat(
                    {"type": "LineString", "coordinates": river_line},
                    name="L'Aubrette",
                    kind="river",
                ),
                feat(
                    _square(x0, RIVER_LAT - 0.006, x1, RIVER_LAT + 0.005),
                    name="Zone inondable",
                    kind="floodProne",
                ),
            ]
        ),
        "buildings": fc(
            [
                feat(
                    _square(5.02 + k * 0.01, 47.325, 5.0206 + k * 0.01, 47.3255),
                    name=f"Bâtiment {k}",
                )
                for k in range(5)
            ]
        ),
    }


def write_layers(data_dir: Path) -> None:
    """Write the background layers where the server looks for them."""
    folder = data_dir / "layers"
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in layers().items():
        (folder / f"{name}.geojson").write_bytes(orjson.dumps(doc))


#: The street grid of the road graph: GRID_COLS × GRID_ROWS junctions over BBOX.
GRID_COLS, GRID_ROWS = 9, 5


def write_graph(data_dir: Path) -> None:
    """Write a street grid over the city where the server looks for its road graph."""
    x0, y0, x1, y1 = BBOX
    points = [
        (
            round(x0 + (x1 - x0) * c / (GRID_COLS - 1), 6),
            round(y0 + (y1 - y0) * r / (GRID_ROWS - 1), 6),
        )
        for r in range(GRID_ROWS)
        for c in range(GRID_COLS)
    ]
    edges = []
    for r in range(GRID_ROWS):
        for c in range(GRID_COLS):
            k = r * GRID_COLS + c
            if c + 1 < GRID_COLS:
                edges.append((k, k + 1))
            if r + 1 < GRID_ROWS:
                edges.append((k, k + GRID_COLS))
    write_graph_files(data_dir / "graph", points, edges)


def seed(url: str, operator_token: str, device_key: str) -> None:
    """Create the city's entities and a day of history for a few of them."""
    headers = {"Authorization": f"Bearer {operator_token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=entities())
        assert r.status_code in (201, 204), r.text
    # A day of readings for the lamp and the high river, so their charts have a shape.
    now = datetime.now(UTC)
    history = []
    for k in range(96, 0, -1):
        at = (now - timedelta(minutes=15 * k)).isoformat().replace("+00:00", "Z")
        night = (k // 24) % 2 == 0
        history.append(
            {
                "id": LAMP,
                "type": "Streetlight",
                "observedAt": at,
                "attrs": {"powerConsumption": 60.0 + (k % 7) if night else 0.0},
            }
        )
        history.append(
            {
                "id": HIGH_RIVER,
                "type": "WaterLevelSensor",
                "observedAt": at,
                "attrs": {"waterLevel": round(2.5 + 1.4 * (96 - k) / 96, 3)},
            }
        )
    with httpx.Client(base_url=url, headers={"X-Device-Key": device_key}, timeout=30) as client:
        r = client.post("/api/v1/ingest", json=history)
        assert r.status_code == 200, r.text
