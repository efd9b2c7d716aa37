"""``citypilot bench alarms``: 10,000 alarms raised in a minute, end to end.

A server with the built-in rule pack and ``--alarms`` streetlights; over ``--seconds``
each lamp reports a fault once (HTTP ingest in batches every 0.5 s), so the
``defective-streetlight`` rule raises one alarm per lamp. A watcher reads
``GET /api/v1/alarms`` (newest first, as the console does) every 0.25 s: the lag of
an alarm is from the ingest answer of its report to the first read that shows it. The
same-run baseline is the ingest itself: the answer time of the same batches. Then the
alarm-management figures (``GET /api/v1/alarms/figures?window=600``) must show the
flood.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from citypilot.config import Settings

console = Console()
RULE = "defective-streetlight"


def add_alarms_bench(bench: Any) -> None:
    """Register ``bench alarms``."""
    p = bench.add_parser("alarms", help="N alarms raised in a minute: API lag and flood figure")
    p.add_argument("--alarms", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.set_defaults(func=bench_alarms)


def _stamp() -> str:
    from citypilot.model.timeutil import format_instant

    return format_instant(time.time())


async def _send(url: str, key: str, count: int, seconds: float) -> tuple[dict[str, float], list]:
    """Each lamp reports a fault once; when each report's ingest answered, and how long
    each batch took."""
    import httpx

    ticks = max(1, int(seconds / 0.5))
    per = -(-count // ticks)
    answered: dict[str, float] = {}
    took = []
    async with httpx.AsyncClient(base_url=url, headers={"X-Device-Key": key}, timeout=30) as c:
        start = time.monotonic()
        for k in range(ticks):
            lamps = [
                f"urn:ngsi-ld:Streetlight:b{i:07d}"
                for i in range(k * per, min(count, (k + 1) * per))
            ]
            if not lamps:
                break
            body = [
                {
                    "id": lamp,
                    "type": "Streetlight",
                    "observedAt": _stamp(),
                    "attrs": {"status": "defectiveLamp"},
                }
                for lamp in lamps
            ]
            sent = time.monotonic()
            r = await c.post("/api/v1/ingest", json=body)
            r.raise_for_status()
            done = time.monotonic()
            took.append(done - sent)
            for lamp in lamps:
                answered[lamp] = done
            await asyncio.sleep(max(0.0, start + (k + 1) * 0.5 - time.monotonic()))
    return answered, took


async def _watch(url: str, token: str, count: int, stop: asyncio.Event) -> dict[str, float]:
    """When each lamp's alarm was first seen in the alarm list."""
    import httpx

    seen: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
        while len(seen) < count:
            r = await c.get("/api/v1/alarms", params={"rule": RULE, "limit": 1000})
            now = time.monotonic()
            for alarm in r.json()["alarms"]:
                seen.setdefault(alarm["entity"], now)
            if stop.is_set() and len(seen) >= count:
                break
            await asyncio.sleep(0.25)
    return seen


async def _run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from citypilot.bench.cli import ADMIN, ADMIN_PASSWORD, DEVICE_KEY

    token = httpx.post(
        url + "/api/v1/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(url, token, args.alarms, stop))
    answered, took = await _send(url, DEVICE_KEY, args.alarms, args.seconds)
    stop.set()
    try:
        seen = await asyncio.wait_for(watcher, 120)
    except TimeoutError:
        seen = {}
    figures = httpx.get(
        url + "/api/v1/alarms/figures",
        params={"window": 600},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    lags = [seen[i] - answered[i] for i in answered if i in seen]
    return {"lags": lags, "took": took, "figures": figures, "missing": len(answered) - len(lags)}


def bench_alarms(args: argparse.Namespace, settings: Settings) -> int:
    """Run the alarm flood and print its table."""
    from citypilot.bench.cli import _seed
    from citypilot.bench.server import server_process

    with tempfile.TemporaryDirectory(prefix="citypilot-bench-") as tmp:
        data = Path(tmp) / "data"
        asyncio.run(_seed(data, args.alarms))
        with server_process(data, {"CITYPILOT_RULE_PACK": "true"}) as url:
            got = asyncio.run(_run(url, args))
    lags, took, fig = np.array(got["lags"]) * 1000, np.array(got["took"]) * 1000, got["figures"]
    table = Table(title=f"citypilot bench alarms ({args.alarms:,} in {args.seconds:g} s)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("baseline: ingest answer of a batch, p95", f"{np.percentile(took, 95):.0f} ms")
    if len(lags):
        table.add_row("report -> alarm in GET /api/v1/alarms, p50", f"{np.median(lags):.0f} ms")
        table.add_row(
            "report -> alarm in GET /api/v1/alarms, p95", f"{np.percentile(lags, 95):.0f} ms"
        )
        table.add_row("report -> alarm in GET /api/v1/alarms, max", f"{lags.max():.0f} ms")
    table.add_row("alarms never seen", str(got["missing"]))
    table.add_row("figures: alarms in the last 10 min", str(fig.get("alarms")))
    table.add_row(
        "figures: peak per 10 min / flood periods",
        f"{fig.get('peakPer10Min')} / {fig.get('floodPeriods')}",
    )
    table.add_row("figures: % of 10-min periods in flood", f"{fig.get('floodPercent')}")
    console.print(table)
    return 0 if not got["missing"] else 1
