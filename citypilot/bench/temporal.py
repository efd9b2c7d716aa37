"""The temporal part of ``citypilot bench query``: hourly averages over 30 days of one
attribute, from the NGSI-LD temporal API, against the history endpoint's bucketed series
over the same rows, in the same run.

History is written straight through the store (as ingest writes it): one
``powerConsumption`` reading every ``every_s`` seconds for each of the first
``entities`` streetlights the query bench seeds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from citypilot.model.observation import Reading
from citypilot.model.timeutil import format_instant

#: The attribute aggregated, and the end of the history (a fixed, whole hour).
ATTR = "powerConsumption"
END = 1_790_000_000.0 - 1_790_000_000.0 % 3600


def streetlight_id(i: int) -> str:
    """The id the query bench gives streetlight ``i``."""
    return f"urn:ngsi-ld:Streetlight:b{i:07d}"


async def seed_history(data_dir: Path, entities: int, days: int, every_s: int) -> int:
    """Write ``days`` of readings of ``ATTR`` for streetlights 0..entities-1; return how many."""
    from citypilot.store.sqlite import SQLiteStore

    store = SQLiteStore(data_dir / "city.db")
    await store.open()
    instants = np.arange(END - days * 86_400, END, every_s, dtype=float)
    rng = np.random.default_rng(4)
    written = 0
    for i in range(entities):
        watts = np.round(rng.uniform(10, 60, len(instants)), 1)
        readings = [
            Reading(streetlight_id(i), ATTR, "Property", repr(float(w)), float(w), float(t), "WTT")
            for t, w in zip(instants, watts, strict=True)
        ]
        await store.apply_readings(readings, time.time())
        written += len(readings)
    await store.close()
    return written


def _range(days: int) -> str:
    return (
        f"timerel=between&timeAt={format_instant(END - days * 86_400)}"
        f"&endTimeAt={format_instant(END)}"
    )


def temporal_paths(entities: int, days: int, n: int, page: int) -> dict[str, list[str]]:
    """The requests measured, by row label: one entity, a page of entities, the baseline."""
    rng = np.random.default_rng(5)
    picks = [int(i) for i in rng.integers(0, entities, n)]
    hourly = f"attrs={ATTR}&{_range(days)}&aggrMethods=avg&aggrPeriodDuration=PT1H"
    base = "/ngsi-ld/v1/temporal/entities"
    start, end = format_instant(END - days * 86_400), format_instant(END)
    pages = max(1, entities // page)
    return {
        "one entity": [f"{base}/{streetlight_id(i)}?{hourly}" for i in picks],
        f"page of {page} entities": [
            f"{base}?type=Streetlight&limit={page}&offset={(i % pages) * page}&{hourly}"
            for i in picks[: max(1, n // 10)]
        ],
        "baseline": [
            f"/api/v1/history/{streetlight_id(i)}?attrs={ATTR}&from={start}&to={end}"
            "&bucket=1h&agg=avg"
            for i in picks
        ],
    }
