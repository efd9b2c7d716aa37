"""The land of the metropole: boundary, municipalities, urban areas, zoning and the river.

Everything is in the metric plane of :mod:`citypilot.twin.geo`. Municipalities are
the Voronoi cells of their town-hall seeds, zones the Voronoi cells of zone seeds
inside each municipality, so "which municipality / zone is this point in" is a
nearest-seed query (vectorised, exact up to coordinate rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon

from citypilot.twin.geo import polygonal
from citypilot.twin.names import municipality_names

#: Reference figures of the metropole at scale 1.0.
POPULATION = 260_000
MUNICIPALITIES = 23
RADIUS_M = 9_000.0  # the metropole's radius; grows with sqrt(scale)
CORE_RADIUS_M = 3_200.0  # the dense central city
CENTRAL_SHARE = 0.55  # share of the population living in the central municipality
SUBURB_DENSITY = 2_500.0  # inhabitants per km² of a suburb's built-up area
ZONE_CATEGORIES_URBAN = ("residential", "commercial", "industrial", "park")
ZONE_URBAN_WEIGHTS = (0.70, 0.14, 0.10, 0.06)
ZONE_POPULATION_WEIGHT = {
    "centre": 3.0,
    "residential": 2.0,
    "commercial": 0.5,
    "industrial": 0.1,
    "park": 0.0,
    "other": 0.3,
}


@dataclass
class ZoneArea:
    """One zoning polygon: tessellation zones cover each municipality; overlays do not."""

    local_id: str
    category: str
    polygon: Polygon
    municipality: int
    population: int
    name: str


@dataclass
class Land:
    """Boundary, municipalities, urban blobs, zones and river of the generated city."""

    radius: float
    core_radius: float
    boundary: Polygon
    boundary_harmonics: np.ndarray  # (k, amplitude, phase) rows of the radius function
    muni_xy: np.ndarray  # (M, 2) town-hall seeds; index 0 is the central city
    muni_names: list[str]
    muni_population: np.ndarray
    muni_polygons: list[Polygon]
    blob_xy: np.ndarray  # (B, 2) centres of built-up areas
    blob_radius: np.ndarray  # (B,)
    blob_harmonics: np.ndarray  # (B, 2, 2): amplitude, phase for k=2, 3
    zones: list[ZoneArea]
    zone_seeds: list[np.ndarray]  # per municipality: (Z_m, 2) seeds of its tessellation zones
    zone_index: list[list[int]]  # per municipality: index into ``zones`` of each seed
    river: LineString
    flood: Polygon
    overlay_zones: list[ZoneArea] = field(default_factory=list)

    def inside(self, x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Which points lie inside the metropole's boundary (by ``margin`` metres at least)."""
        r = np.hypot(x, y)
        theta = np.arctan2(y, x)
        return r <= self._boundary_r(theta) - margin

    def _boundary_r(self, theta: np.ndarray) -> np.ndarray:
        r = np.ones_like(theta)
        for k, amp, phase in self.boundary_harmonics:
            r = r + amp * np.sin(k * theta + phase)
        return self.radius * r

    def urban_weight(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """How built-up each point is: >= 1 inside a built-up area, falling to 0 outside."""
        best = np.zeros(np.shape(x))
        for (cx, cy), r0, harm in zip(
            self.blob_xy, self.blob_radius, self.blob_harmonics, strict=True
        ):
            dx, dy = x - cx, y - cy
            theta = np.arctan2(dy, dx)
            r = r0 * (
                1.0
                + harm[0, 0] * np.sin(2 * theta + harm[0, 1])
                + harm[1, 0] * np.sin(3 * theta + harm[1, 1])
            )
            best = np.maximum(best, r / np.maximum(np.hypot(dx, dy), 1.0))
        return best

    def urban(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which points lie in a built-up area."""
        return self.urban_weight(x, y) >= 1.0

    def municipality_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the municipality of each point (nearest town-hall seed)."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        best = np.zeros(x.shape, dtype=np.int32)
        best_d = np.full(x.shape, np.inf)
        for m, (sx, sy) in enumerate(self.muni_xy):
            d = (x - sx) ** 2 + (y - sy) ** 2
            closer = d < best_d
            best[closer] = m
            best_d[closer] = d[closer]
        return best

    def zone_of(self, x: np.ndarray, y: np.ndarray, muni: np.ndarray) -> np.ndarray:
        """Index into ``zones`` of the tessellation zone of each point."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        out = np.zeros(x.shape, dtype=np.int32)
        for m, seeds in enumerate(self.zone_seeds):
            sel = np.nonzero(muni == m)[0]
            if len(sel) == 0:
                continue
            d = (x[sel, None] - seeds[None, :, 0]) ** 2 + (y[sel, None] - seeds[None, :, 1]) ** 2
            out[sel] = np.asarray(self.zone_index[m])[np.argmin(d, axis=1)]
        return out

    def distance_to_river(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance in metres of each point to the river's centre line."""
        return shapely.distance(shapely.points(np.column_stack([x, y])), self.river)


def build_land(rng: np.random.Generator, scale: float) -> Land:
    """Lay out boundary, municipalities, built-up areas, zoning and river for ``scale``."""
    linear = math.sqrt(scale)
    radius = RADIUS_M * linear
    core_radius = CORE_RADIUS_M * linear
    harmonics = np.array(
        [[k, rng.uniform(0.02, 0.06), rng.uniform(0, 2 * math.pi)] for k in (2, 3, 5)]
    )
    theta = np.linspace(0, 2 * math.pi, 240, endpoint=False)
    r = radius * (1 + sum(a * np.sin(k * theta + p) for k, a, p in harmonics))
    boundary = Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))

    n_muni = max(3, round(MUNICIPALITIES * scale))
    seeds = _municipality_seeds(rng, n_muni, radius, harmonics)
    names = municipality_names(rng, n_muni)
    population = _municipality_population(rng, seeds, round(POPULATION * scale))
    cells = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=boundary, ordered=True)
    polygons = [polygonal(cell.intersection(boundary)) for cell in cells.geoms]

    blob_xy = seeds.copy()
    blob_radius = np.empty(n_muni)
    blob_radius[0] = core_radius
    blob_radius[1:] = np.maximum(250.0, np.sqrt(population[1:] / SUBURB_DENSITY / math.pi) * 1000.0)
    blob_harm = np.stack(
        [
            np.column_stack([rng.uniform(0.05, 0.18, n_muni), rng.uniform(0, 2 * math.pi, n_muni)]),
            np.column_stack([rng.uniform(0.03, 0.10, n_muni), rng.uniform(0, 2 * math.pi, n_muni)]),
        ],
        axis=1,
    )
    river = _river(rng, radius, boundary)
    land = Land(
        radius=radius,
        core_radius=core_radius,
        boundary=boundary,
        boundary_harmonics=harmonics,
        muni_xy=seeds,
        muni_names=names,
        muni_population=population,
        muni_polygons=polygons,
        blob_xy=blob_xy,
        blob_radius=blob_radius,
        blob_harmonics=blob_harm,
        zones=[],
        zone_seeds=[],
        zone_index=[],
        river=river,
        flood=Polygon(),
    )
    _zoning(rng, land)
    _overlays(land)
    return land


