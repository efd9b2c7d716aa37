"""Road closures and traffic state as one public JSON document.

Closures are given (the streets closed now, why, until when, as GeoJSON); traffic
state comes from the signals' last reports: the queue at each junction and its level
(``free``, ``moderate``, ``heavy``, ``unknown`` for a signal out of order or silent),
with the count of each level.
"""

from __future__ import annotations

from typing import Any

import orjson

from citypilot.model.timeutil import format_instant
from citypilot.store.base import Store

#: Queue length (metres) from which a junction is moderately, then heavily congested.
MODERATE_QUEUE_M = 40.0
HEAVY_QUEUE_M = 120.0
SIGNAL_ATTRS = ("status", "queueLength", "vehicleCount", "controlMode")


def congestion_level(status: str | None, queue_m: float | None) -> str:
    """The level of a junction from its signal's status and queue."""
    if status not in (None, "ok") or queue_m is None:
        return "unknown"
    if queue_m >= HEAVY_QUEUE_M:
        return "heavy"
    return "moderate" if queue_m >= MODERATE_QUEUE_M else "free"


async def traffic_document(
    closures: list[dict[str, Any]], store: Store, now: float
) -> dict[str, Any]:
    """``{"generatedAt", "closures", "congestion": {level: count}, "junctions": [...]}``
    around the ``closures`` given (as the public may see them)."""
    layer = await store.scan_columns("TrafficSignal", SIGNAL_ATTRS)
    cols = {n: layer.values.get(n, [None] * len(layer.ids)) for n in SIGNAL_ATTRS}
    junctions = []
    counts = {"free": 0, "moderate": 0, "heavy": 0, "unknown": 0}
    for i, entity_id in enumerate(layer.ids):
        if layer.lon[i] is None or layer.lat[i] is None:
            continue
        got = {n: orjson.loads(c[i]) if c[i] is not None else None for n, c in cols.items()}
        level = congestion_level(got["status"], got["queueLength"])
        counts[level] += 1
        junctions.append(
            {
                "id": entity_id,
                "location": [layer.lon[i], layer.lat[i]],
                "level": level,
                "queueLength": got["queueLength"],
                "vehicleCount": got["vehicleCount"],
                "status": got["status"],
                "priority": got["controlMode"] == "priority",
                "observedAt": format_instant(layer.modified_at[i]),
            }
        )
    return {
        "generatedAt": format_instant(now),
        "closures": closures,
        "congestion": counts,
        "junctions": junctions,
    }
