"""Benchmark of the browser console in headless Chromium (``citypilot bench console``).

``run_console_bench`` logs in through the real login form, measures the time to the
first complete map render, then drives live updates through the ingest API at a fixed
rate and measures, for each update, the lag between its acceptance and its appearance
on screen (read from the console's debug hook, ``window.__citypilot``), the page's frame
rate, and the JS heap over time. ``prepare_city`` builds the demo city (the twin
generator, any scale) into a fresh data directory for it.

Lag is measured from the moment the ingest request is *sent* (its acceptance happens
before the answer; the send time is a conservative bound) to the first rendered frame
after the console applied the change (``appliedAt``, stamped on MapLibre's ``render``
event once the change's source is drawn). Both clocks are the same machine's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from citypilot.console.profile import cpu_profile, save, summary, trace_summary, tracing

CHROMIUM = os.environ.get("CITYPILOT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--enable-precise-memory-info",
]
VIEWPORT = {"width": 1920, "height": 1080}
#: Share of the updates that move a vehicle; the others switch streetlights on or off.
VEHICLE_SHARE = 0.1
#: An update not on screen after this long counts as lost.
LOST_AFTER_S = 10.0
BATCHES_PER_SECOND = 10


# --------------------------------------------------------------------------- preparation
def prepare_city(
    data_dir: Path,
    scale: float = 1.0,
    seed: int = 7,
    accounts: tuple[tuple[str, str, str], ...] = (("bench", "bench-password", "operator"),),
    device_key: str = "cpd_console_bench_key",
) -> dict[str, int]:
    """Generate the demo city at ``scale`` into a fresh store in ``data_dir``.

    Writes the map layers into ``data_dir/layers``, upserts every entity in-process
    (much faster than over HTTP), and creates ``accounts`` (name, password, role) and a
    device key. Returns the entity counts by type. The server must not be running.
    """
    from citypilot.config import Settings
    from citypilot.twin import generate_city, write_layers
    from citypilot.twin.commands import load_city

    city = generate_city(seed=seed, scale=scale)
    write_layers(city, data_dir / "layers")
    asyncio.run(load_city(Settings(data_dir=data_dir), city))
    asyncio.run(_add_logins(data_dir, accounts, device_key))
    return city.counts()


async def _add_logins(
    data_dir: Path, accounts: tuple[tuple[str, str, str], ...], device_key: str
) -> None:
    from citypilot.config import Settings
    from citypilot.security.provision import add_logins
    from citypilot.store.factory import opened_store

    async with opened_store(Settings(data_dir=data_dir)) as store:
        await add_logins(store, accounts, [("console-bench", device_key)])


# --------------------------------------------------------------------------- live load
@dataclass
class _Sent:
    """Updates sent so far: (entity id, send time in epoch ms)."""

    items: list[tuple[str, float]] = field(default_factory=list)
    errors: int = 0
    #: How long each ingest request took to answer (ms): the server's share of the lag.
    answer_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _targets(client: httpx.Client) -> tuple[list[str], list[tuple[str, str, float, float]]]:
    """Streetlight ids, and (id, type, lon, lat) of every vehicle, from the map API."""
    lights = client.get("/api/v1/map/entities/Streetlight").json()["ids"]
    vehicles = []
    for t in ("Bus", "Tram", "PoliceUnit", "TechnicalVehicle"):
        doc = client.get(f"/api/v1/map/entities/{t}").json()
        for i, eid in enumerate(doc["ids"]):
            if doc["lon"][i] is not None:
                vehicles.append((eid, t, doc["lon"][i], doc["lat"][i]))
    return lights, vehicles


def _drive(
    url: str,
    device_key: str,
    rate: int,
    seconds: float,
    lights: list[str],
    vehicles: list[tuple[str, str, float, float]],
    sent: _Sent,
    stop: threading.Event,
) -> None:
    """Send ``rate`` updates per second for ``seconds``, in BATCHES_PER_SECOND batches."""
    per_batch = max(1, rate // BATCHES_PER_SECOND)
    n_vehicles = round(per_batch * VEHICLE_SHARE) if vehicles else 0
    n_lights = per_batch - n_vehicles
    li = vi = 0
    step = 0
    start = time.monotonic()
    headers = {"X-Device-Key": device_key}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        while not stop.is_set() and time.monotonic() - start < seconds:
            now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            batch = []
            for _ in range(n_lights):
                eid = lights[li % len(lights)]
                # Each lap flips the lamps, so every update changes what the map shows.
                state = "on" if (li // len(lights)) % 2 else "off"
                batch.append(
                    {
                        "id": eid,
                        "type": "Streetlight",
                        "observedAt": now,
                        "attrs": {"powerState": state},
                    }
                )
                li += 1
            for _ in range(n_vehicles):
                eid, type_name, lon, lat = vehicles[vi % len(vehicles)]
                k = vi // len(vehicles) + 1
                point = {"type": "Point", "coordinates": [lon + 0.0004 * (k % 20), lat]}
                batch.append(
                    {
                        "id": eid,
                        "type": type_name,
                        "observedAt": now,
                        "attrs": {"location": point, "speed": 20.0 + k % 10},
                    }
                )
                vi += 1
            t_send = time.time() * 1000
            r = client.post("/api/v1/ingest", json=batch)
            answered = time.time() * 1000 - t_send
            with sent.lock:
                sent.answer_ms.append(answered)
                if r.status_code == 200:
                    sent.items.extend((item["id"], t_send) for item in batch)
                else:
                    sent.errors += len(batch)
            step += 1
            delay = start + step / BATCHES_PER_SECOND - time.monotonic()
            if delay > 0:
                stop.wait(delay)


# --------------------------------------------------------------------------- browser
@contextlib.contextmanager
def _chromium(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _heap(cdp: Any, collect: bool = False) -> float:
    """Used JS heap in MB (after a garbage collection when ``collect``)."""
    if collect:
        cdp.send("HeapProfiler.collectGarbage")
    return cdp.send("Runtime.getHeapUsage")["usedSize"] / 1e6


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_console_bench(
    url: str,
    username: str,
    password: str,
    updates_per_second: int,
    seconds: int,
    device_key: str,
    *,
    chromium: str = CHROMIUM,
    screenshot_dir: Path | None = None,
    interaction: bool = True,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """Measure the console against a running, seeded server (streetlights and vehicles).

    Returns a dict: ``entities``; ``map_pixel_ratio`` (what the map draws at);
    ``first_render_ms`` (Sign in pressed → first complete
    map render, measured in the page) and ``login_to_ready_ms`` (the same from Python);
    ``timings`` (the page's milestones); ``lag_ms`` {p50, p95, max, mean, first_half_p95,
    second_half_p95} and ``lag_p95_per_5s_ms`` (update sent → on screen);
    ``updates`` {sent, measured, lost, errors}; ``ingest_answer_ms`` {p50, p95, max};
    ``fps``, ``map_renders_per_s``, ``stream_frames_per_s``; ``heap_mb`` {start, end,
    max} (used JS heap; start and end after a forced GC); with ``interaction``,
    ``interaction`` {street_zoom, zoom_in_settle_ms, zoom_in_wheel_ms, pan_fps,
    zoom_out_settle_ms} measured under the same live load. With ``profile_dir``, the
    main thread is profiled (Chromium's sampling profiler) during the live phase and the
    browser traced (every process) during the panning: ``profile`` {live, pan} holds each
    one's summary (``console.profile``), saved there as ``live.cpuprofile`` and
    ``pan.json``.
    """
    with httpx.Client(base_url=url, timeout=120) as client:
        token = client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        lights, vehicles = _targets(client)
    out: dict[str, Any] = {"updates_per_second": updates_per_second, "seconds": seconds}
    with _chromium(chromium) as browser:
        context = browser.new_context(viewport=VIEWPORT, locale="en-GB")
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        page.goto(url + "/")
        page.get_by_test_id("login-username").fill(username)
        page.get_by_test_id("login-password").fill(password)
        t0 = time.perf_counter()
        page.get_by_test_id("login-submit").click()
        page.wait_for_function(
            "() => window.__citypilot && window.__citypilot.ready", timeout=120_000
        )
        out["login_to_ready_ms"] = round((time.perf_counter() - t0) * 1000)
        out["first_render_ms"] = round(page.evaluate("() => window.__citypilot.firstRenderMs"))
        out["timings"] = page.evaluate("() => window.__citypilot.timings")
        out["entities"] = sum(page.evaluate("() => window.__citypilot.layerCounts()").values())
        # below 1 where WebGL is software-rendered (docs/console.md#speed)
        out["map_pixel_ratio"] = page.evaluate("() => window.__citypilot.mapView().pixelRatio")
        if screenshot_dir is not None:
            screenshot_dir.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot_dir / "console-map.png"))
        # Count rendered animation frames during the load.
        page.evaluate(
            "() => { window.__benchFrames = 0; const f = () => { window.__benchFrames++;"
            " requestAnimationFrame(f); }; requestAnimationFrame(f); }"
        )
        heap = [_heap(cdp, collect=True)]
        profiles: dict[str, dict[str, Any]] = {"live": {}, "pan": {}}
        with _profiled(cdp, profile_dir, profiles["live"]):
            out.update(
                _live_phase(
                    page, cdp, url, device_key, updates_per_second, seconds, lights, vehicles, heap
                )
            )
        heap.append(_heap(cdp, collect=True))
        if interaction:
            out["interaction"] = _interaction(
                page,
                updates_per_second,
                url,
                device_key,
                lights,
                vehicles,
                lambda: _traced(browser, page, profile_dir, profiles["pan"]),
            )
        if profile_dir is not None:
            out["profile"] = {}
            for name, profile in profiles.items():
                if profile:
                    save(profile, profile_dir, name)
                    sums = trace_summary if "traceEvents" in profile else summary
                    out["profile"][name] = sums(profile)
        out["heap_mb"] = {
            "start": round(heap[0], 1),
            "end": round(heap[-1], 1),
            "max": round(max(heap), 1),
        }
        if screenshot_dir is not None:
            page.screenshot(path=str(screenshot_dir / "console-live.png"))
        context.close()
    return out


def _profiled(cdp: Any, folder: Path | None, into: dict[str, Any]) -> Any:
    """The main thread profiled into ``into`` when profiles are asked for (``folder``)."""
    return cpu_profile(cdp, into) if folder is not None else contextlib.nullcontext()


def _traced(browser: Any, page: Any, folder: Path | None, into: dict[str, Any]) -> Any:
    """The browser traced into ``into`` when profiles are asked for (``folder``)."""
    return tracing(browser, page, into) if folder is not None else contextlib.nullcontext()


def _settle(page: Any, timeout_s: float = 60.0) -> float:
    """Wait until the map stands still with every tile drawn; returns the wait in ms."""
    t = time.perf_counter()
    page.wait_for_function(
        "() => { const v = window.__citypilot.mapView(); return !v.moving && v.tilesLoaded; }",
        timeout=timeout_s * 1000,
        polling=50,
    )
    return (time.perf_counter() - t) * 1000


def _interaction(
    page: Any,
    rate: int,
    url: str,
    device_key: str,
    lights: list[str],
    vehicles: list[tuple[str, str, float, float]],
    profiled: Callable[[], Any] = contextlib.nullcontext,
) -> dict[str, Any]:
    """Zoom from the whole city to street level and pan there, with the live load on
    (the panning inside ``profiled()``)."""
    sent = _Sent()
    stop = threading.Event()
    driver = threading.Thread(
        target=_drive,
        args=(url, device_key, rate, 120, lights, vehicles, sent, stop),
        daemon=True,
    )
    driver.start()
    try:
        box = page.get_by_test_id("map").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        t = time.perf_counter()
        for _ in range(15):  # wheel notches: from the whole city to street level
            page.mouse.wheel(0, -240)
            page.wait_for_timeout(60)
        wheel_in_ms = (time.perf_counter() - t) * 1000
        zoom_in_ms = wheel_in_ms + _settle(page)
        zoom = page.evaluate("() => window.__citypilot.mapView().zoom")
        with profiled():
            frames0 = page.evaluate("() => window.__benchFrames")
            t = time.perf_counter()
            for k in range(6):  # drag the map around at street level
                page.mouse.move(cx, cy)
                page.mouse.down()
                dx = 300 if k % 2 == 0 else -300
                page.mouse.move(cx + dx, cy + dx / 3, steps=20)
                page.mouse.up()
            pan_s = time.perf_counter() - t
            pan_fps = (page.evaluate("() => window.__benchFrames") - frames0) / pan_s
        t = time.perf_counter()
        for _ in range(15):
            page.mouse.wheel(0, 240)
            page.wait_for_timeout(60)
        zoom_out_ms = (time.perf_counter() - t) * 1000 + _settle(page)
    finally:
        stop.set()
        driver.join()
    return {
        "street_zoom": round(zoom, 1),
        "zoom_in_settle_ms": round(zoom_in_ms),
        "zoom_in_wheel_ms": round(wheel_in_ms),
        "pan_fps": round(pan_fps, 1),
        "zoom_out_settle_ms": round(zoom_out_ms),
    }


def _live_phase(
    page: Any,
    cdp: Any,
    url: str,
    device_key: str,
    rate: int,
    seconds: float,
    lights: list[str],
    vehicles: list[tuple[str, str, float, float]],
    heap: list[float],
) -> dict[str, Any]:
    """Drive updates from a thread; poll the page for when each reached the screen."""
    sent = _Sent()
    stop = threading.Event()
    driver = threading.Thread(
        target=_drive,
        args=(url, device_key, rate, seconds, lights, vehicles, sent, stop),
        daemon=True,
    )
    frames0 = page.evaluate("() => window.__benchFrames")
    stats0 = page.evaluate("() => window.__citypilot.stats()")
    seq = page.evaluate("() => window.__citypilot.appliedSince(0).next")
    t_start = time.time() * 1000
    driver.start()
    pending: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
    n_pending = 0
    taken = 0
    lags: list[tuple[float, float]] = []  # (send time, lag ms)
    lost = 0
    last_heap = time.monotonic()
    while True:
        time.sleep(0.1)
        with sent.lock:
            fresh = sent.items[taken:]
            taken = len(sent.items)
        for eid, t_send in fresh:
            pending[eid].append(t_send)
        n_pending += len(fresh)
        log = page.evaluate("seq => window.__citypilot.appliedSince(seq)", seq)
        seq = log["next"]
        for eid, t_applied in zip(log["ids"], log["times"], strict=True):
            queue = pending.get(eid)
            # Every update of this id sent before the frame is on screen with it.
            while queue and queue[0] <= t_applied:
                lags.append((queue[0], t_applied - queue.popleft()))
                n_pending -= 1
        now = time.time() * 1000
        for eid in list(pending):
            queue = pending[eid]
            while queue and now - queue[0] > LOST_AFTER_S * 1000:
                queue.popleft()
                lost += 1
                n_pending -= 1
            if not queue:
                del pending[eid]
        if time.monotonic() - last_heap >= 5:
            heap.append(_heap(cdp))
            last_heap = time.monotonic()
        if not driver.is_alive() and n_pending == 0:
            break
    stop.set()
    driver.join()
    elapsed = (time.time() * 1000 - t_start) / 1000
    frames = page.evaluate("() => window.__benchFrames") - frames0
    stats = page.evaluate("() => window.__citypilot.stats()")
    values = [lag for _, lag in lags]
    mid = t_start + seconds * 500
    first = [lag for t, lag in lags if t < mid]
    second = [lag for t, lag in lags if t >= mid]

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v)

    # p95 of the lag per 5 s of sending: flat when the console keeps up.
    timeline = []
    for k in range(0, max(1, int(seconds)), 5):
        window = [lag for t, lag in lags if t_start + k * 1000 <= t < t_start + (k + 5) * 1000]
        timeline.append(rounded(_percentile(window, 95)))
    return {
        "lag_p95_per_5s_ms": timeline,
        "lag_ms": {
            "p50": rounded(_percentile(values, 50)),
            "p95": rounded(_percentile(values, 95)),
            "max": rounded(max(values) if values else None),
            "mean": rounded(statistics.fmean(values) if values else None),
            "first_half_p95": rounded(_percentile(first, 95)),
            "second_half_p95": rounded(_percentile(second, 95)),
        },
        "updates": {"sent": taken, "measured": len(values), "lost": lost, "errors": sent.errors},
        "ingest_answer_ms": {
            "p50": rounded(_percentile(sent.answer_ms, 50)),
            "p95": rounded(_percentile(sent.answer_ms, 95)),
            "max": rounded(max(sent.answer_ms) if sent.answer_ms else None),
        },
        "fps": round(frames / elapsed, 1) if elapsed > 0 else None,
        "map_renders_per_s": round((stats["renders"] - stats0["renders"]) / elapsed, 1),
        "stream_frames_per_s": round((stats["frames"] - stats0["frames"]) / elapsed, 1),
    }
