"""The road graph: a warped hierarchical grid of streets, arterials, a ring road and bridges.

Built-up areas get a fine street grid (100 m blocks), the countryside a coarse one
(every 4th line), every 12th line through a built-up area and every 24th line
across the land is an arterial, and a grade-separated ring road circles the
central city with interchanges on the arterials. A smooth displacement field and
a small jitter make the grid organic. Streets crossing the river keep only their
bridges. The graph is strongly connected: any node can reach any other.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from citypilot.twin.geo import to_lonlat
from citypilot.twin.land import Land
from citypilot.twin.names import RING_NAME, street_names

BLOCK_M = 100.0  # street spacing in built-up areas
COARSE_EVERY = 4  # rural roads on every 4th grid line
ARTERIAL_EVERY_URBAN = 12  # boulevards every 1.2 km in built-up areas
ARTERIAL_EVERY_RURAL = 24  # main roads every 2.4 km across the land
BRIDGE_EVERY = 8  # a local street bridge every 800 m
DROP_LOCAL = 0.06  # share of local urban street segments left out (irregular blocks)
RING_NODE_SPACING_M = 250.0
BOUNDARY_MARGIN_M = 40.0  # keeps roadside assets inside the metropole's boundary
CLASS_NAMES = ("local", "arterial", "ring")
LOCAL, ARTERIAL, RING = 0, 1, 2
ORIENT_H, ORIENT_V, ORIENT_RING, ORIENT_RAMP = 0, 1, 2, 3


@dataclass
class RoadGraph:
    """Nodes and directed-or-not edges of the street network, as parallel numpy arrays.

    An edge runs from ``u`` to ``v``; when ``oneway`` is set it may only be driven
    that way. ``cls`` indexes CLASS_NAMES. Each edge belongs to a named ``way``
    (one street in one municipality); ``along`` orders the edges of a way.
    """

    x: np.ndarray
    y: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    u: np.ndarray
    v: np.ndarray
    cls: np.ndarray
    oneway: np.ndarray
    maxspeed: np.ndarray
    lanes: np.ndarray
    bus_lane: np.ndarray
    lit: np.ndarray
    bridge: np.ndarray
    urban: np.ndarray
    length: np.ndarray
    municipality: np.ndarray
    way: np.ndarray
    along: np.ndarray
    way_offset: np.ndarray  # metres from the start of the way to the edge's low end
    way_names: list[str]
    way_orient: np.ndarray
    node_grid: np.ndarray  # (N, 2) grid indices of a node, (-10**6, k) for ring nodes

    @property
    def node_count(self) -> int:
        """Number of nodes."""
        return len(self.x)

    @property
    def edge_count(self) -> int:
        """Number of edges (a two-way street segment counts once)."""
        return len(self.u)

    def degree(self) -> np.ndarray:
        """Number of edges touching each node."""
        return np.bincount(self.u, minlength=self.node_count) + np.bincount(
            self.v, minlength=self.node_count
        )

    def adjacency(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward adjacency in CSR form: (indptr, neighbour node, edge index)."""
        two = ~self.oneway
        src = np.concatenate([self.u, self.v[two]])
        dst = np.concatenate([self.v, self.u[two]])
        eid = np.concatenate([np.arange(self.edge_count), np.nonzero(two)[0]])
        order = np.lexsort((dst, src))
        indptr = np.zeros(self.node_count + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=self.node_count), out=indptr[1:])
        return indptr, dst[order], eid[order]

    def nearest_node(self, x: float, y: float, mask: np.ndarray | None = None) -> int:
        """Index of the node nearest a metric position (optionally among ``mask``)."""
        d = (self.x - x) ** 2 + (self.y - y) ** 2
        if mask is not None:
            d = np.where(mask, d, np.inf)
        return int(np.argmin(d))


