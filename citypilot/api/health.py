"""Operations endpoints: ``/metrics`` (Prometheus) and ``/api/v1/health`` (what is down)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from citypilot import __version__, metrics
from citypilot.api.deps import City, CityDep

router = APIRouter(tags=["operations"])
#: How long one dependency may take to answer its check.
CHECK_TIMEOUT_S = 2.0
#: How long one check of the dependencies is reused.
HEALTH_CACHE_S = 1.0


async def _store_up(city: City, attempts: int = 3) -> bool:
    """Whether the store answers a query; after a database restart the pool may hand out
    connections that broke with it (each failure discards one), hence a few attempts."""
    for _ in range(attempts):
        try:
            await asyncio.wait_for(city.broker.store.list_types(), CHECK_TIMEOUT_S)
        except Exception:
            continue
        return True
    return False


async def dependencies(city: City) -> dict[str, dict[str, Any]]:
    """Each dependency of this process and whether it is up (checked at most once a second,
    so that a busy health probe costs the store nothing)."""
    cached = city.components.get("health")
    now = time.monotonic()
    if cached is not None and now - cached[0] < HEALTH_CACHE_S:
        return cached[1]
    deps = await _check(city)
    city.components["health"] = (now, deps)
    return deps


async def _check(city: City) -> dict[str, dict[str, Any]]:
    deps: dict[str, dict[str, Any]] = {
        "store": {"backend": city.settings.store, "up": await _store_up(city)}
    }
    bus = city.broker.bus
    deps["bus"] = {"backend": city.settings.bus, "up": getattr(bus, "connected", True)}
    mqtt = city.components.get("mqtt")
    if mqtt is not None:
        deps["mqtt"] = {"up": bool(mqtt.connected)}
    engine = city.components.get("engine")
    if engine is not None:  # engine = "worker": does one lead and answer?
        deps["engine"] = {"backend": "worker", "up": await engine.reachable(CHECK_TIMEOUT_S)}
    for name, dep in deps.items():
        metrics.DEPENDENCY_UP.labels(name).set(1 if dep["up"] else 0)
    return deps


@router.get("/api/v1/health", summary="Health of the server and its dependencies")
async def health(city: CityDep) -> Response:
    """Public: which dependencies are down; 503 when the store is (nothing can be served).

    With the bus, MQTT or the engine worker down the server still answers reads: 200,
    ``degraded``.
    """
    deps = await dependencies(city)
    down = sorted(name for name, dep in deps.items() if not dep["up"])
    body = {
        "status": "degraded" if down else "ok",
        "version": __version__,
        "store": city.settings.store,
        "bus": city.settings.bus,
        "down": down,
        "dependencies": deps,
    }
    status = 503 if "store" in down else 200
    return Response(orjson.dumps(body), status, media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics of this process", include_in_schema=False)
async def prometheus_metrics() -> Response:
    """Public, as Prometheus scrapes it: counters, gauges and histograms of this process."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
