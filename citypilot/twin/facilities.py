"""Public buildings and their badge readers, the fleets based in them, and environment sensors.

Buildings are footprints in the middle of street blocks; access points are doors
on their outline; police units and technical vehicles have a home base building;
air-quality stations sit near traffic or in the background; water-level and
water-quality sensors are on the river and the networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from citypilot.model.ids import entity_id
from citypilot.twin.entities import DocFactory, install_dates, local_ids, rel
from citypilot.twin.geo import geometry_to_lonlat
from citypilot.twin.street_assets import scaled, spaced_pick
from citypilot.twin.transit import Transit

#: category → (count at scale 1, min count, width m, depth m, floors lo, floors hi, doors)
BUILDING_PLAN: dict[str, tuple[int, int, float, float, int, int, int]] = {
    "school": (55, 2, 55, 35, 1, 3, 4),
    "library": (12, 1, 30, 25, 1, 2, 3),
    "sportsCentre": (16, 1, 60, 40, 1, 1, 3),
    "museum": (6, 1, 45, 35, 2, 3, 4),
    "office": (12, 1, 40, 30, 4, 8, 6),
    "policeStation": (6, 1, 35, 25, 2, 3, 5),
    "fireStation": (5, 1, 45, 30, 1, 2, 3),
    "hospital": (3, 1, 65, 50, 5, 9, 8),
    "depot": (6, 1, 65, 45, 1, 1, 3),
    "other": (3, 0, 25, 20, 1, 2, 2),
}
TOWN_HALL = ("townHall", 40, 28, 2, 3, 5)
POLICE_UNITS = 25
TECHNICAL_FLEET = {
    "repair": 8,
    "lighting": 6,
    "sweeper": 8,
    "tow": 3,
    "gritter": 3,
    "water": 4,
    "fireEngine": 5,
    "ambulance": 3,
}
AIR_STATIONS = 15
AIR_DESCRIPTIONS = {
    "trafic": "Air quality station (traffic)",
    "fond urbain": "Air quality station (urban background)",
}
RIVER_GAUGES = 8
NETWORK_LEVEL_SENSORS = 5
RIVER_QUALITY_PROBES = 4
NETWORK_QUALITY_PROBES = 3


@dataclass
class BuildingSite:
    """A placed public building: its entity id, category, centre, footprint and base name."""

    id: str
    category: str
    x: float
    y: float
    footprint: Polygon
    name: str


def _blocks(f: DocFactory) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centres and orientation of built-up street blocks (quads of four grid nodes)."""
    g = f.graph
    grid = np.nonzero(g.node_grid[:, 0] > -(10**6))[0]
    gi, gj = g.node_grid[grid, 0], g.node_grid[grid, 1]
    key = gi * 100_000 + gj
    order = np.argsort(key)
    sk, sn = key[order], grid[order]

    def lookup(k: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(sk, k), 0, len(sk) - 1)
        return np.where(sk[pos] == k, sn[pos], -1)

    a = grid
    b, c, d = lookup(key + 100_000), lookup(key + 1), lookup(key + 100_001)
    ok = (b >= 0) & (c >= 0) & (d >= 0)
    a, b, c, d = a[ok], b[ok], c[ok], d[ok]
    cx = (g.x[a] + g.x[b] + g.x[c] + g.x[d]) / 4
    cy = (g.y[a] + g.y[b] + g.y[c] + g.y[d]) / 4
    angle = np.arctan2(g.y[b] - g.y[a], g.x[b] - g.x[a])
    urban = f.land.urban(cx, cy)
    return cx[urban], cy[urban], angle[urban], np.hypot(cx[urban], cy[urban])


def _footprint(x: float, y: float, angle: float, width: float, depth: float) -> Polygon:
    ca, sa = math.cos(angle), math.sin(angle)
    pts = []
    for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        px, py = dx * width / 2, dy * depth / 2
        pts.append((x + px * ca - py * sa, y + px * sa + py * ca))
    return Polygon(pts)


