"""``citypilot bench backpressure``: server memory under many concurrent ingest clients.

The same bodies are posted by the same number of connections twice, each time to a
fresh server: once with the in-flight limits lifted (the baseline, as before they
existed) and once with the configured ones. Clients that get 503 wait for
``Retry-After`` and send again, so both runs store everything. Printed: the
server's peak resident memory (VmHWM), observations per second, and the 503s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from citypilot.bench.loadclient import Connection
from citypilot.bench.server import server_process
from citypilot.config import Settings

console = Console()
UNBOUNDED = {
    "CITYPILOT_MAX_INFLIGHT_REQUESTS": "1000000",
    "CITYPILOT_MAX_INFLIGHT_BYTES": str(1 << 50),
}


def add_backpressure_bench(bench: Any) -> None:
    """Register ``bench backpressure``."""
    p = bench.add_parser("backpressure", help="server memory with many concurrent ingest clients")
    p.add_argument("--entities", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--batch", type=int, default=20_000)
    p.add_argument("--batches-per-client", type=int, default=2)
    p.set_defaults(func=bench_backpressure)


def _server_pid(url: str) -> int:
    """The pid of the ``citypilot serve`` child listening at ``url``."""
    port = url.rsplit(":", 1)[1].encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in args and port in args:
                return int(entry.name)
    raise RuntimeError(f"no server process found for {url}")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _post_with_retries(
    url: str, key: str, bodies: list[bytes], clients: int
) -> tuple[float, int, int]:
    host, port = url.removeprefix("http://").split(":")
    queue = list(reversed(bodies))
    accepted = refused = 0

    async def client() -> None:
        nonlocal accepted, refused
        conn = Connection(host, int(port), {"X-Device-Key": key})
        await conn.open()
        while queue:
            body = queue.pop()
            while True:
                status, answer = await conn.request("POST", "/api/v1/ingest", body)
                if status == 200:
                    accepted += orjson.loads(answer)["accepted"]
                    break
                if status != 503:
                    raise RuntimeError(f"ingest answered {status}: {answer[:300]!r}")
                refused += 1
                await asyncio.sleep(float(orjson.loads(answer).get("retryAfter", 1)))
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start, accepted, refused


def bench_backpressure(args: argparse.Namespace, settings: Settings) -> int:
    """Peak server memory and rate, in-flight limits lifted versus configured."""
    from citypilot.bench.cli import DEVICE_KEY, _ingest_bodies, _seed

    total = args.clients * args.batches_per_client * args.batch
    bodies = _ingest_bodies(args.entities, total, args.batch)
    table = Table(title=f"bench backpressure: {args.clients} clients, {len(bodies[0]):,} B bodies")
    for col in ("run", "peak RSS (MB)", "observations/s", "503s", "accepted"):
        table.add_column(col, justify="right")
    results = []
    for label, env in (("baseline: no in-flight limit", UNBOUNDED), ("in-flight limits", {})):
        with tempfile.TemporaryDirectory(prefix="citypilot-bench-") as tmp:
            data = Path(tmp) / "data"
            asyncio.run(_seed(data, args.entities))
            with server_process(data, extra_env=env) as url:
                pid = _server_pid(url)
                elapsed, accepted, refused = asyncio.run(
                    _post_with_retries(url, DEVICE_KEY, bodies, args.clients)
                )
                peak = _peak_rss_mb(pid)
        results.append(peak)
        table.add_row(
            label,
            f"{peak:,.0f}",
            f"{accepted / elapsed:,.0f}",
            str(refused),
            f"{accepted:,}/{total:,}",
        )
        if accepted != total:
            console.print(f"[red]{label}: only {accepted} of {total} accepted[/]")
            return 1
    console.print(table)
    console.print(
        f"limits: max_inflight_requests={settings.max_inflight_requests}, "
        f"max_inflight_bytes={settings.max_inflight_bytes:,}; "
        f"peak memory ratio limited / baseline: [bold]{results[1] / results[0]:.2f}[/]"
    )
    return 0
