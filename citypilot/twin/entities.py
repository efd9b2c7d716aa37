"""Turning placed assets into NGSI-LD entity documents (normalized form).

One :class:`DocFactory` knows the land and road graph and writes the common
attributes every asset carries: location, name, address, department (the type's
silo), municipality, zone, source, serial number and installation date.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.ids import entity_id
from citypilot.twin.geo import ENTITY_DECIMALS, to_lonlat
from citypilot.twin.land import Land
from citypilot.twin.roads import RoadGraph

DEPARTMENTS: dict[str, str] = {t.name: t.department for t in BUILTIN_TYPES}
#: Width of the zero-padded local id of each type (wider when a scale needs it).
ID_WIDTH = 6


def prop(value: Any) -> dict[str, Any]:
    """An NGSI-LD Property."""
    return {"type": "Property", "value": value}


def rel(target: str) -> dict[str, Any]:
    """An NGSI-LD Relationship."""
    return {"type": "Relationship", "object": target}


def geo(geometry: dict[str, Any]) -> dict[str, Any]:
    """An NGSI-LD GeoProperty."""
    return {"type": "GeoProperty", "value": geometry}


def local_ids(count: int, width: int = ID_WIDTH) -> list[str]:
    """Zero-padded local ids 1..count (wider than ``width`` if count needs it)."""
    width = max(width, len(str(count)))
    return [f"{k:0{width}d}" for k in range(1, count + 1)]


def municipality_id(land: Land, m: int) -> str:
    """Entity id of municipality ``m``."""
    return entity_id("Municipality", f"{m + 1:02d}")


def postal_code(m: int) -> str:
    """Synthetic postal code of municipality ``m``."""
    return "21000" if m == 0 else f"21{100 + 7 * m:03d}"


def insee_code(m: int) -> str:
    """Synthetic official code of municipality ``m``."""
    return f"21{200 + m:03d}"


class DocFactory:
    """Writes entity documents for assets placed on the land and road graph."""

    def __init__(self, land: Land, graph: RoadGraph, seed: int) -> None:
        self.land = land
        self.graph = graph
        self.source = f"citypilot-twin seed={seed}"
        self.muni_ids = [municipality_id(land, m) for m in range(len(land.muni_names))]
        self.zone_ids = [entity_id("Zone", z.local_id) for z in land.zones]

    def locate(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Municipality and tessellation-zone index of each point."""
        muni = self.land.municipality_of(x, y)
        return muni, self.land.zone_of(x, y, muni)

    def edge_addresses(
        self, edges: np.ndarray, frac: np.ndarray, side: np.ndarray, muni: np.ndarray
    ) -> list[tuple[str, dict[str, str]]]:
        """(street name with number, address object) of points along road edges.

        Odd numbers on one side of the street, even on the other, about every 6 m.
        """
        g = self.graph
        along = g.way_offset[edges] + frac * g.length[edges]
        number = 2 * (along // 12.0).astype(np.int64) + np.where(side > 0, 1, 2)
        out = []
        for e, num, m in zip(edges.tolist(), number.tolist(), muni.tolist(), strict=True):
            street = g.way_names[g.way[e]]
            out.append(
                (
                    f"{street} {num}",
                    {
                        "streetAddress": f"{num} {street}",
                        "addressLocality": self.land.muni_names[m],
                        "postalCode": postal_code(m),
                    },
                )
            )
        return out

    def nearest_edges(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the non-ring edge whose midpoint is nearest each point (for addresses)."""
        g = self.graph
        ok = np.nonzero(g.cls != 2)[0]
        mx = (g.x[g.u[ok]] + g.x[g.v[ok]]) / 2
        my = (g.y[g.u[ok]] + g.y[g.v[ok]]) / 2
        cell = 200.0
        keys = np.floor(mx / cell).astype(np.int64) * 1_000_003 + np.floor(my / cell).astype(
            np.int64
        )
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        out = np.empty(len(x), dtype=np.int64)
        for k, (px, py) in enumerate(
            zip(np.asarray(x).tolist(), np.asarray(y).tolist(), strict=True)
        ):
            cx, cy = int(np.floor(px / cell)), int(np.floor(py / cell))
            cand = []
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    key = (cx + dx) * 1_000_003 + (cy + dy)
                    lo = np.searchsorted(sorted_keys, key)
                    hi = np.searchsorted(sorted_keys, key, side="right")
                    cand.extend(order[lo:hi].tolist())
            if not cand:
                out[k] = ok[int(np.argmin((mx - px) ** 2 + (my - py) ** 2))]
                continue
            c = np.asarray(cand)
            out[k] = ok[c[int(np.argmin((mx[c] - px) ** 2 + (my[c] - py) ** 2))]]
        return out

    def point_addresses(
        self, x: np.ndarray, y: np.ndarray, muni: np.ndarray
    ) -> list[tuple[str, dict[str, str]]]:
        """Addresses of arbitrary points, from the nearest street."""
        g = self.graph
        edges = self.nearest_edges(x, y)
        ex0, ey0 = g.x[g.u[edges]], g.y[g.u[edges]]
        dx, dy = g.x[g.v[edges]] - ex0, g.y[g.v[edges]] - ey0
        ln2 = np.maximum(dx * dx + dy * dy, 1e-9)
        frac = np.clip(((x - ex0) * dx + (y - ey0) * dy) / ln2, 0.0, 1.0)
        side = np.sign((x - ex0) * dy - (y - ey0) * dx)
        return self.edge_addresses(edges, frac, side, muni)

    def docs(
        self,
        type_name: str,
        ids: list[str],
        x: np.ndarray,
        y: np.ndarray,
        names: list[str],
        addresses: list[dict[str, str]] | None,
        extra: list[dict[str, Any]],
        serial_prefix: str,
        installed: list[str],
        muni: np.ndarray | None = None,
        zone: np.ndarray | None = None,
        geometries: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Entity documents of one type: common attributes, then ``extra`` per entity."""
        if muni is None or zone is None:
            muni, zone = self.locate(x, y)
        lon, lat = to_lonlat(x, y)
        lon_r = np.round(lon, ENTITY_DECIMALS).tolist()
        lat_r = np.round(lat, ENTITY_DECIMALS).tolist()
        department = DEPARTMENTS[type_name]
        out = []
        for k, local in enumerate(ids):
            location = (
                geometries[k]
                if geometries is not None
                else {"type": "Point", "coordinates": [lon_r[k], lat_r[k]]}
            )
            doc: dict[str, Any] = {
                "id": entity_id(type_name, local),
                "type": type_name,
                "location": geo(location),
                "name": prop(names[k]),
            }
            if addresses is not None:
                doc["address"] = prop(addresses[k])
            doc["department"] = prop(department)
            doc["refMunicipality"] = rel(self.muni_ids[int(muni[k])])
            doc["refZone"] = rel(self.zone_ids[int(zone[k])])
            doc["source"] = prop(self.source)
            doc["serialNumber"] = prop(f"{serial_prefix}-{local}")
            doc["dateInstalled"] = prop(installed[k])
            for key, value in extra[k].items():
                doc[key] = value if isinstance(value, dict) and "type" in value else prop(value)
            out.append(doc)
        return out


def install_dates(
    rng: np.random.Generator, count: int, first_year: int, last_year: int
) -> list[str]:
    """Random installation dates (midnight UTC) between two years, inclusive."""
    days = rng.integers(0, (last_year - first_year + 1) * 365, size=count)
    base = np.datetime64(f"{first_year}-01-01")
    return [f"{d}T00:00:00Z" for d in (base + days.astype("timedelta64[D]")).astype(str).tolist()]