def place_buildings(
    rng: np.random.Generator, f: DocFactory, scale: float, transit: Transit
) -> tuple[list[dict[str, Any]], list[BuildingSite]]:
    """Town halls, schools, depots, stations, hospitals... in street blocks."""
    land = f.land
    bx, by, bangle, br = _blocks(f)
    used = np.zeros(len(bx), dtype=bool)
    plan: list[tuple[str, int]] = []  # (category, block index)

    def take(cand: np.ndarray, count: int, gap: float) -> list[int]:
        cand = cand[~used[cand]]
        picked = cand[spaced_pick(rng, bx[cand], by[cand], count, gap)] if len(cand) else cand
        used[picked] = True
        return picked.tolist()

    for m in range(len(land.muni_names)):
        d = np.hypot(bx - land.muni_xy[m, 0], by - land.muni_xy[m, 1])
        d[used] = np.inf
        k = int(np.argmin(d))
        used[k] = True
        plan.append(("townHall", k))
    for _name, dx, dy in transit.depots:
        d = np.hypot(bx - dx, by - dy)
        d[used] = np.inf
        k = int(np.argmin(d))
        used[k] = True
        plan.append(("depot", k))
    everywhere = np.arange(len(bx))
    central = np.nonzero(br < 0.4 * land.core_radius)[0]
    fringe = np.nonzero((br > 0.7 * land.core_radius) & (br < 1.3 * land.core_radius))[0]
    for category, (n1, lo, *_rest) in BUILDING_PLAN.items():
        count = scaled(n1, scale, lo)
        if category == "depot":
            count = max(0, count - len(transit.depots)) or 1
        if category in ("museum", "office"):
            cand, gap = central, 150.0
        elif category == "depot":
            cand, gap = fringe, 1500.0
        elif category in ("policeStation", "fireStation", "hospital"):
            cand, gap = everywhere, 0.35 * land.radius / math.sqrt(max(count, 1))
        else:
            cand, gap = everywhere, 350.0
        for k in take(cand, count, gap):
            plan.append((category, k))
        if len([p for p in plan if p[0] == category]) < count:  # gap too wide: relax it
            for k in take(everywhere, count - len([p for p in plan if p[0] == category]), 100.0):
                plan.append((category, k))

    n = len(plan)
    ids = local_ids(n, 4)
    x = np.array([bx[k] for _, k in plan])
    y = np.array([by[k] for _, k in plan])
    muni, zone = f.locate(x, y)
    addresses = f.point_addresses(x, y, muni)
    sites: list[BuildingSite] = []
    geometries, names, extra = [], [], []
    depot_names = iter([d[0] for d in transit.depots])
    for i, (category, k) in enumerate(plan):
        spec = TOWN_HALL[1:] if category == "townHall" else BUILDING_PLAN[category][2:]
        width, depth, f_lo, f_hi, _doors = spec
        poly = _footprint(bx[k], by[k], bangle[k], width, depth)
        street = addresses[i][1]["streetAddress"].split(" ", 1)[1]
        name = _building_name(category, land.muni_names[int(muni[i])], street, int(muni[i]) == 0)
        if category == "depot":
            name = next(depot_names, f"Centre technique {street}")
        sites.append(
            BuildingSite(
                entity_id("Building", ids[i]), category, float(bx[k]), float(by[k]), poly, name
            )
        )
        geometries.append(geometry_to_lonlat(poly))
        names.append(name)
        extra.append(
            {
                "category": category,
                "floorsAboveGround": int(rng.integers(f_lo, f_hi + 1)),
                "occupancy": 0,
                "status": "closed",
            }
        )
    docs = f.docs(
        "Building",
        ids,
        x,
        y,
        names,
        [a[1] for a in addresses],
        extra,
        "BLD",
        install_dates(rng, n, 1890, 2020),
        muni,
        zone,
        geometries,
    )
    return docs, sites


def _building_name(category: str, town: str, street: str, central: bool) -> str:
    base = street.split(" ", 1)[1] if " " in street else street
    return {
        "townHall": "Hôtel de ville" if central else f"Mairie de {town}",
        "school": f"École {base}",
        "library": f"Médiathèque {base}",
        "sportsCentre": f"Gymnase {base}",
        "museum": f"Musée {base}",
        "office": f"Centre administratif {base}",
        "policeStation": f"Police municipale – {town}",
        "fireStation": f"Centre de secours – {town}",
        "hospital": f"Centre hospitalier {base}",
        "depot": f"Centre technique {base}",
        "other": f"Maison des associations {base}",
    }[category]


def place_access_points(
    rng: np.random.Generator, f: DocFactory, sites: list[BuildingSite]
) -> list[dict[str, Any]]:
    """Badge readers on the doors of each building (count by category)."""
    xs, ys, names, refs = [], [], [], []
    for site in sites:
        doors = TOWN_HALL[5] if site.category == "townHall" else BUILDING_PLAN[site.category][6]
        ring = LineString(site.footprint.exterior.coords)
        for k in range(doors):
            p = ring.interpolate((k + 0.37) / doors, normalized=True)
            xs.append(p.x)
            ys.append(p.y)
            names.append(f"{site.name} – porte {k + 1}")
            refs.append(site.id)
    x, y = np.array(xs), np.array(ys)
    n = len(xs)
    muni, zone = f.locate(x, y)
    extra = [
        {
            "status": "online",
            "locked": True,
            "badgesEnabled": True,
            "accessCount": 0,
            "refBuilding": rel(refs[i]),
        }
        for i in range(n)
    ]
    return f.docs(
        "AccessPoint",
        local_ids(n, 4),
        x,
        y,
        names,
        None,
        extra,
        "AP",
        install_dates(rng, n, 2010, 2025),
        muni,
        zone,
    )


