"""Test helper: how far a point lies from a polyline (a GTFS shape), in metres."""

from __future__ import annotations

import math
from itertools import pairwise


def distance_to_shape(x: float, y: float, points: list[tuple[float, float]]) -> float:
    """The distance from (x, y) to the nearest segment of ``points`` (metric)."""
    best = math.inf
    for (ax, ay), (bx, by) in pairwise(points):
        dx, dy = bx - ax, by - ay
        t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / max(dx * dx + dy * dy, 1e-9)))
        best = min(best, math.hypot(ax + t * dx - x, ay + t * dy - y))
    return best
