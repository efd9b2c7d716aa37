"""Incidents, dispatch by road travel time and road closures, against a real server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from citypilot.bench.server import server_process
from citypilot.twin.director import ScenarioDirector
from citypilot.twin.scenario import CitizenReport
from tests.conftest import ADMIN, DEVICE_KEY, OPERATOR, VIEWER, Server, seed_accounts
from tests.integration import incident_world as world

NEAR_ACROSS_RIVER = "urn:ngsi-ld:PoliceUnit:PM-across"  # 400 m away, 2 km by road
FAR_SAME_BANK = "urn:ngsi-ld:PoliceUnit:PM-bank"  # 632 m away, 800 m by road
OFF_DUTY = "urn:ngsi-ld:PoliceUnit:PM-off"
FIRE_ENGINE = "urn:ngsi-ld:TechnicalVehicle:FPT-01"


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose data directory holds the river town's road graph and units."""
    data = tmp_path_factory.mktemp("incident-town")
    asyncio.run(seed_accounts(data))
    world.write_graph(data / "graph")
    # priority requests all go out at dispatch (lead time longer than any ETA here)
    with server_process(data, {"CITYPILOT_PRIORITY_LEAD_S": "600"}) as url:
        server = Server(url, data)
        entities = [
            world.municipality(),
            world.unit("PM-across", "PoliceUnit", 0, 1, status="available"),
            world.unit("PM-bank", "PoliceUnit", 3, 4, status="patrolling"),
            world.unit("PM-off", "PoliceUnit", 0, 4, status="offDuty"),
            world.unit(
                "FPT-01", "TechnicalVehicle", 4, 0, status="atBase", vehicleType="fireEngine"
            ),
            world.unit("REP-01", "TechnicalVehicle", 4, 1, status="atBase", vehicleType="repair"),
            world.signal("TS-west", 1, 4),
            world.signal("TS-east", 2, 4),
        ]
        with server.client(ADMIN) as admin:
            r = admin.post("/ngsi-ld/v1/entityOperations/upsert", json=entities)
            assert r.status_code in (201, 204), r.text
        yield server


def _open(town: Server, col: float = 0, row: float = 3, kind: str = "fire") -> dict:
    lon, lat = world.lonlat(col, row)
    with town.client(OPERATOR) as op:
        r = op.post(
            "/api/v1/incidents",
            json={
                "type": kind,
                "severity": "major",
                "location": {"type": "Point", "coordinates": [lon, lat]},
                "description": "Smoke from a shop",
            },
        )
    assert r.status_code == 201, r.text
    return r.json()


def _report(town: Server, unit_id: str, attrs: dict) -> None:
    """The unit reports, as its vehicle gateway would."""
    at = datetime.now(UTC).isoformat()
    doc = {"id": unit_id, "type": unit_id.split(":")[2], "observedAt": at, "attrs": attrs}
    with town.device() as device:
        r = device.post("/api/v1/ingest", json=[doc])
    assert r.status_code == 200, r.text