def place_units(
    rng: np.random.Generator, f: DocFactory, scale: float, sites: list[BuildingSite]
) -> list[dict[str, Any]]:
    """Police units at police stations; technical vehicles at depots, fire stations, hospitals."""
    by_cat: dict[str, list[BuildingSite]] = {}
    for s in sites:
        by_cat.setdefault(s.category, []).append(s)
    docs: list[dict[str, Any]] = []
    stations = by_cat.get("policeStation") or by_cat["townHall"][:1]
    n_police = scaled(POLICE_UNITS, scale, 2)
    homes = [stations[k % len(stations)] for k in range(n_police)]
    docs += _fleet(
        rng,
        f,
        "PoliceUnit",
        homes,
        [f"PM-{k + 1:02d}" for k in range(n_police)],
        [{"status": "available"} for _ in range(n_police)],
        "PU",
    )
    homes, kinds = [], []
    for kind, n1 in TECHNICAL_FLEET.items():
        base_cat = {"fireEngine": "fireStation", "ambulance": "hospital"}.get(kind, "depot")
        bases = by_cat.get(base_cat) or by_cat["depot"]
        technical = [b for b in bases if not b.name.startswith("Dépôt")] or bases
        for k in range(scaled(n1, scale, 1)):
            homes.append(technical[k % len(technical)])
            kinds.append(kind)
    prefix = {
        "repair": "VOI",
        "lighting": "ECL",
        "sweeper": "PRO",
        "tow": "FOU",
        "gritter": "SEL",
        "water": "EAU",
        "fireEngine": "FPT",
        "ambulance": "VSAV",
    }
    counters: dict[str, int] = {}
    calls = []
    for kind in kinds:
        counters[kind] = counters.get(kind, 0) + 1
        calls.append(f"{prefix[kind]}-{counters[kind]:02d}")
    docs += _fleet(
        rng,
        f,
        "TechnicalVehicle",
        homes,
        calls,
        [{"vehicleType": kind, "status": "atBase"} for kind in kinds],
        "TV",
    )
    return docs


def _fleet(
    rng: np.random.Generator,
    f: DocFactory,
    type_name: str,
    homes: list[BuildingSite],
    calls: list[str],
    extra: list[dict[str, Any]],
    serial: str,
) -> list[dict[str, Any]]:
    n = len(homes)
    slot = np.arange(n) % 6
    x = np.array([h.x for h in homes]) + 6.0 * slot - 15.0
    y = np.array([h.y for h in homes]) - 8.0
    for k in range(n):
        extra[k] = {
            **extra[k],
            "callSign": calls[k],
            "speed": 0.0,
            "refHomeBase": rel(homes[k].id),
        }
    return f.docs(
        type_name,
        local_ids(n, 3),
        x,
        y,
        [f"{calls[k]} ({homes[k].name})" for k in range(n)],
        None,
        extra,
        serial,
        install_dates(rng, n, 2012, 2025),
    )


def place_air_stations(
    rng: np.random.Generator, f: DocFactory, scale: float, signal_nodes_: np.ndarray
) -> list[dict[str, Any]]:
    """Air-quality stations: half at busy junctions, half in the urban background."""
    g = f.graph
    n = scaled(AIR_STATIONS, scale, 2)
    n_traffic = n // 2
    ti = spaced_pick(rng, g.x[signal_nodes_], g.y[signal_nodes_], n_traffic, 1000.0)
    tx, ty = g.x[signal_nodes_[ti]] + 15.0, g.y[signal_nodes_[ti]] - 15.0
    zones = [z for z in f.land.zones if z.category in ("residential", "park", "centre")]
    zx = np.array([z.polygon.representative_point().x for z in zones])
    zy = np.array([z.polygon.representative_point().y for z in zones])
    far = (
        np.min(np.hypot(zx[:, None] - tx[None, :], zy[:, None] - ty[None, :]), axis=1)
        if len(tx)
        else np.full(len(zx), np.inf)
    )
    zi = spaced_pick(rng, zx, zy, 4 * n, 800.0)
    zi = zi[far[zi] > 500.0][: n - len(ti)]
    x, y = np.concatenate([tx, zx[zi]]), np.concatenate([ty, zy[zi]])
    count = len(x)
    muni, zone = f.locate(x, y)
    addresses = f.point_addresses(x, y, muni)
    kinds = ["trafic"] * len(ti) + ["fond urbain"] * (count - len(ti))
    return f.docs(
        "AirQualityObserved",
        local_ids(count, 3),
        x,
        y,
        [
            f"Station {kinds[i]} – {addresses[i][1]['streetAddress'].split(' ', 1)[1]}"
            for i in range(count)
        ],
        [a[1] for a in addresses],
        [{"description": AIR_DESCRIPTIONS[kinds[i]]} for i in range(count)],
        "AQ",
        install_dates(rng, count, 2000, 2024),
        muni,
        zone,
    )


