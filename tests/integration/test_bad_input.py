"""Bad input over real HTTP never answers 500 and is never half-applied (issue 7, 2 and 7).

Each case here answered 500 before; now a 4xx problem naming the field, with
whatever was accepted stored and whatever was refused kept as a dead letter.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from citypilot.model.entity import Attribute
from citypilot.model.observation import Reading
from citypilot.store.sqlite import SQLiteStore
from tests.conftest import VIEWER, Server
from tests.integration.test_api_entities import NGSI, light, problem, uid
from tests.integration.test_api_ingest import new_light, obs

YEAR_ZERO = "0001-01-01T00:00:00+14:00"


def nested(levels: int) -> bytes:
    """A JSON value nested ``levels`` deep (orjson itself parses up to 1,024)."""
    return b'{"a":' * levels + b"1" + b"}" * levels


def dead_letters(server: Server, source: str) -> list[dict]:
    with server.client(VIEWER) as c:
        items = c.get("/api/v1/dead-letters", params={"limit": 1000}).json()["items"]
    return [d for d in items if d["source"] == source]


def test_batch_delete_of_non_ids_is_a_4xx_naming_the_item(server: Server):
    with server.client() as c:
        for body in ([{}], [[1]], [None, 3]):
            r = c.post(f"{NGSI}/entityOperations/delete", json=body)
            problem(r, 400, "BadRequestData", "[0]")
        # a good id beside a bad one: the good one is deleted, the answer says so
        local = uid("del")
        assert c.post(f"{NGSI}/entities", json=light(local)).status_code == 201
        eid = f"urn:ngsi-ld:Streetlight:{local}"
        r = c.post(f"{NGSI}/entityOperations/delete", json=[eid, {"id": eid}])
        assert r.status_code == 207, r.text
        assert r.json()["success"] == [eid]
        assert [e["index"] for e in r.json()["errors"]] == [1]
        assert r.json()["errors"][0]["error"]["field"] == "[1]"
        assert c.get(f"{NGSI}/entities/{eid}").status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (f"{NGSI}/entities", {"type": "Streetlight", "offset": "9223372036854775808"}, "offset"),
        (f"{NGSI}/entities", {"type": "Streetlight", "offset": "1000000001"}, "offset"),
        ("/api/v1/dead-letters", {"offset": "1e21"}, "offset"),
        ("/api/v1/dead-letters", {"offset": "9223372036854775808"}, "offset"),
    ],
)
def test_huge_offsets_are_400(server: Server, path: str, params: dict, field: str):
    with server.client() as c:
        problem(c.get(path, params=params), 400, "InvalidRequest", field)


def test_huge_bucket_is_400(server: Server):
    eid = new_light(server)
    with server.device() as device:
        device.post("/api/v1/ingest", json=[obs(eid, "2026-11-20T10:00:00Z", powerConsumption=1)])
    with server.client() as c:
        for bucket in ("100000000000000000000d", "36501d"):
            r = c.get(f"/api/v1/history/{eid}", params={"bucket": bucket})
            problem(r, 400, "BadRequestData", "bucket")
        assert c.get(f"/api/v1/history/{eid}", params={"bucket": "36500d"}).status_code == 200


@pytest.mark.parametrize("levels", [100, 300, 1000])
def test_deeply_nested_attributes_are_400_naming_the_path(server: Server, levels: int):
    local = uid("deep")
    body = orjson.dumps(light(local))[:-1] + b',"junk":{"type":"Property","value":'
    body += nested(levels) + b"}}"
    with server.client() as c:
        r = c.post(f"{NGSI}/entities", content=body, headers={"Content-Type": "application/json"})
        problem(r, 400, "BadRequestData", "junk.value.a.a")
        assert "nests deeper than the limit of 64 levels" in r.json()["detail"]
        assert c.get(f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{local}").status_code == 404


def test_ingest_good_and_deep_junk_is_207_and_the_junk_is_dead_lettered(server: Server):
    eid = new_light(server)
    good = orjson.dumps(obs(eid, "2026-11-20T10:00:00Z", powerConsumption=12.5))
    junk = b'{"id":"%s","type":"Streetlight","observedAt":"2026-11-20T10:00:01Z",' % eid.encode()
    junk += b'"attrs":{"junk":' + nested(300) + b"}}"
    with httpx.Client(base_url=server.url, timeout=30) as raw:
        from tests.conftest import DEVICE_KEY

        r = raw.post(
            "/api/v1/ingest",
            content=b"[" + good + b"," + junk + b"]",
            headers={"Content-Type": "application/json", "X-Device-Key": DEVICE_KEY},
        )
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == 1
    assert body["errors"][0]["index"] == 1
    assert body["errors"][0]["error"]["field"] == "[1].attrs.junk.a.a"
    with server.client() as c:
        state = c.get(f"{NGSI}/entities/{eid}", params={"options": "keyValues"}).json()
        assert state["powerConsumption"] == 12.5
    letters = [d for d in dead_letters(server, "http:test-gateway") if eid in d["payload"]]
    assert [d["field"] for d in letters] == ["[1].attrs.junk.a.a"]
    assert "nested too deep" in letters[0]["payload"]  # kept, clipped to a storable depth


def test_ndjson_deep_line_is_refused_alone(server: Server):
    eid = new_light(server)
    good = orjson.dumps(obs(eid, "2026-11-20T11:00:00Z", powerConsumption=3))
    junk = b'{"id":"%s","type":"Streetlight","observedAt":"2026-11-20T11:00:01Z",' % eid.encode()
    junk += b'"attrs":{"junk":' + nested(500) + b"}}"
    with server.device() as device:
        r = device.post(
            "/api/v1/ingest",
            content=junk + b"\n" + good + b"\n",
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert r.status_code == 207, r.text
    assert r.json()["errors"][0]["error"]["field"] == "[0].attrs.junk.a.a"
    assert r.json()["accepted"] == 1


@pytest.mark.parametrize(
    "instant",
    [YEAR_ZERO, "1899-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00"],
)
def test_instants_out_of_range_are_refused_at_every_edge(server: Server, instant: str):
    eid = new_light(server)
    with server.device() as device:
        r = device.post("/api/v1/ingest", json=[obs(eid, instant, powerConsumption=1)])
        problem(r, 400, "BadRequestData")
        assert r.json()["errors"][0]["error"]["field"] == "[0].observedAt"
    attr = {"powerConsumption": {"type": "Property", "value": 2, "observedAt": instant}}
    with server.client() as c:
        r = c.post(f"{NGSI}/entities/{eid}/attrs", json=attr)
        problem(r, 400, "BadRequestData", "powerConsumption.observedAt")
        for param in ("from", "to"):
            r = c.get(f"/api/v1/history/{eid}", params={param: instant})
            problem(r, 400, "BadRequestData", param)
        assert c.get(f"{NGSI}/entities/{eid}").status_code == 200


def test_reads_survive_an_instant_stored_before_the_edge_refused_it(server: Server):
    """An entity holding year-0 readings (stored by an earlier version) still reads."""
    eid = new_light(server)

    async def store_year_zero() -> None:
        store = SQLiteStore(server.data_dir / "city.db")
        await store.open()
        try:
            bad = -62135596800.0 - 14 * 3600  # 0001-01-01T00:00:00+14:00
            reading = Reading(eid, "powerConsumption", "Property", "5", 5.0, bad, None, 5)
            await store.apply_readings([reading], 0.0)
            await store.write_attributes(
                eid,
                {"illuminanceLevel": Attribute("Property", 0.5, observed_at=bad)},
                0.0,
                "append",
            )
        finally:
            await store.close()

    asyncio.run(store_year_zero())
    with server.client() as c:
        r = c.get(f"{NGSI}/entities/{eid}")
        assert r.status_code == 200, r.text
        assert r.json()["powerConsumption"]["observedAt"] == "0001-01-01T00:00:00.000Z"
        r = c.get(f"/api/v1/history/{eid}", params={"attrs": "powerConsumption"})
        assert r.status_code == 200 and r.json()["attrs"]["powerConsumption"][0][1] == 5
        r = c.get(f"{NGSI}/entities", params={"type": "Streetlight", "limit": 1000})
        assert r.status_code == 200
        r = c.get(f"{NGSI}/entities", params={"id": eid, "options": "sysAttrs"})
        assert r.status_code == 200 and r.json()[0]["id"] == eid
