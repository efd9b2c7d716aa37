"""Travel-time routing over the road graph with igraph: closures, congestion, ETAs.

igraph's Dijkstra (C) answers a single-source search on the scale-1 graph in
tens of milliseconds. One search from the incident over the *reversed* arcs
gives every node's travel time to it at once, which ranks all units together;
the routes of the few chosen units come from the same search tree.

A closed street segment takes both its arcs out of every search at once; a
congested one (a factor > 1 reported by the simulator) is slower by that factor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import igraph
import numpy as np

from citypilot.ops.roadgraph import RoadNetwork, graph_present, load_network

#: igraph refuses infinite weights on some paths: a closed arc costs this instead,
#: and any travel time at or above UNREACHABLE_S is no path at all.
CLOSED_S = 1e12
UNREACHABLE_S = 1e11


@dataclass(frozen=True)
class Route:
    """A drive along ``nodes`` over ``arcs``: its travel time, length and geometry."""

    nodes: tuple[int, ...]
    arcs: tuple[int, ...]
    seconds: float
    metres: float
    coordinates: tuple[tuple[float, float], ...]
    arc_seconds: tuple[float, ...] = ()  # the travel time of each arc, in order

    def geometry(self) -> dict[str, Any]:
        """The route as a GeoJSON LineString (a Point for a route of one node)."""
        if len(self.coordinates) == 1:
            return {"type": "Point", "coordinates": list(self.coordinates[0])}
        return {"type": "LineString", "coordinates": [list(c) for c in self.coordinates]}


class Routing:
    """Shortest travel-time paths on one road network, with its closures and congestion."""

    def __init__(self, network: RoadNetwork) -> None:
        self.network = network
        arcs = np.column_stack([network.arc_from, network.arc_to])
        self.graph = igraph.Graph(n=network.node_count, edges=arcs.tolist(), directed=True)
        self._closed: frozenset[int] = frozenset()
        self._slow: dict[int, float] = {}
        self._weights: list[float] = network.arc_seconds.tolist()
        self._open_weights = network.arc_seconds  # congestion applied, closures not

    # -- state -------------------------------------------------------------------------
    @property
    def closed_edges(self) -> frozenset[int]:
        """The street segments no route may use."""
        return self._closed

    def set_closed(self, edges: Iterable[int]) -> None:
        """Close exactly these street segments (every earlier closure is lifted)."""
        closed = frozenset(int(e) for e in edges)
        bad = [e for e in closed if not 0 <= e < self.network.edge_count]
        if bad:
            raise ValueError(f"edge {bad[0]} is not a street segment of the graph")
        self._closed = closed
        self._rebuild()

    def set_congestion(self, factors: Mapping[int, float]) -> None:
        """Slow street segments by a factor (>= 1) each; every other runs free."""
        self._slow = {int(e): max(1.0, float(f)) for e, f in factors.items()}
        self._rebuild()

    def _rebuild(self) -> None:
        w = self.network.arc_seconds.copy()
        if self._slow:
            factor = np.ones(self.network.edge_count)
            for edge, f in self._slow.items():
                factor[edge] = f
            w *= factor[self.network.arc_edge]
        self._open_weights = w.copy()
        if self._closed:
            w[np.isin(self.network.arc_edge, list(self._closed))] = CLOSED_S
        self._weights = w.tolist()

    def _weights_passing(self, passing: frozenset[int]) -> list[float]:
        """The arc weights when the closed segments in ``passing`` may be driven."""
        if not passing & self._closed:
            return self._weights
        w = self._open_weights.copy()
        still = list(self._closed - passing)
        if still:
            w[np.isin(self.network.arc_edge, still)] = CLOSED_S
        return w.tolist()

    # -- searches ----------------------------------------------------------------------
    def times_to(self, target: int, passing: frozenset[int] = frozenset()) -> np.ndarray:
        """Seconds from every node to ``target`` (``inf`` where no open path leads there);
        the closed segments in ``passing`` may be driven (an incident's own cordon)."""
        weights = self._weights_passing(passing)
        got = np.asarray(self.graph.distances(target, weights=weights, mode="in")[0], dtype=float)
        got[got >= UNREACHABLE_S] = math.inf
        return got

    def times_from(self, source: int) -> np.ndarray:
        """Seconds from ``source`` to every node (``inf`` where unreachable)."""
        got = np.asarray(
            self.graph.distances(source, weights=self._weights, mode="out")[0], dtype=float
        )
        got[got >= UNREACHABLE_S] = math.inf
        return got

    def routes_to(
        self, target: int, sources: Sequence[int], passing: frozenset[int] = frozenset()
    ) -> list[Route | None]:
        """The fastest route from each source to ``target`` (None where there is none);
        the closed segments in ``passing`` may be driven."""
        if not sources:
            return []
        weights = self._weights_passing(passing)
        paths = self.graph.get_shortest_paths(
            target, to=list(sources), weights=weights, mode="in", output="epath"
        )
        return [
            self._route(src, target, list(reversed(arcs)), weights)
            for src, arcs in zip(sources, paths, strict=True)
        ]

    def route(self, source: int, target: int) -> Route | None:
        """The fastest route from ``source`` to ``target``, or None when there is none."""
        return self.routes_to(target, [source])[0]

    def _route(
        self, source: int, target: int, arcs: list[int], weights: list[float]
    ) -> Route | None:
        net = self.network
        if not arcs:
            if source != target:
                return None
            return Route(
                (source,), (), 0.0, 0.0, ((float(net.lon[source]), float(net.lat[source])),)
            )
        per_arc = tuple(float(weights[a]) for a in arcs)
        seconds = sum(per_arc)
        if seconds >= UNREACHABLE_S:
            return None
        nodes = [int(net.arc_from[arcs[0]]), *(int(net.arc_to[a]) for a in arcs)]
        coords = tuple((round(float(net.lon[n]), 6), round(float(net.lat[n]), 6)) for n in nodes)
        return Route(
            nodes=tuple(nodes),
            arcs=tuple(arcs),
            seconds=seconds,
            metres=float(net.arc_length[arcs].sum()),
            coordinates=coords,
            arc_seconds=per_arc,
        )


def open_routing(folder: str | Path) -> Routing | None:
    """Routing over the graph written in ``folder`` (``nodes.csv``, ``edges.csv``), if any."""
    return Routing(load_network(folder)) if graph_present(folder) else None
