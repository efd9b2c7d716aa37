"""``citypilot bench console``: the browser console against a full-size city, in Chromium.

It builds the demo city at ``--scale`` into a data directory (or reuses one), starts a
server on it, logs in with headless Chromium, and measures the first complete render,
the lag between an update's acceptance and its appearance on screen under a live load,
and the page's memory. The baseline measured in the same run is the server's own share
of the lag: how long the ingest requests took to answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from citypilot.config import Settings

console = Console()
USER, PASSWORD, KEY = "bench", "bench-password", "cpd_console_bench_key"


def bench_console(args: argparse.Namespace, settings: Settings) -> int:
    """Prepare (or reuse) the city, serve it, and measure the console in Chromium."""
    from citypilot.bench.server import server_process
    from citypilot.console.bench import prepare_city, run_console_bench

    with contextlib.ExitStack() as stack:
        data = args.data_dir
        if data is None or not (data / "city.db").exists():
            if data is None:
                data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            started = time.perf_counter()
            counts = prepare_city(
                data, args.scale, accounts=((USER, PASSWORD, "operator"),), device_key=KEY
            )
            console.print(
                f"prepared {sum(counts.values()):,} entities in "
                f"{time.perf_counter() - started:.0f} s"
            )
        url = stack.enter_context(server_process(data, timeout=300))
        result = run_console_bench(
            url,
            USER,
            PASSWORD,
            args.rate,
            args.seconds,
            KEY,
            screenshot_dir=args.screenshots,
            profile_dir=args.profile,
        )
    print(json.dumps(result, indent=2))
    lag = result.get("lag_ms", {})
    console.print(
        f"first render {result.get('first_render_ms')} ms; lag p50 {lag.get('p50')} "
        f"ms, p95 {lag.get('p95')} ms at {args.rate} updates/s"
    )
    return 0


def add_console_bench(bench: Any) -> None:
    """Register ``bench console``."""
    p = bench.add_parser("console", help="the browser console in headless Chromium")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--rate", type=int, default=1000, help="entity updates per second")
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--data-dir", type=Path, help="build the city here, or reuse it")
    p.add_argument("--screenshots", type=Path, help="save screenshots into this folder")
    p.add_argument(
        "--profile",
        type=Path,
        help="profile the page's main thread (live phase, panning) into this folder",
    )
    p.set_defaults(func=bench_console)
