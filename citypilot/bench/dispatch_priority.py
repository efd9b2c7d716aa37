"""From a dispatch to its first signal-priority request, end to end through the API.

``citypilot demo`` runs in a child process on a fresh data directory (the demo city at
the scale asked, its live simulator obeying commands, no played history). For random
incidents on its road graph the bench, as an operator would, reports the incident,
asks for the recommendation and dispatches the first unit named; then it reads, from
the command's own transitions, when the incident's first ``requestPriority`` (the first
on its timeline) was made (``pending``) and handed to the simulated signal (``sent``),
timed from the moment the dispatch request left the client. It starts ``SETTLE_S``
after the demo answers, once the simulator's start-up reports are in.

The server runs with the longest priority lead time (``CITYPILOT_PRIORITY_LEAD_S=600``)
so every request on the route is due at the dispatch: what is measured is the
platform's own delay, not the lead time it waits by design. The baseline, in the same
run and on the same graph, is a bare single-source shortest-path search from each
incident's node in the bench's own process.
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

#: The longest lead time the settings allow: every request is due at once.
LEAD_S = "600"
#: How long the first request may take to appear before the dispatch counts as lost.
WAIT_S = 10.0
POLL_S = 0.05
#: The demo's first seconds: every simulated device reports once as the simulator starts
#: (50,000 reports at scale 1), which is not the steady state measured here.
SETTLE_S = 20.0


def _epoch(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


def _login(url: str) -> httpx.Client:
    from citypilot.demo import DEMO_PASSWORD, DEMO_USER

    answer = httpx.post(
        url + "/api/v1/auth/token", data={"username": DEMO_USER, "password": DEMO_PASSWORD}
    )
    answer.raise_for_status()
    token = answer.json()["access_token"]
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _first_request(api: httpx.Client, incident: str) -> dict[str, Any] | None:
    """The incident's first ``requestPriority`` command, once its ``sent`` transition is
    kept, with its transitions; None if it did not come within ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        timeline = api.get(f"/api/v1/incidents/{incident}/timeline").json()
        asked = [e for e in timeline if e["action"] == "priority requested"]
        if asked:
            command = api.get(f"/api/v1/commands/{asked[0]['refs'][0]}").json()
            if any(t["state"] == "sent" for t in command["transitions"]):
                return command
        time.sleep(POLL_S)
    return None


def _one_dispatch(api: httpx.Client, lon: float, lat: float) -> dict[str, Any] | None:
    """Report, recommend, dispatch; the delays to the first priority request (seconds),
    or None when the recommended unit's route crosses no signal within the lead time."""
    made = api.post(
        "/api/v1/incidents",
        json={"type": "roadAccident", "location": {"type": "Point", "coordinates": [lon, lat]}},
    )
    made.raise_for_status()
    incident = made.json()["id"]
    ranked = api.get(f"/api/v1/incidents/{incident}/recommendation")
    if ranked.status_code != 200 or not ranked.json()["units"]:
        return None
    unit = ranked.json()["units"][0]["unit"]
    sent_at = time.time()
    answer = api.post(f"/api/v1/incidents/{incident}/dispatch", json={"units": [unit]})
    answered = time.time() - sent_at
    answer.raise_for_status()
    stops = answer.json()["incident"]["assignments"][unit]["priority"]["stops"]
    if not any(s["etaSeconds"] <= float(LEAD_S) for s in stops):
        return None
    command = _first_request(api, incident)
    timeline = api.get(f"/api/v1/incidents/{incident}/timeline").json()
    skipped = sum(e["action"] == "priority skipped" for e in timeline)
    if command is None:
        return {"lost": True, "incident": incident, "skipped": skipped}
    at = {t["state"]: _epoch(t["at"]) for t in reversed(command["transitions"])}
    return {
        "lost": False,
        "answered": answered,
        "pending": at["pending"] - sent_at,
        "sent": at["sent"] - sent_at,
        "skipped": skipped,
    }


def measure_priority(scale: float, seed: int, dispatches: int) -> dict[str, Any]:
    """``dispatches`` dispatches on the demo city at ``scale`` with a route crossing a
    signal: per dispatch the delays (seconds) to the first request made and sent, the
    dispatch call's own answer time, and the bare shortest-path search from the same
    node (the baseline)."""
    from citypilot.bench.server import server_child

    command = ("demo", "--scale", f"{scale:g}", "--seed", str(seed), "--history-hours", "0")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        env = {"CITYPILOT_PRIORITY_LEAD_S": LEAD_S}
        with server_child(data, env, timeout=900, command=command) as (url, _proc):
            time.sleep(SETTLE_S)
            return measure_on(url, data / "graph", seed, dispatches)


def measure_on(url: str, graph: Path, seed: int, dispatches: int) -> dict[str, Any]:
    """The measure of ``measure_priority`` against a running demo at ``url`` whose road
    graph is in ``graph``."""
    from citypilot.ops.roadgraph import load_network
    from citypilot.ops.routing import Routing

    out: dict[str, Any] = {"answered": [], "pending": [], "sent": [], "bare": [], "lost": []}
    out["tried"] = out["skipped"] = 0
    routing = Routing(load_network(graph))
    net = routing.network
    rng = random.Random(seed)
    api = _login(url)
    # units are sent once each: at most as many tries as the fleet has units
    units = len(api.get("/api/v1/units", params={"status": "available"}).json())
    while len(out["sent"]) < dispatches and out["tried"] < units:
        out["tried"] += 1
        node = rng.randrange(net.node_count)
        got = _one_dispatch(api, float(net.lon[node]), float(net.lat[node]))
        if got is None:
            continue
        out["skipped"] += got["skipped"]
        if got["lost"]:
            out["lost"].append(got["incident"])
            continue
        for key in ("answered", "pending", "sent"):
            out[key].append(got[key])
        started = time.perf_counter()
        routing.times_to(node)
        out["bare"].append(time.perf_counter() - started)
    out["nodes"] = net.node_count
    return out