class Router:
    """A* shortest paths on a road graph with a per-edge cost (metres-like units)."""

    def __init__(self, graph: RoadGraph, cost: np.ndarray) -> None:
        indptr, nbr, eid = graph.adjacency()
        self._indptr = indptr.tolist()
        self._nbr = nbr.tolist()
        self._eid = eid.tolist()
        self._cost = cost.tolist()
        self._x = graph.x.tolist()
        self._y = graph.y.tolist()
        ratio = cost / np.maximum(graph.length, 1e-6)
        self._min_ratio = float(np.min(ratio[np.isfinite(ratio)]))

    def path(self, src: int, dst: int) -> tuple[list[int], list[int]] | None:
        """Nodes and edges of the cheapest path from ``src`` to ``dst`` (None if unreachable)."""
        if src == dst:
            return [src], []
        xs, ys, k = self._x, self._y, self._min_ratio
        tx, ty = xs[dst], ys[dst]
        best = {src: 0.0}
        came: dict[int, tuple[int, int]] = {}
        heap = [(math.hypot(xs[src] - tx, ys[src] - ty) * k, 0.0, src)]
        indptr, nbr, eid, cost = self._indptr, self._nbr, self._eid, self._cost
        done: set[int] = set()
        while heap:
            _, g, node = heapq.heappop(heap)
            if node == dst:
                break
            if node in done:
                continue
            done.add(node)
            for pos in range(indptr[node], indptr[node + 1]):
                c = cost[eid[pos]]
                if c == math.inf:
                    continue
                nxt = nbr[pos]
                ng = g + c
                if ng < best.get(nxt, math.inf):
                    best[nxt] = ng
                    came[nxt] = (node, eid[pos])
                    h = math.hypot(xs[nxt] - tx, ys[nxt] - ty) * k
                    heapq.heappush(heap, (ng + h, ng, nxt))
        if dst not in came:
            return None
        nodes, edges = [dst], []
        while nodes[-1] != src:
            prev, edge = came[nodes[-1]]
            edges.append(edge)
            nodes.append(prev)
        return nodes[::-1], edges[::-1]