def _municipality_seeds(
    rng: np.random.Generator, count: int, radius: float, harmonics: np.ndarray
) -> np.ndarray:
    """The central seed at the origin, the others spread by best-candidate sampling."""
    seeds = [(0.0, 0.0)]
    while len(seeds) < count:
        r = radius * np.sqrt(rng.uniform(0.5**2, 0.86**2, 40))
        t = rng.uniform(0, 2 * math.pi, 40)
        edge = 1 + sum(a * np.sin(k * t + p) for k, a, p in harmonics)
        cand = np.column_stack([r * edge * np.cos(t), r * edge * np.sin(t)])
        have = np.asarray(seeds)
        d = np.min(
            np.hypot(cand[:, None, 0] - have[None, :, 0], cand[:, None, 1] - have[None, :, 1]), 1
        )
        seeds.append(tuple(cand[int(np.argmax(d))]))
    return np.asarray(seeds)


def _municipality_population(rng: np.random.Generator, seeds: np.ndarray, total: int) -> np.ndarray:
    """Central city takes CENTRAL_SHARE; suburbs shrink with distance (Zipf-like)."""
    n = len(seeds)
    dist = np.hypot(seeds[1:, 0], seeds[1:, 1])
    order = np.argsort(dist * rng.uniform(0.8, 1.25, n - 1), kind="stable")
    weights = np.empty(n - 1)
    weights[order] = 1.0 / (np.arange(n - 1) + 1.5) ** 0.85
    weights = weights / weights.sum() * (1 - CENTRAL_SHARE)
    shares = np.concatenate([[CENTRAL_SHARE], weights])
    return _split_integer(total, shares)