def _ends(minutes: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def test_an_incident_walks_its_lifecycle_and_refuses_illegal_moves(town: Server):
    incident = _open(town)
    assert incident["status"] == "reported"
    assert incident["municipality"] == world.MUNICIPALITY
    assert incident["affectedArea"]["type"] == "Polygon"
    local = incident["id"].split(":")[-1]
    with town.client(OPERATOR) as op:
        r = op.post(f"/api/v1/incidents/{local}/status", json={"status": "closed"})
        assert r.status_code == 409
        assert r.json()["field"] == "status" and "reported" in r.json()["detail"]
        for status in ("dispatched", "on_scene", "resolved", "closed"):
            r = op.post(
                f"/api/v1/incidents/{incident['id']}/status", json={"status": status, "note": "ok"}
            )
            assert r.status_code == 200, r.text
        r = op.post(f"/api/v1/incidents/{local}/status", json={"status": "reported"})
        assert r.status_code == 409
    with town.client(VIEWER) as viewer:
        timeline = viewer.get(f"/api/v1/incidents/{local}/timeline").json()
        listed = viewer.get("/api/v1/incidents", params={"status": "closed"}).json()
    assert [e["action"] for e in timeline] == ["reported", *["status"] * 4]
    assert all(e["by"] == OPERATOR[0] and e["at"] for e in timeline)
    assert "on_scene → resolved" in timeline[3]["detail"]
    assert incident["id"] in [i["id"] for i in listed]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "meteor", "location": {"type": "Point", "coordinates": [5.04, 47.32]}}, "type"),
        ({"type": "fire"}, "location"),
        ({"type": "fire", "severity": "huge", "location": None}, "severity"),
        ({"type": "fire", "location": {"type": "Point", "coordinates": [12.0, 40.0]}}, "location"),
        (
            {"type": "fire", "location": {"type": "Point", "coordinates": [5.04, 47.32]}, "x": 1},
            "x",
        ),
    ],
)
def test_a_bad_incident_report_names_its_field_and_leaves_nothing(town: Server, body, field):
    with town.client(VIEWER) as viewer:
        before = len(viewer.get("/api/v1/incidents").json())
    with town.client(OPERATOR) as op:
        r = op.post("/api/v1/incidents", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    with town.client(VIEWER) as viewer:
        assert len(viewer.get("/api/v1/incidents").json()) == before
        assert viewer.post("/api/v1/incidents", json=body).status_code == 403


def test_units_are_ranked_by_road_time_not_by_straight_line(town: Server):
    incident = _open(town)
    with town.client(OPERATOR) as op:
        r = op.get(f"/api/v1/incidents/{incident['id']}/recommendation", params={"kind": "police"})
    assert r.status_code == 200, r.text
    units = r.json()["units"]
    assert [u["unit"] for u in units] == [FAR_SAME_BANK, NEAR_ACROSS_RIVER]  # off duty: none
    bank, across = units
    assert across["straightLineMetres"] < bank["straightLineMetres"]
    assert bank["etaSeconds"] < across["etaSeconds"]
    assert across["distanceMetres"] == pytest.approx(2000.0, abs=1)
    line = across["route"]
    assert line["type"] == "LineString"
    assert line["coordinates"][0] == list(world.lonlat(0, 1))
    assert line["coordinates"][-1] == list(world.lonlat(0, 3))
    assert list(world.lonlat(world.BRIDGE_COLUMN, 2)) in line["coordinates"]
    with town.client(VIEWER) as viewer:  # fire: the fire engine comes first by kind filter
        kinds = {
            u["kind"]
            for u in viewer.get(
                f"/api/v1/incidents/{incident['id']}/recommendation", params={"count": 5}
            ).json()["units"]
        }
    assert "fireEngine" in kinds


def test_dispatch_moves_the_unit_and_the_incident_and_refuses_a_busy_unit(town: Server):
    incident = _open(town, 1, 4)
    with town.client(OPERATOR) as op:
        r = op.post(f"/api/v1/incidents/{incident['id']}/dispatch", json={"units": [FIRE_ENGINE]})
        assert r.status_code == 200, r.text
        sent = r.json()
        assert sent["incident"]["status"] == "dispatched"
        assert sent["units"][0]["route"]["type"] == "LineString"
        job = sent["incident"]["assignments"][FIRE_ENGINE]
        assert job["status"] == "dispatched" and job["etaSeconds"] > 0
        assert sent["incident"]["links"]["units"] == [FIRE_ENGINE]
        assert sent["incident"]["timeline"][-1]["action"] == "dispatched"
        assert FIRE_ENGINE in sent["incident"]["timeline"][-1]["refs"]
        units = {u["id"]: u for u in op.get("/api/v1/units").json()}
        assert units[FIRE_ENGINE]["status"] == "dispatched"
        assert units[FIRE_ENGINE]["incident"] == incident["id"]
        # the engine's own reports move its status: driving, then working at the scene
        for attrs, status in (
            ({"speed": 48.0, "status": "onRoute"}, "en_route"),
            ({"speed": 0.0, "status": "working"}, "on_scene"),
        ):
            _report(town, FIRE_ENGINE, attrs)
            units = {u["id"]: u for u in op.get("/api/v1/units").json()}
            assert units[FIRE_ENGINE]["status"] == status
        other = _open(town, 2, 4)
        before = op.get(f"/api/v1/incidents/{other['id']}").json()
        for units_sent, status, field in (
            ([FIRE_ENGINE], 409, "units[0]"),  # busy with the first incident
            ([FAR_SAME_BANK, OFF_DUTY], 409, "units[1]"),  # off duty: nothing applied
            (["urn:ngsi-ld:PoliceUnit:nobody"], 404, "units[0]"),
            ([], 400, "units"),
            ([FAR_SAME_BANK, FAR_SAME_BANK], 400, "units"),
        ):
            r = op.post(f"/api/v1/incidents/{other['id']}/dispatch", json={"units": units_sent})
            assert r.status_code == status, r.text
            assert r.json()["field"] == field
        assert op.get(f"/api/v1/incidents/{other['id']}").json() == before
        assert op.get("/api/v1/units", params={"status": "available"}).status_code == 200
        available = {
            u["id"] for u in op.get("/api/v1/units", params={"status": "available"}).json()
        }
        assert FAR_SAME_BANK in available
        for status in ("resolved", "closed"):
            op.post(f"/api/v1/incidents/{other['id']}/status", json={"status": status})
        r = op.post(f"/api/v1/incidents/{other['id']}/dispatch", json={"units": [FAR_SAME_BANK]})
        assert r.status_code == 409 and r.json()["field"] == "status"
        # the first incident resolves and the engine is back at base: free again
        op.post(f"/api/v1/incidents/{incident['id']}/status", json={"status": "resolved"})
        _report(town, FIRE_ENGINE, {"speed": 0.0, "status": "atBase"})
        available = {
            u["id"] for u in op.get("/api/v1/units", params={"status": "available"}).json()
        }
        assert FIRE_ENGINE in available


def _close_at(op: httpx.Client, col: float, row: float, path: str = "/api/v1/closures") -> dict:
    lon, lat = world.lonlat(col, row)
    r = op.post(
        path,
        json={
            "location": {"type": "Point", "coordinates": [lon, lat]},
            "radius": 20,
            "endsAt": _ends(),
            "reason": "fire hoses across the street",
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_a_closure_changes_the_route_at_once_and_isolation_is_said(town: Server):
    incident = _open(town, 1, 3)  # reached from (0,3), (2,3) and (1,4)
    rec = f"/api/v1/incidents/{incident['id']}/recommendation"
    with town.client(OPERATOR) as op:
        before = op.get(rec, params={"kind": "police"}).json()["units"][0]
        assert before["unit"] == FAR_SAME_BANK and before["distanceMetres"] == pytest.approx(600)
        cordon = _close_at(op, 1.5, 3, f"/api/v1/incidents/{incident['id']}/closures")
        assert cordon["status"] == "active" and cordon["incident"] == incident["id"]
        assert cordon["geometry"]["type"] == "MultiLineString" and len(cordon["edges"]) == 1
        # the incident's own cordon stops the traffic, not its responders...
        through = op.get(rec, params={"kind": "police"}).json()["units"][0]
        assert through["distanceMetres"] == pytest.approx(600)
        # ...but another incident's responders go round it
        other = _open(town, 2, 3)
        round_it = op.get(f"/api/v1/incidents/{other['id']}/recommendation").json()["units"]
        closed = {tuple(world.lonlat(1, 3)), tuple(world.lonlat(2, 3))}
        for u in round_it:
            steps = [tuple(c) for c in u["route"]["coordinates"]]
            assert all({a, b} != closed for a, b in itertools.pairwise(steps))
        op.post(f"/api/v1/incidents/{other['id']}/status", json={"status": "resolved"})
        first = _close_at(op, 1.5, 3)  # the same street closed for everyone
        second = _close_at(op, 1, 3.5)
        after = op.get(rec, params={"kind": "police"}).json()["units"][0]
        assert after["unit"] == FAR_SAME_BANK
        assert after["distanceMetres"] == pytest.approx(1000)  # round by (0,4) and (0,3)
        assert list(world.lonlat(0, 3)) in after["route"]["coordinates"]
        listed = {c["id"] for c in op.get("/api/v1/closures").json()}
        assert {first["id"], second["id"]} <= listed
        timeline = op.get(f"/api/v1/incidents/{incident['id']}/timeline").json()
        assert [e for e in timeline if e["action"] == "closure"][-1]["refs"] == [cordon["id"]]
        # the last street in closed too: no route, and the answer says why
        third = _close_at(op, 0.5, 3)
        r = op.get(rec)
        assert r.status_code == 409
        assert "closures" in r.json()["detail"]
        r = op.post(f"/api/v1/incidents/{incident['id']}/dispatch", json={"units": [FAR_SAME_BANK]})
        assert r.status_code == 409 and "closures" in r.json()["detail"]
        assert op.get(f"/api/v1/incidents/{incident['id']}").json()["status"] == "reported"
        for closure in (cordon, first, second, third):
            r = op.post(f"/api/v1/closures/{closure['id']}/end", json={"reason": "fire out"})
            assert r.status_code == 200, r.text
        again = op.get(rec, params={"kind": "police"}).json()["units"][0]
        assert again["distanceMetres"] == pytest.approx(600)
        listed = {c["id"] for c in op.get("/api/v1/closures").json()}
        assert not listed & {cordon["id"], first["id"], second["id"], third["id"]}
        r = op.post(f"/api/v1/closures/{cordon['id']}/end", json={})
        assert r.status_code == 400 and "ended already" in r.json()["detail"]
        timeline = op.get(f"/api/v1/incidents/{incident['id']}/timeline").json()
        assert timeline[-1]["action"] == "closure ended" and "fire out" in timeline[-1]["detail"]
        ended = op.get("/api/v1/closures", params={"all": "true"}).json()
        assert {c["status"] for c in ended if c["id"] == cordon["id"]} == {"ended"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"edges": [10_000], "endsAt": "2099-01-01T00:00:00Z"}, "edges"),
        ({"edges": [1], "endsAt": "2001-01-01T00:00:00Z"}, "endsAt"),
        ({"edges": [1]}, "endsAt"),
        (
            {
                "location": {"type": "Point", "coordinates": [5.5, 47.9]},
                "endsAt": "2099-01-01T00:00:00Z",
            },
            "location",
        ),
    ],
)
def test_a_bad_closure_names_its_field(town: Server, body, field):
    with town.client(OPERATOR) as op:
        r = op.post("/api/v1/closures", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["field"] == field


def _report311(
    town: Server, service: str, col: float, row: float, description: str, **extra: str
) -> str:
    """A citizen's Open311 request at a point of the grid; its entity id."""
    lon, lat = world.lonlat(col, row)
    r = httpx.post(
        f"{town.url}/open311/v2/requests.json",
        data={
            "api_key": DEVICE_KEY,
            "service_code": service,
            "long": str(lon),
            "lat": str(lat),
            "description": description,
            **extra,
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return "urn:ngsi-ld:ServiceRequest:" + r.json()[0]["service_request_id"]


def test_a_fire_reported_through_open311_opens_an_incident(town: Server):
    request_id = _report311(town, "fire-smoke", 2, 1, "Smoke from the bakery")
    with town.client(VIEWER) as viewer:
        fires = viewer.get("/api/v1/incidents", params={"type": "fire"}).json()
    opened = [i for i in fires if request_id in i["links"]["serviceRequests"]]
    assert len(opened) == 1
    assert opened[0]["source"] == "open311" and opened[0]["severity"] == "major"
    # the citizen follows the incident through the request
    with town.client(OPERATOR) as op:
        r = op.post(
            f"/api/v1/incidents/{opened[0]['id']}/status",
            json={"status": "resolved", "note": "the fire is out"},
        )
        assert r.status_code == 200, r.text
    local = request_id.rsplit(":", 1)[1]
    (answer,) = httpx.get(f"{town.url}/open311/v2/requests/{local}.json", timeout=30).json()
    assert answer["status"] == "closed"
    assert answer["status_notes"] == "Resolved by the control room. the fire is out"


def test_a_pothole_reported_through_open311_is_a_work_order_for_a_technical_unit(
    town: Server,
):
    request_id = _report311(
        town, "pothole", 3, 0, "Deep hole in the cycle lane", **{"attribute[size_cm]": "40"}
    )
    with town.client(VIEWER) as viewer:
        faults = viewer.get("/api/v1/incidents", params={"type": "infrastructureFault"}).json()
        (order,) = [i for i in faults if request_id in i["links"]["serviceRequests"]]
        assert order["severity"] == "minor" and order["status"] == "reported"
        ranked = viewer.get(f"/api/v1/incidents/{order['id']}/recommendation").json()["units"]
    assert ranked and all(u["unitType"] == "TechnicalVehicle" for u in ranked)
    with town.client(OPERATOR) as op:  # done with: out of the other tests' way
        op.post(f"/api/v1/incidents/{order['id']}/status", json={"status": "resolved"})


def test_dispatch_plans_priority_at_the_signals_in_route_order(town: Server):
    incident = _open(town, 0, 4)  # PM-bank at (3,4) drives west along row 4
    with town.client(OPERATOR) as op:
        r = op.post(f"/api/v1/incidents/{incident['id']}/dispatch", json={"units": [FAR_SAME_BANK]})
        assert r.status_code == 200, r.text
        body = r.json()["incident"]
    plan = body["assignments"][FAR_SAME_BANK]["priority"]
    assert [s["signal"].rsplit(":", 1)[1] for s in plan["stops"]] == ["TS-east", "TS-west"]
    assert plan["stops"][0]["etaSeconds"] < plan["stops"][1]["etaSeconds"]
    assert {s["approach"] for s in plan["stops"]} == {"east"}  # driving west
    assert plan["signals"] == 2 and plan["savedSeconds"] > 0
    assert plan["withoutPrioritySeconds"] == pytest.approx(
        plan["withPrioritySeconds"] + plan["savedSeconds"], abs=0.2
    )
    assert body["prioritySavedSeconds"] == pytest.approx(plan["savedSeconds"])
    assert "2 signals on the route" in body["timeline"][-1]["detail"]
    # each signal gets a requestPriority command, in route order, on the timeline
    with town.client(OPERATOR) as op:
        requested: list[dict] = []
        for _ in range(100):  # the requests go out just after the dispatch is answered
            timeline = op.get(f"/api/v1/incidents/{incident['id']}/timeline").json()
            requested = [e for e in timeline if e["action"] == "priority requested"]
            if len(requested) == 2:
                break
            time.sleep(0.1)
        assert [e["detail"].split(" ")[0].rsplit(":", 1)[1] for e in requested] == [
            "TS-east",
            "TS-west",
        ]
        for entry, signal in zip(requested, ("TS-east", "TS-west"), strict=True):
            command = op.get(f"/api/v1/commands/{entry['refs'][0]}").json()
            assert command["command"] == "requestPriority"
            assert command["entityId"].endswith(signal)
            assert command["args"]["vehicle"] == FAR_SAME_BANK
            assert command["args"]["class"] == "emergency"
        links = op.get(f"/api/v1/incidents/{incident['id']}").json()["links"]["commands"]
        assert [e["refs"][0] for e in requested] == links


def test_the_demo_director_reports_a_fire_to_311_and_responders_close_the_street(
    town: Server,
):
    lon, lat = world.lonlat(1, 0)
    report = CitizenReport(0.0, "fire-smoke", lon, lat, "Smoke over the market", 50.0, 600.0)
    said: list[str] = []

    async def play() -> None:
        director = ScenarioDirector(town.url, DEVICE_KEY, OPERATOR, say=said.append)
        try:
            await director.play(report, time.time())
        finally:
            await director.aclose()

    asyncio.run(play())
    with town.client(VIEWER) as viewer:
        fires = viewer.get("/api/v1/incidents", params={"type": "fire"}).json()
        mine = [i for i in fires if i["description"] == "Smoke over the market"]
        assert len(mine) == 1 and mine[0]["source"] == "open311"
        incident = viewer.get(f"/api/v1/incidents/{mine[0]['id']}").json()
        closures = viewer.get("/api/v1/closures").json()
    assert [e["action"] for e in incident["timeline"]][-1] == "closure"
    (closure,) = [c for c in closures if c["incident"] == incident["id"]]
    assert closure["status"] == "active" and closure["edges"]
    ends = datetime.fromisoformat(closure["endsAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=9) < ends - datetime.now(UTC) <= timedelta(minutes=10)
    assert "311" in said[0] and "incident board" in said[1]
    with town.client(OPERATOR) as op:  # leave the town's roads open for the other tests
        assert op.post(f"/api/v1/closures/{closure['id']}/end", json={}).status_code == 200
