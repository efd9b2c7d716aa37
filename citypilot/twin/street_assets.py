"""Street furniture: streetlights, signals, cameras, bike stations, parking and delivery bays.

Each ``place_*`` function decides positions on the road graph (vectorised with
numpy) and returns entity documents. Counts are the scale-1.0 figures times the
scale.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from citypilot.twin.entities import DocFactory, install_dates, local_ids
from citypilot.twin.roads import ARTERIAL, LOCAL, RING, RoadGraph, edge_points
from citypilot.twin.transit import Transit

STREETLIGHTS = 45_000
TRAFFIC_SIGNALS = 300
CAMERAS = 270
BIKE_STATIONS = 40
PARKING_SPOTS = 3_000
DELIVERY_AREAS = 300
LIGHTS_PER_CABINET = 40  # consecutive lights along a street share a control cabinet
LAMP_TECH = ("LED", "highPressureSodium", "metalHalide", "compactFluorescent")
LANTERN_HEIGHT = {LOCAL: 6.0, ARTERIAL: 10.0, RING: 12.0}
LIGHT_OFFSET_M = {LOCAL: 5.0, ARTERIAL: 9.0, RING: 13.0}


def scaled(count: int, scale: float, minimum: int = 1) -> int:
    """A scale-1.0 count at ``scale``, never below ``minimum``."""
    return max(minimum, round(count * scale))


def place_streetlights(
    rng: np.random.Generator, f: DocFactory, scale: float
) -> list[dict[str, Any]]:
    """Streetlights evenly spaced along every lit street, in street order."""
    g = f.graph
    n = scaled(STREETLIGHTS, scale, 10)
    lit = np.nonzero(g.lit)[0]
    lit = lit[np.lexsort((g.along[lit], g.way[lit]))]
    cum = np.cumsum(g.length[lit])
    spacing = cum[-1] / n
    s = (np.arange(n) + 0.5) * spacing
    k = np.minimum(np.searchsorted(cum, s, side="right"), len(lit) - 1)
    edges = lit[k]
    frac = np.clip((s - (cum[k] - g.length[edges])) / g.length[edges], 0.0, 1.0)
    cls = g.cls[edges]
    side = np.where(cls == LOCAL, 1.0, np.where(np.arange(n) % 2 == 0, 1.0, -1.0))
    offset = np.select(
        [cls == LOCAL, cls == ARTERIAL],
        [LIGHT_OFFSET_M[LOCAL], LIGHT_OFFSET_M[ARTERIAL]],
        LIGHT_OFFSET_M[RING],
    )
    x, y, _ = edge_points(g, edges, frac, offset * side)
    muni, zone = f.locate(x, y)
    dist = np.hypot(x, y) / f.land.radius
    p_led = np.clip(0.85 - 0.5 * dist, 0.3, 0.9)
    roll = rng.random(n)
    tech = np.where(
        roll < p_led, 0, np.where(roll < p_led + (1 - p_led) * 0.75, 1, np.where(roll < 0.97, 2, 3))
    )
    installed = install_dates(rng, n, 1985, 2025)
    led_dates = install_dates(rng, n, 2014, 2025)
    height = np.select(
        [cls == LOCAL, cls == ARTERIAL],
        [LANTERN_HEIGHT[LOCAL], LANTERN_HEIGHT[ARTERIAL]],
        LANTERN_HEIGHT[RING],
    )
    height = height + np.where(cls == LOCAL, rng.choice([0.0, 2.0], n, p=[0.7, 0.3]), 0.0)
    named = f.edge_addresses(edges, frac, side, muni)
    extra = []
    for i in range(n):
        extra.append(
            {
                "powerState": "off",
                "status": "ok",
                "illuminanceLevel": 0.0,
                "lanternHeight": float(height[i]),
                "lampTechnology": LAMP_TECH[tech[i]],
                "dateLastLampChange": led_dates[i] if tech[i] == 0 else installed[i],
            }
        )
    return f.docs(
        "Streetlight",
        local_ids(n),
        x,
        y,
        [a[0] for a in named],
        [a[1] for a in named],
        extra,
        "SL",
        installed,
        muni,
        zone,
    )


def signal_nodes(rng: np.random.Generator, g: RoadGraph, count: int) -> np.ndarray:
    """Junctions that get a traffic signal: arterial crossings first, then busy junctions."""
    deg = g.degree()
    art = np.zeros(g.node_count, dtype=np.int64)
    for ends in (g.u, g.v):
        np.add.at(art, ends, (g.cls == ARTERIAL).astype(np.int64))
    ramp_end = np.zeros(g.node_count, dtype=bool)
    ramp_end[g.v[(g.cls == RING) & (g.maxspeed <= 50)]] = True
    urban = np.zeros(g.node_count, dtype=bool)
    urban[g.u[g.urban & (g.cls != RING)]] = True
    grid = g.node_grid[:, 0] > -(10**6)
    candidate = grid & urban & (deg >= 3)
    r = np.hypot(g.x, g.y)
    score = (
        4.0 * (art >= 3)
        + 2.0 * ramp_end
        + 1.0 * (art >= 1)
        + 1.5 * np.exp(-r / 3000.0)
        + rng.random(g.node_count) * 0.8
    )
    score = np.where(candidate, score, -np.inf)
    order = np.argsort(-score, kind="stable")
    return order[: min(count, int(candidate.sum()))]


def place_traffic_signals(
    rng: np.random.Generator, f: DocFactory, scale: float
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Signals at major junctions; returns the documents and their nodes."""
    g = f.graph
    nodes = signal_nodes(rng, g, scaled(TRAFFIC_SIGNALS, scale, 3))
    n = len(nodes)
    x, y = g.x[nodes] + 6.0, g.y[nodes] + 6.0
    muni, zone = f.locate(x, y)
    names = _junction_names(g, nodes)
    addresses = f.point_addresses(x, y, muni)
    installed = install_dates(rng, n, 1995, 2024)
    art = np.zeros(g.node_count, dtype=np.int64)
    for ends in (g.u, g.v):
        np.add.at(art, ends, (g.cls == ARTERIAL).astype(np.int64))
    extra = []
    for node in nodes.tolist():
        major = art[node] >= 3
        extra.append(
            {
                "phase": "red",
                "controlMode": "actuated" if rng.random() < 0.6 else "fixedTime",
                "status": "ok",
                "cycleTime": float(
                    rng.choice([90, 100, 110, 120]) if major else rng.choice([60, 70, 80])
                ),
            }
        )
    docs = f.docs(
        "TrafficSignal",
        local_ids(n, 4),
        x,
        y,
        names,
        [a[1] for a in addresses],
        extra,
        "TS",
        installed,
        muni,
        zone,
    )
    return docs, nodes