def _split_integer(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    weights = np.asarray(weights, dtype=float)
    if weights.sum() <= 0:
        weights = np.ones_like(weights)
    exact = weights / weights.sum() * total
    out = np.floor(exact).astype(np.int64)
    rest = total - int(out.sum())
    if rest > 0:
        out[np.argsort(-(exact - out), kind="stable")[:rest]] += 1
    return out


def _river(rng: np.random.Generator, radius: float, boundary: Polygon) -> LineString:
    """A meandering river crossing the metropole west to east, south of the centre."""
    x = np.arange(-1.2 * radius, 1.2 * radius, 60.0)
    p1, p2, p3 = rng.uniform(0, 2 * math.pi, 3)
    y = (
        -0.16 * radius
        + 0.07 * radius * np.sin(2 * math.pi * x / (1.1 * radius) + p1)
        + 0.025 * radius * np.sin(2 * math.pi * x / (0.37 * radius) + p2)
        + 0.008 * radius * np.sin(2 * math.pi * x / (0.11 * radius) + p3)
    )
    clipped = LineString(np.column_stack([x, y])).intersection(boundary)
    if clipped.geom_type != "LineString":  # keep the longest piece
        clipped = max(clipped.geoms, key=lambda g: g.length)
    return clipped


def _zoning(rng: np.random.Generator, land: Land) -> None:
    """Tessellate each municipality into zones with a category and a population."""
    for m, poly in enumerate(land.muni_polygons):
        area_km2 = poly.area / 1e6
        n = max(3, round(area_km2 * 0.3 + land.muni_population[m] / 4000.0))
        seeds = _points_in(rng, poly, n)
        cells = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=poly, ordered=True)
        urban_w = land.urban_weight(seeds[:, 0], seeds[:, 1])
        dist_centre = np.hypot(seeds[:, 0], seeds[:, 1])
        draw = rng.choice(len(ZONE_CATEGORIES_URBAN), size=n, p=ZONE_URBAN_WEIGHTS)
        categories = []
        for k in range(n):
            if m == 0 and dist_centre[k] < 0.3 * land.core_radius:
                categories.append("centre")
            elif urban_w[k] >= 1.0:
                categories.append(ZONE_CATEGORIES_URBAN[draw[k]])
            else:
                categories.append("other")
        areas = np.array([c.area for c in cells.geoms])
        weights = (
            np.array([ZONE_POPULATION_WEIGHT[c] for c in categories])
            * np.sqrt(areas)
            * np.clip(urban_w, 0.2, 1.5)
        )
        pops = _split_integer(int(land.muni_population[m]), weights)
        first = len(land.zones)
        for k, cell in enumerate(cells.geoms):
            zone_poly = polygonal(cell.intersection(poly))
            land.zones.append(
                ZoneArea(
                    local_id=f"{first + k + 1:04d}",
                    category=categories[k],
                    polygon=zone_poly,
                    municipality=m,
                    population=int(pops[k]),
                    name=f"{land.muni_names[m]} – {categories[k]} {k + 1}",
                )
            )
        land.zone_seeds.append(seeds)
        land.zone_index.append(list(range(first, first + n)))


def _points_in(rng: np.random.Generator, poly: Polygon, n: int) -> np.ndarray:
    """``n`` distinct random points inside ``poly`` (rejection sampling)."""
    minx, miny, maxx, maxy = poly.bounds
    found: list[np.ndarray] = []
    count = 0
    while count < n:
        cand = np.column_stack([rng.uniform(minx, maxx, 4 * n), rng.uniform(miny, maxy, 4 * n)])
        ok = cand[shapely.contains_xy(poly, cand[:, 0], cand[:, 1])]
        found.append(ok)
        count += len(ok)
    return np.concatenate(found)[:n]


def _overlays(land: Land) -> None:
    """Flood-prone zones along the river, the low-emission zone and the pedestrian centre."""
    width = 220.0 + 60.0 * land.radius / RADIUS_M
    land.flood = polygonal(land.river.buffer(width, quad_segs=4).intersection(land.boundary))
    k = 0
    for m, poly in enumerate(land.muni_polygons):
        piece = polygonal(land.flood.intersection(poly))
        if piece.is_empty or piece.area < 0.02e6:
            continue
        k += 1
        land.overlay_zones.append(
            ZoneArea(f"flood-{k:02d}", "floodProne", piece, m, 0, f"Zone inondable {k}")
        )
    lez = polygonal(
        Point(0, 0)
        .buffer(0.55 * land.core_radius, quad_segs=16)
        .intersection(land.muni_polygons[0])
    )
    land.overlay_zones.append(
        ZoneArea("lez-01", "lowEmission", lez, 0, 0, "Zone à faibles émissions")
    )
    half = 0.08 * land.core_radius
    pedestrian = Polygon(
        [(-1.6 * half, -half), (1.6 * half, -half), (1.6 * half, half), (-1.6 * half, half)]
    )
    land.overlay_zones.append(
        ZoneArea("pedestrian-01", "pedestrian", pedestrian, 0, 0, "Plateau piétonnier")
    )
