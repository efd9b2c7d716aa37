"""Where the console's CPU goes: Chromium's profiler and tracing through the DevTools protocol.

``cpu_profile`` runs V8's sampling profiler (CDP ``Profiler``) on the page's main thread
around a block of the benchmark and keeps the profile (a ``.cpuprofile`` file Chromium's
DevTools opens). ``summary`` folds it into what a reader needs: the share of the main
thread that was busy, the functions with the most time of their own, and that time by
where the code comes from (the console, MapLibre, the browser's own work outside
JavaScript — "(program)" — and garbage collection).

The browser's own work is what ``tracing`` shows (CDP ``Tracing``, through Playwright):
``trace_summary`` gives each busy thread of every Chromium process (the page's main
thread, the compositor, the GPU process that runs software WebGL) and the trace events
its time went to.
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Sampling interval of the profiler (µs): fine enough for frames of 50-200 ms.
SAMPLING_US = 500
#: Trace categories: the page's tasks, painting and compositing, and the GPU process.
TRACE_CATEGORIES = ["devtools.timeline", "blink", "cc", "gpu", "viz", "v8"]
#: Trace events that only wrap others: their children count instead.
WRAPPERS = frozenset(
    {"ThreadControllerImpl::RunTask", "RunTask", "ThreadPool_RunTask", "RunNormalPriorityTask"}
)
#: V8's pseudo-functions: time not spent running JavaScript.
IDLE, PROGRAM, GC = "(idle)", "(program)", "(garbage collector)"


@contextlib.contextmanager
def cpu_profile(cdp: Any, into: dict[str, Any]) -> Iterator[None]:
    """Profile the page's main thread for the block; the profile is put in ``into``."""
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": SAMPLING_US})
    cdp.send("Profiler.start")
    try:
        yield
    finally:
        into.update(cdp.send("Profiler.stop")["profile"])
        cdp.send("Profiler.disable")


def _origin(url: str) -> str:
    if not url:
        return "browser (native)"
    if "maplibre-gl-worker" in url:
        return "MapLibre worker"
    if "/assets/index-" in url or "/src/" in url:
        return "console bundle (console code + MapLibre main thread)"
    return url.rsplit("/", 1)[-1][:60]


def summary(profile: dict[str, Any], top: int = 15) -> dict[str, Any]:
    """Busy share, self time per function and per origin (ms) of a CDP CPU profile."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    self_us: collections.Counter[int] = collections.Counter()
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        self_us[node_id] += max(0, delta)
    by_function: collections.Counter[tuple[str, str, int]] = collections.Counter()
    by_origin: collections.Counter[str] = collections.Counter()
    total = sum(self_us.values()) or 1
    idle = 0
    for node_id, us in self_us.items():
        frame = nodes[node_id]["callFrame"]
        name = frame["functionName"] or "(anonymous)"
        if name == IDLE:
            idle += us
            continue
        url = frame.get("url", "")
        by_function[(name, url.rsplit("/", 1)[-1], frame.get("lineNumber", -1) + 1)] += us
        by_origin[name if name in (PROGRAM, GC) else _origin(url)] += us
    return {
        "profiled_ms": round(total / 1000),
        "busy_percent": round(100.0 * (total - idle) / total, 1),
        "by_origin_ms": {k: round(v / 1000) for k, v in by_origin.most_common()},
        "top_self_ms": [
            {"function": f, "file": u, "line": line, "ms": round(v / 1000)}
            for (f, u, line), v in by_function.most_common(top)
        ],
    }


@contextlib.contextmanager
def tracing(browser: Any, page: Any, into: dict[str, Any]) -> Iterator[None]:
    """Trace the browser (every process) for the block; the trace is put in ``into``."""
    browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
    try:
        yield
    finally:
        into.update(json.loads(browser.stop_tracing()))


def trace_summary(trace: dict[str, Any], threads: int = 6, top: int = 6) -> dict[str, Any]:
    """The busiest threads of a trace (ms of their outermost events) and what they did."""
    events = trace.get("traceEvents", [])
    names: dict[tuple[int, int], str] = {}
    procs: dict[int, str] = {}
    spans: dict[tuple[int, int], list[tuple[float, float, str]]] = collections.defaultdict(list)
    for e in events:
        key = (e.get("pid", 0), e.get("tid", 0))
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[key] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "process_name":
            procs[key[0]] = e["args"]["name"]
        elif e.get("ph") == "X" and "dur" in e and e.get("name") not in WRAPPERS:
            spans[key].append((float(e["ts"]), float(e["dur"]), e["name"]))
    timed = [e for e in events if "ts" in e and e.get("ph") != "M"]
    first = min((float(e["ts"]) for e in timed), default=0.0)
    last = max((float(e["ts"]) + float(e.get("dur", 0)) for e in timed), default=0.0)
    wall_us = last - first
    busy: dict[tuple[int, int], collections.Counter[str]] = {}
    for key, items in spans.items():
        items.sort()
        end = -1.0
        per_name: collections.Counter[str] = collections.Counter()
        for ts, dur, name in items:
            if ts >= end:  # an outermost event: those inside it are its own detail
                per_name[name] += dur
                end = ts + dur
        busy[key] = per_name
    ranked = sorted(busy, key=lambda k: -sum(busy[k].values()))[:threads]
    return {
        "wall_ms": round(wall_us / 1000),
        "threads": [
            {
                "thread": f"{procs.get(k[0], k[0])}/{names.get(k, k[1])}",
                "busy_ms": round(sum(busy[k].values()) / 1000),
                "top_ms": {n: round(v / 1000) for n, v in busy[k].most_common(top)},
            }
            for k in ranked
        ],
    }


def save(profile: dict[str, Any], folder: Path, name: str) -> Path:
    """Write a CPU profile as ``name.cpuprofile`` (a trace: ``name.json``) in ``folder``;
    Chromium's DevTools opens either."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{name}.json" if "traceEvents" in profile else f"{name}.cpuprofile")
    path.write_text(json.dumps(profile))
    return path