def place_water_sensors(
    rng: np.random.Generator, f: DocFactory, scale: float
) -> list[dict[str, Any]]:
    """River gauges and quality probes along the river; storm-basin and network sensors."""
    land = f.land
    g = f.graph
    river = land.river
    docs: list[dict[str, Any]] = []
    n_gauge = scaled(RIVER_GAUGES, scale, 2)
    n_net = scaled(NETWORK_LEVEL_SENSORS, scale, 1)
    fr = (np.arange(n_gauge) + 0.5) / n_gauge
    gp = shapely.line_interpolate_point(river, fr, normalized=True)
    gx, gy = shapely.get_x(gp), shapely.get_y(gp)
    basins = np.unique(g.u[g.urban & (g.cls != 2)])
    dist = land.distance_to_river(g.x[basins], g.y[basins])
    basins = basins[(dist > 150) & (dist < 900)]
    pick = basins[spaced_pick(rng, g.x[basins], g.y[basins], n_net, 1200.0)]
    x = np.concatenate([gx, g.x[pick] + 20.0])
    y = np.concatenate([gy, g.y[pick] + 20.0])
    count = len(x)
    muni, zone = f.locate(x, y)
    addresses = f.point_addresses(x, y, muni)
    alert = np.concatenate(
        [rng.uniform(2.8, 3.6, n_gauge), rng.uniform(1.6, 2.2, len(pick))]
    ).round(2)
    names = [
        f"Échelle {land.muni_names[int(muni[i])]} PK {fr[i] * river.length / 1000:.1f}"
        for i in range(n_gauge)
    ]
    names += [
        f"Bassin d'orage {addresses[i][1]['streetAddress'].split(' ', 1)[1]}"
        for i in range(n_gauge, count)
    ]
    extra = [
        {
            "description": "River gauge" if i < n_gauge else "Storm basin level sensor",
            "alertLevel": float(alert[i]),
            "status": "ok",
        }
        for i in range(count)
    ]
    docs += f.docs(
        "WaterLevelSensor",
        local_ids(count, 3),
        x,
        y,
        names,
        [a[1] for a in addresses],
        extra,
        "WL",
        install_dates(rng, count, 2005, 2024),
        muni,
        zone,
    )
    n_rq = scaled(RIVER_QUALITY_PROBES, scale, 1)
    n_nq = scaled(NETWORK_QUALITY_PROBES, scale, 1)
    qp = shapely.line_interpolate_point(river, (np.arange(n_rq) + 0.3) / n_rq, normalized=True)
    net = np.unique(g.u[g.urban])
    net_pick = net[spaced_pick(rng, g.x[net], g.y[net], n_nq, 2000.0)]
    x = np.concatenate([shapely.get_x(qp), g.x[net_pick] + 25.0])
    y = np.concatenate([shapely.get_y(qp), g.y[net_pick] - 25.0])
    count = len(x)
    muni, zone = f.locate(x, y)
    addresses = f.point_addresses(x, y, muni)
    names = [f"Sonde rivière {land.muni_names[int(muni[i])]}" for i in range(n_rq)]
    names += [
        f"Réservoir {addresses[i][1]['streetAddress'].split(' ', 1)[1]}" for i in range(n_rq, count)
    ]
    extra = [
        {
            "description": "River water quality probe"
            if i < n_rq
            else "Drinking water network probe",
            "status": "ok",
        }
        for i in range(count)
    ]
    docs += f.docs(
        "WaterQualityObserved",
        local_ids(count, 3),
        x,
        y,
        names,
        [a[1] for a in addresses],
        extra,
        "WQ",
        install_dates(rng, count, 2008, 2024),
        muni,
        zone,
    )
    return docs
