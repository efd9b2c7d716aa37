"""The fire scenario end to end, on the demo city with its live simulator: a citizen
reports a fire through Open311 → an incident opens and the street around it closes →
the bus lines through it detour and the tram short-turns, in the public GTFS-Realtime
alerts → the nearest police unit is recommended and dispatched → every signal on its route
gets a priority request in route order, released once the unit has passed → the
incident resolves, the closure ends, the citizen's request is closed; the timeline
shows every step and the time saved by priority."""

from __future__ import annotations

import httpx
import pytest

from citypilot.bench.server import free_port
from citypilot.demo import DEMO_PASSWORD, DEMO_USER
from tests.integration.test_demo import start_demo, stop, wait_for

pytestmark = pytest.mark.slow

SCENARIO = """
name = "Fire now"
description = "A fire by the town hall as the demo starts."
[[event]]
at = "+00:00"
kind = "fireReport"
near = "urn:ngsi-ld:Building:0001"
offset_m = [120, -80]
duration = "4h"
description = "Smoke pouring out of a bakery"
close_m = 80
"""


def _timeline(api: httpx.Client, incident: str) -> list[dict]:
    return api.get(f"/api/v1/incidents/{incident}/timeline").json()


def test_a_fire_reported_to_311_is_answered_across_silos_and_everything_is_restored(tmp_path):
    scenario = tmp_path / "fire-now.toml"
    scenario.write_text(SCENARIO)
    port = free_port()
    # at speed 1 the scenario's "+00:00" is now (faster, the replay starts in the past)
    extra = ("--history-hours", "0", "--scenario", str(scenario), "--speed", "1")
    proc = start_demo(tmp_path / "data", port, *extra)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/api/v1/health").status_code == 200, 180, "the demo")
        token = httpx.post(
            url + "/api/v1/auth/token", data={"username": DEMO_USER, "password": DEMO_PASSWORD}
        ).json()["access_token"]
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

        # the citizen's report opened an incident, and the responders closed the street
        def opened() -> dict | None:
            fires = api.get("/api/v1/incidents", params={"type": "fire"}).json()
            mine = [i for i in fires if i["source"] == "open311" and i["links"].get("closures")]
            return mine[0] if mine else None

        incident = wait_for(opened, 120, "the 311 report's incident and its closure")
        iid = incident["id"]
        (request_ref,) = incident["links"]["serviceRequests"]
        (closure_id,) = incident["links"]["closures"]
        closures = {c["id"]: c for c in api.get("/api/v1/closures").json()}
        assert closures[closure_id]["status"] == "active" and closures[closure_id]["edges"]

        # the buses through the closed street detour round it, the tram short-turns, and
        # passengers are told in the public GTFS-Realtime alerts
        def alerted() -> list[dict] | None:
            feed = httpx.get(url + "/gtfs-rt/alerts", params={"format": "json"}).json()
            alerts = [e["alert"] for e in feed.get("entity", [])]
            return alerts if sum(a["effect"] == "DETOUR" for a in alerts) >= 2 else None

        alerts = wait_for(alerted, 30, "detour alerts for two bus lines")
        detoured = {
            i["route_id"]
            for a in alerts
            if a["effect"] == "DETOUR"
            for i in a["informed_entity"]
            if "route_id" in i
        }
        plans = httpx.get(url + "/api/v1/transit/detours").json()["detours"]
        assert {p["routeId"] for p in plans if p["kind"] == "detour"} == detoured
        assert all(p["closures"] == [closure_id] for p in plans)

        # the nearest police unit by road, dispatched; its route avoids the closed street
        ranked = api.get(f"/api/v1/incidents/{iid}/recommendation", params={"kind": "police"})
        assert ranked.status_code == 200, ranked.text
        unit = ranked.json()["units"][0]
        r = api.post(f"/api/v1/incidents/{iid}/dispatch", json={"units": [unit["unit"]]})
        assert r.status_code == 200, r.text
        plan = r.json()["incident"]["assignments"][unit["unit"]]["priority"]
        signals = [s["signal"] for s in plan["stops"]]
        assert signals, "the unit's route crosses no signal"
        etas = [s["etaSeconds"] for s in plan["stops"]]
        assert etas == sorted(etas)

        # every signal on the route is asked for priority in route order, then released
        def released() -> list[dict] | None:
            timeline = _timeline(api, iid)
            done = [e for e in timeline if e["action"] == "priority cancelled"]
            return timeline if len(done) == len(signals) else None

        # released as the simulated unit drives past each (its ETA there, and some slack)
        try:
            timeline = wait_for(released, max(etas) + 180, f"priority released, ETAs {etas}")
        except AssertionError as exc:  # say how far it got
            steps = [(e["at"][11:19], e["action"], e["detail"]) for e in _timeline(api, iid)]
            where = api.get(f"/ngsi-ld/v1/entities/{unit['unit']}").json().get("location")
            raise AssertionError(f"{exc}; the unit is at {where}; timeline {steps}") from None
        requested = [
            e["detail"].split(" ")[0] for e in timeline if e["action"] == "priority requested"
        ]
        assert requested == signals
        released_as = [e["detail"] for e in timeline if e["action"] == "priority cancelled"]
        assert released_as == [f"{signal} passed" for signal in signals]  # in route order
        for entry in (e for e in timeline if e["action"] == "priority requested"):
            command = api.get(f"/api/v1/commands/{entry['refs'][0]}").json()
            assert command["command"] == "requestPriority"
            assert command["state"] in ("acknowledged", "confirmed")  # the simulated signal

        # resolved: the street reopens, the citizen's request is closed with the news
        for status in ("on_scene", "resolved"):
            r = api.post(f"/api/v1/incidents/{iid}/status", json={"status": status})
            assert r.status_code == 200, r.text
        assert api.post(f"/api/v1/closures/{closure_id}/end", json={}).status_code == 200
        assert api.get("/api/v1/closures").json() == []
        assert "entity" not in httpx.get(url + "/gtfs-rt/alerts?format=json").json()
        assert httpx.get(url + "/api/v1/transit/detours").json() == {"detours": []}
        local = request_ref.rsplit(":", 1)[1]
        (answer,) = httpx.get(f"{url}/open311/v2/requests/{local}.json").json()
        assert answer["status"] == "closed"
        final = api.get(f"/api/v1/incidents/{iid}").json()
        actions = [e["action"] for e in final["timeline"]]
        for step in ("reported", "closure", "dispatched", "priority requested", "status"):
            assert step in actions, (step, actions)
        # the twin drove the same route without priority too: the time saved is measured
        (rehearsed,) = [e for e in final["timeline"] if e["action"] == "priority rehearsed"]
        twin = final["assignments"][unit["unit"]]["priority"]["twin"]
        assert twin["signals"] == len(signals)
        assert twin["withoutPrioritySeconds"] >= twin["withPrioritySeconds"] > 0
        assert final["prioritySavedSeconds"] == pytest.approx(twin["savedSeconds"], abs=0.2)
        assert f"{twin['savedSeconds']:.0f} s saved" in rehearsed["detail"]
        api.close()
    finally:
        out = stop(proc)
        print(out[-4000:])  # the demo's own words, shown when the test fails
    assert "A citizen reports to 311" in out
