"""Car parks off the street: underground, multi-storey and surface, in the town centres.

Each stands beside a local street of the centre or of a town centre, its entrance on
that street. About half are underground, and a share of those lie in the river's
flood-prone zone (the city's oldest car parks are under its riverside squares): the
flood mode closes the underground ones. They draw on their own random stream, so
adding them left every other asset of the generated city as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from citypilot.twin.entities import DocFactory, install_dates, local_ids
from citypilot.twin.roads import LOCAL, edge_points
from citypilot.twin.street_assets import scaled

CAR_PARKS = 12
#: Of the underground car parks, at least this share lies in the flood-prone zone
#: where the centre has streets there.
FLOODABLE_SHARE = 0.4
CAPACITY = {"underground": (250, 700), "multiStorey": (300, 900), "surface": (60, 200)}
NAMES = {"underground": "Parking souterrain", "multiStorey": "Parking", "surface": "Parking"}


def place_car_parks(seed: int, f: DocFactory, scale: float) -> list[dict[str, Any]]:
    """The city's car parks (``OffStreetParking``), from their own random stream."""
    rng = np.random.default_rng([seed, 0xCA2])
    g = f.graph
    land = f.land
    n = scaled(CAR_PARKS, scale, 2)
    mx = (g.x[g.u] + g.x[g.v]) / 2
    my = (g.y[g.u] + g.y[g.v]) / 2
    central = np.zeros(g.edge_count, dtype=bool)
    radii = np.concatenate([[0.6 * land.core_radius], 0.4 * land.blob_radius[1:]])
    for (cx, cy), r in zip(land.muni_xy, radii, strict=True):
        central |= np.hypot(mx - cx, my - cy) < r
    ok = (g.cls == LOCAL) & g.urban & (g.length >= 80.0) & central
    floodable = ok & shapely.contains_xy(land.flood, mx, my)
    kinds = np.where(
        rng.random(n) < 0.5, "underground", np.where(rng.random(n) < 0.7, "multiStorey", "surface")
    )
    kinds[0] = "underground"  # every city has one under its main square
    wet = int(np.ceil(FLOODABLE_SHARE * int((kinds == "underground").sum())))
    picks: list[int] = []
    for k in range(n):
        pool = floodable if kinds[k] == "underground" and wet > 0 and floodable.any() else ok
        if pool is floodable:
            wet -= 1
        free = np.nonzero(pool & ~np.isin(np.arange(g.edge_count), picks))[0]
        if not len(free):
            free = np.nonzero(ok)[0]
        picks.append(int(rng.choice(free)))
    edges = np.asarray(picks)
    frac = np.full(n, 0.5)
    x, y, _ = edge_points(g, edges, frac, 25.0)  # set back from the street, the ramp on it
    muni, zone = f.locate(x, y)
    named = f.edge_addresses(edges, frac, np.ones(n), muni)
    extra = []
    for k in range(n):
        lo, hi = CAPACITY[str(kinds[k])]
        total = int(rng.integers(lo, hi + 1))
        extra.append(
            {
                "status": "open",
                "category": str(kinds[k]),
                "totalSpotNumber": total,
                "availableSpotNumber": total,
                "occupancy": 0.0,
            }
        )
    return f.docs(
        "OffStreetParking",
        local_ids(n, 3),
        x,
        y,
        [
            f"{NAMES[str(kinds[k])]} {named[k][1]['streetAddress'].split(' ', 1)[1]}"
            for k in range(n)
        ],
        [a[1] for a in named],
        extra,
        "CP",
        install_dates(rng, n, 1975, 2020),
        muni,
        zone,
    )