def build_roads(rng: np.random.Generator, land: Land) -> RoadGraph:
    """Generate the road graph of ``land``."""
    n = math.ceil(1.08 * land.radius / BLOCK_M)
    idx = np.arange(-n, n + 1)
    side = len(idx)
    gi, gj = np.meshgrid(idx, idx, indexing="ij")
    gi, gj = gi.ravel(), gj.ravel()
    gx, gy = gi * BLOCK_M, gj * BLOCK_M
    # node positions: grid + smooth warp + jitter; nodes must end up inside the boundary
    warp = _warp(rng)
    wx, wy = warp(gx, gy)
    px = gx + wx + rng.uniform(-12, 12, len(gx))
    py = gy + wy + rng.uniform(-12, 12, len(gy))
    inside = land.inside(px, py, margin=BOUNDARY_MARGIN_M)

    def node_id(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (i + n) * side + (j + n)

    # candidate grid edges: horizontal (along x, on line j) and vertical (along y, on line i)
    edges = []
    for orient in (ORIENT_H, ORIENT_V):
        if orient == ORIENT_H:
            sel = gi < n
            a_i, a_j = gi[sel], gj[sel]
            b_i, b_j = a_i + 1, a_j
            line, pos = a_j, a_i
        else:
            sel = gj < n
            a_i, a_j = gi[sel], gj[sel]
            b_i, b_j = a_i, a_j + 1
            line, pos = a_i, a_j
        a, b = node_id(a_i, a_j), node_id(b_i, b_j)
        mx, my = (gx[a] + gx[b]) / 2, (gy[a] + gy[b]) / 2
        weight = land.urban_weight(mx, my)
        urban = weight >= 1.0
        coarse = line % COARSE_EVERY == 0
        keep = inside[a] & inside[b] & (urban | coarse)
        arterial = (urban & (line % ARTERIAL_EVERY_URBAN == 0)) | (line % ARTERIAL_EVERY_RURAL == 0)
        drop = urban & ~coarse & ~arterial & (rng.random(len(a)) < DROP_LOCAL)
        keep &= ~drop
        k = np.nonzero(keep)[0]
        edges.append(
            {
                "a": a[k],
                "b": b[k],
                "orient": np.full(len(k), orient, dtype=np.int8),
                "line": line[k],
                "pos": pos[k],
                "urban": urban[k],
                "cls": np.where(arterial[k], ARTERIAL, LOCAL).astype(np.int8),
            }
        )
    e = {key: np.concatenate([d[key] for d in edges]) for key in edges[0]}

    # one-way streets in the historic centre, alternating directions
    mx = (gx[e["a"]] + gx[e["b"]]) / 2
    my = (gy[e["a"]] + gy[e["b"]]) / 2
    dist_c = np.hypot(mx, my)
    centre = dist_c < 0.45 * land.core_radius
    oneway = centre & (e["cls"] == LOCAL) & (e["line"] % COARSE_EVERY != 0)
    backwards = oneway & (e["line"] % 2 == 1)
    u = np.where(backwards, e["b"], e["a"])
    v = np.where(backwards, e["a"], e["b"])

    # bridges: streets crossing the river survive only every BRIDGE_EVERY lines
    lines = shapely.linestrings(
        np.stack([np.column_stack([px[u], py[u]]), np.column_stack([px[v], py[v]])], axis=1)
    )
    shapely.prepare(land.river)
    crosses = shapely.intersects(lines, land.river)
    keep = ~crosses | (e["cls"] == ARTERIAL) | (e["line"] % BRIDGE_EVERY == 0)
    bridge = crosses[keep]
    u, v, oneway = u[keep], v[keep], oneway[keep]
    e = {key: val[keep] for key, val in e.items()}
    dist_c = dist_c[keep]

    # ring road with interchanges on the arterials it crosses
    ring = _ring(land, warp, node_id, n, side, set(np.concatenate([u, v]).tolist()))
    n_grid_nodes = side * side
    ring_count = len(ring["x"])
    all_x = np.concatenate([px, ring["x"]])
    all_y = np.concatenate([py, ring["y"]])
    grid_ij = np.concatenate(
        [
            np.column_stack([gi, gj]),
            np.column_stack([np.full(ring_count, -(10**6)), np.arange(ring_count)]),
        ]
    )
    ring_u = ring["u"] + np.where(ring["u_is_ring"], n_grid_nodes, 0)
    ring_v = ring["v"] + np.where(ring["v_is_ring"], n_grid_nodes, 0)
    r_count = len(ring_u)
    u = np.concatenate([u, ring_u])
    v = np.concatenate([v, ring_v])
    oneway = np.concatenate([oneway, np.zeros(r_count, dtype=bool)])
    bridge = np.concatenate([bridge, np.zeros(r_count, dtype=bool)])
    cls = np.concatenate([e["cls"], np.full(r_count, RING, dtype=np.int8)])
    urban = np.concatenate([e["urban"], np.ones(r_count, dtype=bool)])
    orient = np.concatenate([e["orient"], ring["orient"]])
    line = np.concatenate([e["line"], ring["line"]])
    pos = np.concatenate([e["pos"], ring["pos"]])
    dist_c = np.concatenate([dist_c, np.full(r_count, land.core_radius)])

    # keep the strongly connected part reachable from the centre
    centre_node = int(
        np.argmin(np.where(np.isin(np.arange(len(all_x)), u), np.hypot(all_x, all_y), np.inf))
    )
    alive = _strong_component(len(all_x), u, v, oneway, centre_node)
    keep = alive[u] & alive[v]
    u, v = u[keep], v[keep]
    oneway, bridge, cls, urban = oneway[keep], bridge[keep], cls[keep], urban[keep]
    orient, line, pos, dist_c = orient[keep], line[keep], pos[keep], dist_c[keep]
    used = np.zeros(len(all_x), dtype=bool)
    used[u] = True
    used[v] = True
    remap = np.cumsum(used) - 1
    u, v = remap[u].astype(np.int32), remap[v].astype(np.int32)
    x, y = all_x[used], all_y[used]
    node_grid = grid_ij[used]

    length = np.hypot(x[u] - x[v], y[u] - y[v])
    ramp = orient == ORIENT_RAMP
    maxspeed = np.select(
        [cls == RING, cls == ARTERIAL, dist_c < 0.6 * land.core_radius, urban],
        [np.where(ramp, 50, 90), np.where(urban, 50, 80), 30, 50],
        70,
    ).astype(np.int16)
    lanes = np.select([cls == RING, (cls == ARTERIAL) & urban], [np.where(ramp, 1, 2), 2], 1)
    lit = urban | (cls == RING)
    mid_x, mid_y = (x[u] + x[v]) / 2, (y[u] + y[v]) / 2
    muni = land.municipality_of(mid_x, mid_y)

    way, way_names, way_orient = _ways(rng, orient, line, pos, muni, cls, urban)
    offset = _way_offsets(way, pos, length)
    lon, lat = to_lonlat(x, y)
    return RoadGraph(
        x=x,
        y=y,
        lon=lon,
        lat=lat,
        u=u,
        v=v,
        cls=cls.astype(np.int8),
        oneway=oneway,
        maxspeed=maxspeed,
        lanes=lanes.astype(np.int8),
        bus_lane=np.zeros(len(u), dtype=bool),
        lit=lit,
        bridge=bridge,
        urban=urban,
        length=length,
        municipality=muni,
        way=way,
        along=pos.astype(np.int64),
        way_offset=offset,
        way_names=way_names,
        way_orient=way_orient,
        node_grid=node_grid,
    )


def _warp(rng: np.random.Generator):
    """A smooth displacement field (sum of plane waves) that bends the grid's streets."""
    waves = []
    for amp, wavelength in ((100.0, 6000.0), (60.0, 3500.0), (30.0, 1800.0)):
        for _axis in range(2):
            angle = rng.uniform(0, 2 * math.pi)
            waves.append((amp, wavelength, math.cos(angle), math.sin(angle), rng.uniform(0, 6.3)))

    def warp(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx = np.zeros(np.shape(x))
        dy = np.zeros(np.shape(x))
        for k, (amp, wl, cx, sy, ph) in enumerate(waves):
            val = amp * np.sin(2 * math.pi * (x * cx + y * sy) / wl + ph)
            if k % 2 == 0:
                dx = dx + val
            else:
                dy = dy + val
        return dx, dy

    return warp


def _ring(land: Land, warp, node_id, n: int, side: int, present: set[int]) -> dict[str, np.ndarray]:
    """Ring-road nodes and edges; ramps link interchange nodes to arterial grid nodes."""
    radius = 0.92 * land.core_radius
    step = RING_NODE_SPACING_M / radius
    # angles where the ring crosses arterial lines: x = i*B (vertical) or y = j*B (horizontal)
    ramps: list[tuple[float, int]] = []
    k_max = int(radius // BLOCK_M)
    for k in range(-k_max, k_max + 1):
        if k % ARTERIAL_EVERY_URBAN:
            continue
        c = k * BLOCK_M / radius
        if abs(c) >= 0.999:
            continue
        for theta in (math.acos(c), -math.acos(c)):  # vertical line i = k
            gy = radius * math.sin(theta)
            ramps.append(
                (theta % (2 * math.pi), int(node_id(np.array(k), np.array(round(gy / BLOCK_M)))))
            )
        for theta in (math.asin(c), math.pi - math.asin(c)):  # horizontal line j = k
            gx = radius * math.cos(theta)
            ramps.append(
                (theta % (2 * math.pi), int(node_id(np.array(round(gx / BLOCK_M)), np.array(k))))
            )
    ramps = sorted((t, g) for t, g in ramps if g in present)
    regular = np.arange(0, 2 * math.pi, step)
    ramp_t = np.array([t for t, _ in ramps])
    if len(ramp_t):
        gap = np.abs(((regular[:, None] - ramp_t[None, :]) + math.pi) % (2 * math.pi) - math.pi)
        regular = regular[np.min(gap, axis=1) > 0.4 * step]
    angles = np.concatenate([regular, ramp_t])
    is_ramp = np.concatenate([np.zeros(len(regular), dtype=bool), np.ones(len(ramp_t), dtype=bool)])
    order = np.argsort(angles, kind="stable")
    angles, is_ramp = angles[order], is_ramp[order]
    ramp_target = np.concatenate(
        [np.full(len(regular), -1), np.array([g for _, g in ramps], dtype=np.int64)]
    )[order]
    rx, ry = radius * np.cos(angles), radius * np.sin(angles)
    wx, wy = warp(rx, ry)
    m = len(angles)
    ring_u = np.arange(m)
    ring_v = (np.arange(m) + 1) % m
    ramp_nodes = np.nonzero(is_ramp)[0]
    return {
        "x": rx + wx,
        "y": ry + wy,
        "u": np.concatenate([ring_u, ramp_nodes]),
        "v": np.concatenate([ring_v, ramp_target[ramp_nodes]]),
        "u_is_ring": np.ones(m + len(ramp_nodes), dtype=bool),
        "v_is_ring": np.concatenate(
            [np.ones(m, dtype=bool), np.zeros(len(ramp_nodes), dtype=bool)]
        ),
        "orient": np.concatenate(
            [
                np.full(m, ORIENT_RING, dtype=np.int8),
                np.full(len(ramp_nodes), ORIENT_RAMP, dtype=np.int8),
            ]
        ),
        "line": np.concatenate([np.zeros(m, dtype=np.int64), ramp_nodes]),
        "pos": np.concatenate([np.arange(m), np.zeros(len(ramp_nodes), dtype=np.int64)]),
    }


def _strong_component(
    count: int, u: np.ndarray, v: np.ndarray, oneway: np.ndarray, root: int
) -> np.ndarray:
    """Nodes that can both reach and be reached from ``root`` (its strong component)."""
    two = ~oneway
    src = np.concatenate([u, v[two]])
    dst = np.concatenate([v, u[two]])
    return _reach(count, src, dst, root) & _reach(count, dst, src, root)


def _reach(count: int, src: np.ndarray, dst: np.ndarray, root: int) -> np.ndarray:
    """Nodes reachable from ``root`` along directed arcs src→dst (frontier BFS in numpy)."""
    order = np.argsort(src, kind="stable")
    s_sorted, d_sorted = src[order], dst[order]
    indptr = np.searchsorted(s_sorted, np.arange(count + 1))
    seen = np.zeros(count, dtype=bool)
    seen[root] = True
    frontier = np.array([root])
    while len(frontier):
        starts, ends = indptr[frontier], indptr[frontier + 1]
        lens = ends - starts
        if lens.sum() == 0:
            break
        offs = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        nxt = np.unique(d_sorted[offs])
        nxt = nxt[~seen[nxt]]
        seen[nxt] = True
        frontier = nxt
    return seen


def _ways(
    rng: np.random.Generator,
    orient: np.ndarray,
    line: np.ndarray,
    pos: np.ndarray,
    muni: np.ndarray,
    cls: np.ndarray,
    urban: np.ndarray,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Group edges into named ways: one grid line within one municipality, the ring, ramps."""
    grid = orient <= ORIENT_V
    key_muni = np.where(grid, muni, -1)
    keys = np.column_stack([orient, line, key_muni])
    uniq, way = np.unique(keys, axis=0, return_inverse=True)
    way = way.ravel().astype(np.int32)
    n_way = len(uniq)
    way_cls = np.zeros(n_way, dtype=np.int8)
    np.maximum.at(way_cls, way, np.minimum(cls, ARTERIAL))
    way_urban = np.zeros(n_way, dtype=bool)
    np.logical_or.at(way_urban, way, urban)
    names = street_names(rng, way_cls, ~way_urban)
    for w, (o, _line, _m) in enumerate(uniq):
        if o == ORIENT_RING:
            names[w] = RING_NAME
        elif o == ORIENT_RAMP:
            names[w] = f"Bretelle {RING_NAME.split(' ', 1)[1]}"
    return way, names, uniq[:, 0].astype(np.int8)


def _way_offsets(way: np.ndarray, pos: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Metres from the start of each edge's way to the edge (edges ordered by ``pos``)."""
    order = np.lexsort((pos, way))
    cum = np.cumsum(length[order]) - length[order]
    w_sorted = way[order]
    first = np.searchsorted(w_sorted, w_sorted)  # index of the first edge of the same way
    out = np.empty(len(way))
    out[order] = cum - cum[first]
    return out


def edge_points(
    graph: RoadGraph, edges: np.ndarray, frac: np.ndarray, offset_m: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions at fraction ``frac`` along ``edges``, shifted ``offset_m`` to the right.

    Returns x, y and the heading (degrees clockwise from north) of each edge.
    """
    x0, y0 = graph.x[graph.u[edges]], graph.y[graph.u[edges]]
    x1, y1 = graph.x[graph.v[edges]], graph.y[graph.v[edges]]
    dx, dy = x1 - x0, y1 - y0
    ln = np.maximum(np.hypot(dx, dy), 1e-9)
    nx, ny = dy / ln, -dx / ln  # right-hand normal
    px = x0 + frac * dx + offset_m * nx
    py = y0 + frac * dy + offset_m * ny
    heading = np.degrees(np.arctan2(dx, dy)) % 360.0
    return px, py, heading


def path_line(graph: RoadGraph, nodes: Sequence[int]) -> np.ndarray:
    """The (K, 2) metric polyline through ``nodes``."""
    idx = np.asarray(nodes)
    return np.column_stack([graph.x[idx], graph.y[idx]])