def _junction_names(g: RoadGraph, nodes: np.ndarray) -> list[str]:
    """'Carrefour A / B' from the ways meeting at each node."""
    incident: dict[int, list[int]] = {}
    sel = np.isin(g.u, nodes) | np.isin(g.v, nodes)
    for e in np.nonzero(sel)[0].tolist():
        for end in (int(g.u[e]), int(g.v[e])):
            incident.setdefault(end, []).append(e)
    out = []
    for node in nodes.tolist():
        ways = []
        for e in incident.get(node, []):
            name = g.way_names[g.way[e]]
            if name not in ways:
                ways.append(name)
        out.append("Carrefour " + " / ".join(ways[:2]) if ways else f"Carrefour {node}")
    return out


def place_cameras(
    rng: np.random.Generator,
    f: DocFactory,
    scale: float,
    signal_nodes_: np.ndarray,
    transit: Transit,
    building_xy: np.ndarray,
) -> list[dict[str, Any]]:
    """Traffic analytics at signals, enforcement on bus lanes, crowd in the centre, CCTV."""
    g = f.graph
    n = scaled(CAMERAS, scale, 4)
    n_traffic = min(len(signal_nodes_), round(0.35 * n))
    n_enf = round(0.15 * n)
    n_crowd = round(0.15 * n)
    n_cctv = n - n_traffic - n_enf - n_crowd
    xs, ys, usage = [], [], []

    tn = signal_nodes_[:n_traffic]
    xs.append(g.x[tn] - 12.0)
    ys.append(g.y[tn] + 12.0)
    usage += ["trafficAnalytics"] * n_traffic

    lanes = np.nonzero(g.bus_lane)[0]
    if len(lanes) < n_enf:
        lanes = np.nonzero(g.cls == ARTERIAL)[0]
    pick = np.sort(rng.choice(lanes, size=n_enf, replace=len(lanes) < n_enf))
    ex, ey, _ = edge_points(g, pick, np.full(n_enf, 0.5), 8.0)
    xs.append(ex)
    ys.append(ey)
    usage += ["enforcement"] * n_enf

    stop_xy = np.array([(s.x, s.y) for s in transit.stops.values()])
    central = stop_xy[
        np.argsort(np.hypot(stop_xy[:, 0], stop_xy[:, 1]), kind="stable")[: max(n_crowd, 1)]
    ]
    cx = central[np.arange(n_crowd) % len(central), 0] + rng.uniform(-25, 25, n_crowd)
    cy = central[np.arange(n_crowd) % len(central), 1] + rng.uniform(-25, 25, n_crowd)
    xs.append(cx)
    ys.append(cy)
    usage += ["crowd"] * n_crowd

    b = building_xy[rng.permutation(len(building_xy))[: min(n_cctv, len(building_xy))]]
    rest = n_cctv - len(b)
    urban_nodes = np.unique(g.u[g.urban & (g.cls == LOCAL)])
    more = rng.choice(urban_nodes, size=max(rest, 0), replace=False)
    xs.append(np.concatenate([b[:, 0] + 20.0, g.x[more] + 8.0]))
    ys.append(np.concatenate([b[:, 1] - 20.0, g.y[more] + 8.0]))
    usage += ["cctv"] * n_cctv

    x, y = np.concatenate(xs), np.concatenate(ys)
    muni, zone = f.locate(x, y)
    addresses = f.point_addresses(x, y, muni)
    label = {
        "trafficAnalytics": "Caméra trafic",
        "enforcement": "Caméra voie bus",
        "crowd": "Caméra affluence",
        "cctv": "Vidéoprotection",
    }
    pan = rng.uniform(0, 360, n).round(1)
    extra = [{"status": "online", "cameraUsage": usage[i], "pan": float(pan[i])} for i in range(n)]
    return f.docs(
        "Camera",
        local_ids(n, 4),
        x,
        y,
        [f"{label[usage[i]]} – {addresses[i][1]['streetAddress']}" for i in range(n)],
        [a[1] for a in addresses],
        extra,
        "CAM",
        install_dates(rng, n, 2008, 2025),
        muni,
        zone,
    )


def spaced_pick(
    rng: np.random.Generator, cand_x: np.ndarray, cand_y: np.ndarray, count: int, min_gap: float
) -> np.ndarray:
    """Up to ``count`` candidate indices, in random order, at least ``min_gap`` apart."""
    chosen: list[int] = []
    if count <= 0:
        return np.asarray(chosen, dtype=np.int64)
    for i in rng.permutation(len(cand_x)).tolist():
        if chosen:
            cx, cy = cand_x[chosen], cand_y[chosen]
            if np.min((cx - cand_x[i]) ** 2 + (cy - cand_y[i]) ** 2) < min_gap**2:
                continue
        chosen.append(i)
        if len(chosen) == count:
            break
    return np.asarray(chosen, dtype=np.int64)


def place_bike_stations(
    rng: np.random.Generator, f: DocFactory, scale: float, transit: Transit
) -> list[dict[str, Any]]:
    """Bike-sharing stations in the central city, tram stops first, 300 m apart at least."""
    n = scaled(BIKE_STATIONS, scale, 2)
    land = f.land
    tram = [s for sid, s in transit.stops.items() if sid.startswith("TR")]
    g = f.graph
    near = np.unique(g.u[g.urban & (g.cls == LOCAL)])
    near = near[np.hypot(g.x[near], g.y[near]) < 0.9 * land.core_radius]
    cand_x = np.concatenate([[s.x for s in tram], g.x[near]])
    cand_y = np.concatenate([[s.y for s in tram], g.y[near]])
    first = spaced_pick(rng, cand_x[: len(tram)], cand_y[: len(tram)], n // 2, 300.0)
    rest = spaced_pick(rng, cand_x, cand_y, 20 * n, 300.0)
    chosen = list(first.tolist())
    for i in rest.tolist():
        if len(chosen) >= n:
            break
        if i in chosen:
            continue
        cx, cy = cand_x[chosen], cand_y[chosen]
        if chosen and np.min((cx - cand_x[i]) ** 2 + (cy - cand_y[i]) ** 2) < 300.0**2:
            continue
        chosen.append(i)
    idx = np.asarray(chosen)
    x, y = cand_x[idx] + 10.0, cand_y[idx] - 10.0
    count = len(idx)
    muni, zone = f.locate(x, y)
    addresses = f.point_addresses(x, y, muni)
    total = rng.choice([15, 20, 20, 25, 30, 40], size=count)
    bikes = (total * rng.uniform(0.3, 0.7, count)).astype(int)
    extra = [
        {
            "totalSlotNumber": int(total[i]),
            "availableBikeNumber": int(bikes[i]),
            "freeSlotNumber": int(total[i] - bikes[i]),
            "status": "working",
        }
        for i in range(count)
    ]
    return f.docs(
        "BikeStation",
        local_ids(count, 3),
        x,
        y,
        [f"Station vélo {a[1]['streetAddress'].split(' ', 1)[1]}" for a in addresses],
        [a[1] for a in addresses],
        extra,
        "BK",
        install_dates(rng, count, 2012, 2024),
        muni,
        zone,
    )


def _bay_edges(
    rng: np.random.Generator,
    g: RoadGraph,
    centres: np.ndarray,
    radii: np.ndarray,
    need: int,
    per_edge: int,
) -> np.ndarray:
    """Long enough local street edges inside the given circles, in random order."""
    ok = (g.cls == LOCAL) & g.urban & (g.length >= 60.0)
    mx = (g.x[g.u] + g.x[g.v]) / 2
    my = (g.y[g.u] + g.y[g.v]) / 2
    inside = np.zeros(g.edge_count, dtype=bool)
    for (cx, cy), r in zip(centres, radii, strict=True):
        inside |= np.hypot(mx - cx, my - cy) < r
    cand = np.nonzero(ok & inside)[0]
    take = min(len(cand), math.ceil(need / per_edge))
    return np.sort(rng.choice(cand, size=take, replace=False))


def place_parking(rng: np.random.Generator, f: DocFactory, scale: float) -> list[dict[str, Any]]:
    """Runs of on-street parking spaces with sensors in the centre and town centres."""
    g = f.graph
    land = f.land
    n = scaled(PARKING_SPOTS, scale, 10)
    per_edge = 10
    centres = land.muni_xy
    radii = np.concatenate([[0.6 * land.core_radius], 0.5 * land.blob_radius[1:]])
    edges = _bay_edges(rng, g, centres, radii, n, per_edge)
    e = np.repeat(edges, per_edge)[:n]
    slot = np.tile(np.arange(per_edge), len(edges))[:n]
    frac = (0.2 + slot * 5.5 / np.maximum(g.length[e], 1.0)).clip(0.0, 0.95)
    x, y, _ = edge_points(g, e, frac, 4.0)
    muni, zone = f.locate(x, y)
    named = f.edge_addresses(e, frac, np.ones(n), muni)
    roll = rng.random(n)
    category = np.where(
        roll < 0.05, "disabled", np.where(roll < 0.10, "electricCharging", "onStreet")
    )
    occupied = rng.random(n) < 0.55
    extra = [
        {"status": "occupied" if occupied[i] else "free", "category": str(category[i])}
        for i in range(n)
    ]
    return f.docs(
        "ParkingSpot",
        local_ids(n),
        x,
        y,
        [f"Place {a[0]}" for a in named],
        [a[1] for a in named],
        extra,
        "PK",
        install_dates(rng, n, 2016, 2025),
        muni,
        zone,
    )


def place_delivery_areas(
    rng: np.random.Generator, f: DocFactory, scale: float
) -> list[dict[str, Any]]:
    """Delivery bays near junctions of central and commercial streets."""
    g = f.graph
    land = f.land
    n = scaled(DELIVERY_AREAS, scale, 3)
    centres = land.muni_xy
    radii = np.concatenate([[0.75 * land.core_radius], 0.6 * land.blob_radius[1:]])
    edges = _bay_edges(rng, g, centres, radii, n, 1)
    e = edges[:n]
    count = len(e)
    frac = np.full(count, 0.85)
    x, y, _ = edge_points(g, e, frac, -4.0)
    muni, zone = f.locate(x, y)
    named = f.edge_addresses(e, frac, -np.ones(count), muni)
    max_dur = rng.choice([1200, 1800, 1800, 2700], size=count)
    extra = [
        {"status": "free", "maximumParkingDuration": float(max_dur[i]), "overstay": False}
        for i in range(count)
    ]
    return f.docs(
        "DeliveryArea",
        local_ids(count, 4),
        x,
        y,
        [f"Aire de livraison {a[0]}" for a in named],
        [a[1] for a in named],
        extra,
        "DL",
        install_dates(rng, count, 2015, 2025),
        muni,
        zone,
    )
