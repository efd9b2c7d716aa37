"""Scopes over the real server: who sees and changes which entities, on every read path.

Two municipalities, A and B; streetlights in both, a police unit, a camera and a
badge reader. Each person holds grants over part of the metropole; the tests check
what each of them gets from queries (pages and counts), single reads, writes,
batches, the map, history and the live stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from citypilot.bench.server import server_process
from citypilot.security.privacy import MASK, load_keys
from citypilot.security.scopes import Grant
from tests.conftest import Server, stream_protocols

NGSI = "/ngsi-ld/v1"
MUNI_A = "urn:ngsi-ld:Municipality:A"
MUNI_B = "urn:ngsi-ld:Municipality:B"
PASSWORD = "correct-horse-battery-staple"
#: person -> (role, grants)
PEOPLE: dict[str, tuple[str, tuple[Grant, ...]]] = {
    "admin": ("admin", (Grant("admin"), Grant("admin", department="police"))),
    "ops-a": ("operator", (Grant("operator", MUNI_A),)),
    "view-a": ("viewer", (Grant("viewer", MUNI_A),)),
    "metro": ("viewer", ()),  # the whole metropole, no police data
    "mixed": ("operator", (Grant("viewer"), Grant("operator", MUNI_A))),
    "police": ("operator", (Grant("operator", department="police"),)),
    "lighting-b": ("operator", (Grant("operator", MUNI_B, "lighting"),)),
    "buildings": ("operator", (Grant("operator", department="buildings"),)),
}
LIGHTS_A = [f"urn:ngsi-ld:Streetlight:a{k}" for k in range(3)]
LIGHTS_B = [f"urn:ngsi-ld:Streetlight:b{k}" for k in range(2)]
UNIT = "urn:ngsi-ld:PoliceUnit:p1"
CAMERA = "urn:ngsi-ld:Camera:c1"
READER = "urn:ngsi-ld:AccessPoint:r1"
RAW_BADGE = "badge-0042"


def _doc(entity_id: str, municipality: str, lon: float, **attrs: object) -> dict:
    return {
        "id": entity_id,
        "type": entity_id.split(":")[2],
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 47.3]}},
        "refMunicipality": {"type": "Relationship", "object": municipality},
        **attrs,
    }


async def _seed_people(data_dir: Path) -> None:
    from citypilot.security.passwords import hash_password
    from citypilot.store.base import Account
    from citypilot.store.sqlite import SQLiteStore

    store = SQLiteStore(data_dir / "city.db")
    await store.open()
    hashed = hash_password(PASSWORD)
    for name, (role, grants) in PEOPLE.items():
        await store.put_account(Account(name, hashed, role, grants=grants))
    await store.close()


def person(name: str) -> tuple[str, str]:
    """The login of one of the people above."""
    return (name, PASSWORD)


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("scoped")
    asyncio.run(_seed_people(data))
    with server_process(data) as url:
        town = Server(url, data)
        docs = [_doc(i, MUNI_A, 5.01) for i in LIGHTS_A]
        docs += [_doc(i, MUNI_B, 5.05) for i in LIGHTS_B]
        docs += [_doc(UNIT, MUNI_A, 5.02), _doc(CAMERA, MUNI_B, 5.06)]
        docs.append(
            _doc(
                READER,
                MUNI_A,
                5.03,
                lastAccess={"type": "Property", "value": {"badge": RAW_BADGE, "result": "granted"}},
            )
        )
        with town.client(person("admin")) as c:
            r = c.post(f"{NGSI}/entityOperations/upsert", json=docs)
            assert r.status_code == 201, r.text
        yield town


def _ids(client: httpx.Client, **params: object) -> tuple[list[str], int]:
    r = client.get(f"{NGSI}/entities", params={"count": "true", "limit": 100, **params})
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()], int(r.headers["NGSILD-Results-Count"])


@pytest.mark.parametrize(
    ("who", "type_name", "expected"),
    [
        ("view-a", "Streetlight", LIGHTS_A),
        ("metro", "Streetlight", LIGHTS_A + LIGHTS_B),
        ("lighting-b", "Streetlight", LIGHTS_B),
        ("police", "Streetlight", []),
        ("metro", "PoliceUnit", []),
        ("metro", "Camera", []),
        ("view-a", "PoliceUnit", []),
        ("police", "PoliceUnit", [UNIT]),
        ("police", "Camera", [CAMERA]),
        ("admin", "PoliceUnit", [UNIT]),
    ],
)
def test_queries_return_and_count_only_what_the_grants_cover(city, who, type_name, expected):
    with city.client(person(who)) as c:
        ids, total = _ids(c, type=type_name)
    assert sorted(ids) == sorted(expected)
    assert total == len(expected)


def test_pages_and_counts_are_those_of_the_scope(city):
    with city.client(person("view-a")) as c:
        page, total = _ids(c, type="Streetlight", limit=2)
        rest, _ = _ids(c, type="Streetlight", limit=2, offset=2)
        everything, count_all = _ids(c)
    assert total == 3 and len(page) == 2 and len(rest) == 1
    assert sorted(page + rest) == sorted(LIGHTS_A)
    # every type at once: A's lights and badge reader, not the police unit of A
    assert sorted(everything) == sorted([*LIGHTS_A, READER]) and count_all == 4


def test_a_search_by_pattern_stays_in_scope(city):
    with city.client(person("view-a")) as c:
        ids, total = _ids(c, idPattern="Streetlight:b")
    assert ids == [] and total == 0


def test_single_reads_outside_the_scope_are_missing(city):
    with city.client(person("view-a")) as c:
        assert c.get(f"{NGSI}/entities/{LIGHTS_A[0]}").status_code == 200
        assert c.get(f"{NGSI}/entities/{LIGHTS_B[0]}").status_code == 404
    with city.client(person("metro")) as c:
        assert c.get(f"{NGSI}/entities/{LIGHTS_B[0]}").status_code == 200
        # twice: the second answer would come from the rendering cache
        for _ in range(2):
            assert c.get(f"{NGSI}/entities/{UNIT}").status_code == 404
    with city.client(person("police")) as c:
        assert c.get(f"{NGSI}/entities/{UNIT}").status_code == 200


def _dim(level: float) -> dict:
    return {"illuminanceLevel": {"type": "Property", "value": level}}


def test_an_operator_of_a_changes_a_and_nothing_of_b(city):
    with city.client(person("ops-a")) as c:
        assert c.post(f"{NGSI}/entities/{LIGHTS_A[0]}/attrs", json=_dim(0.5)).status_code == 204
        r = c.patch(f"{NGSI}/entities/{LIGHTS_B[0]}/attrs", json=_dim(0.5))
        assert r.status_code == 404
        assert c.delete(f"{NGSI}/entities/{LIGHTS_B[0]}").status_code == 404
        r = c.post(f"{NGSI}/entities", json=_doc("urn:ngsi-ld:Streetlight:new-b", MUNI_B, 5.05))
        assert r.status_code == 403 and r.json()["type"].endswith("/Forbidden")
        # moving one of A's lights into B would give it away
        move = {"refMunicipality": {"type": "Relationship", "object": MUNI_B}}
        assert c.patch(f"{NGSI}/entities/{LIGHTS_A[1]}/attrs", json=move).status_code == 403
    with city.client(person("admin")) as c:
        got = c.get(f"{NGSI}/entities/{LIGHTS_A[1]}", params={"options": "keyValues"}).json()
        assert got["refMunicipality"] == MUNI_A
        assert c.get(f"{NGSI}/entities/urn:ngsi-ld:Streetlight:new-b").status_code == 404


def test_seeing_is_not_changing(city):
    with city.client(person("mixed")) as c:
        assert c.get(f"{NGSI}/entities/{LIGHTS_B[0]}").status_code == 200
        r = c.patch(f"{NGSI}/entities/{LIGHTS_B[0]}/attrs", json=_dim(0.2))
        assert r.status_code == 403
        assert c.post(f"{NGSI}/entities/{LIGHTS_A[2]}/attrs", json=_dim(0.2)).status_code == 204


def test_batches_refuse_each_item_outside_the_scope(city):
    docs = [
        {"id": LIGHTS_A[2], "type": "Streetlight", **_dim(0.3)},
        {"id": LIGHTS_B[1], "type": "Streetlight", **_dim(0.3)},
    ]
    with city.client(person("ops-a")) as c:
        r = c.post(f"{NGSI}/entityOperations/update", json=docs)
        assert r.status_code == 207
        body = r.json()
        assert body["success"] == [LIGHTS_A[2]]
        assert [e["entityId"] for e in body["errors"]] == [LIGHTS_B[1]]
        r = c.post(f"{NGSI}/entityOperations/delete", json=[LIGHTS_B[1]])
        assert r.status_code == 207 and r.json()["success"] == []
    with city.client(person("metro")) as c:
        state = c.get(f"{NGSI}/entities/{LIGHTS_B[1]}", params={"options": "keyValues"})
        assert state.status_code == 200 and "illuminanceLevel" not in state.json()


@pytest.mark.parametrize(
    ("who", "type_name", "count"),
    [
        ("view-a", "Streetlight", 3),
        ("metro", "Streetlight", 5),
        ("metro", "PoliceUnit", 0),
        ("metro", "Camera", 0),
        ("police", "PoliceUnit", 1),
        ("police", "Camera", 1),
    ],
)
def test_the_map_draws_only_what_the_grants_cover(city, who, type_name, count):
    with city.client(person(who)) as c:
        layer = c.get(f"/api/v1/map/entities/{type_name}").json()
    assert layer["count"] == count == len(layer["ids"])


def test_history_of_police_data_is_for_the_police(city):
    with city.client(person("police")) as c:
        c.post(f"{NGSI}/entities/{UNIT}/attrs", json={"speed": {"type": "Property", "value": 30}})
        assert c.get(f"/api/v1/history/{UNIT}").status_code == 200
    with city.client(person("metro")) as c:
        assert c.get(f"/api/v1/history/{UNIT}").status_code == 404
    with city.client(person("view-a")) as c:
        assert c.get(f"/api/v1/history/{LIGHTS_B[0]}").status_code == 404
        assert c.get(f"/api/v1/history/{LIGHTS_A[0]}").status_code == 200


def test_the_stream_carries_only_what_the_grants_cover(city):
    """Changes to B, to the police unit and then to A: a viewer of A hears only of A,
    the metropole viewer of A and B; the last change is the sentinel that all arrived."""

    async def listen(who: str, sentinel: str) -> set[str]:
        url = city.url.replace("http", "ws") + "/api/v1/stream"
        seen: set[str] = set()
        protocols = stream_protocols(city.token(person(who)))
        async with websockets.connect(url, subprotocols=protocols) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            ready.set()
            while sentinel not in seen:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                seen.update(ch["id"] for ch in frame.get("changes", ()))
        return seen

    async def scenario() -> tuple[set[str], set[str]]:
        nonlocal ready
        ready = asyncio.Event()
        view_a = asyncio.create_task(listen("view-a", LIGHTS_A[0]))
        await ready.wait()
        ready = asyncio.Event()
        metro = asyncio.create_task(listen("metro", LIGHTS_A[0]))
        await ready.wait()
        async with httpx.AsyncClient(
            base_url=city.url, headers={"Authorization": f"Bearer {city.token(person('admin'))}"}
        ) as admin:
            for entity_id, attrs in (
                (LIGHTS_B[0], _dim(0.7)),
                (UNIT, {"speed": {"type": "Property", "value": 50}}),
                (LIGHTS_A[0], _dim(0.7)),
            ):
                r = await admin.post(f"{NGSI}/entities/{entity_id}/attrs", json=attrs)
                assert r.status_code == 204
        return await view_a, await metro

    ready = asyncio.Event()
    view_a, metro = asyncio.run(scenario())
    assert view_a == {LIGHTS_A[0]}
    assert UNIT not in metro and LIGHTS_B[0] in metro


def test_badges_are_pseudonymised_and_masked_for_those_without_the_need(city):
    expected = load_keys(city.data_dir).pseudonym(RAW_BADGE)
    with city.client(person("buildings")) as c:
        shown = c.get(f"{NGSI}/entities/{READER}", params={"options": "keyValues"}).json()
    assert shown["lastAccess"] == {"badge": expected, "result": "granted"}
    with city.client(person("metro")) as c:
        for _ in range(2):  # the second read would come from the rendering cache
            masked = c.get(f"{NGSI}/entities/{READER}").json()
            assert masked["lastAccess"]["value"] == {"badge": MASK, "result": "granted"}
        history = c.get(f"/api/v1/history/{READER}", params={"attrs": "lastAccess"}).json()
    assert [v for _, v in history["attrs"]["lastAccess"]] == [{"badge": MASK, "result": "granted"}]
    raw = (city.data_dir / "city.db").read_bytes()
    assert RAW_BADGE.encode() not in raw


def test_a_person_ingests_only_into_their_scope(city):
    batch = [
        {"id": i, "type": "Streetlight", "observedAt": "2026-11-20T10:00:00Z",
         "attrs": {"powerConsumption": 12.5}}
        for i in (LIGHTS_A[1], LIGHTS_B[1])
    ]  # fmt: skip
    with city.client(person("ops-a")) as c:
        r = c.post("/api/v1/ingest", json=batch)
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["accepted"] == 1
    assert [(e["index"], e["error"]["type"].rsplit("/", 1)[1]) for e in body["errors"]] == [
        (1, "Forbidden")
    ]
    with city.client(person("metro")) as c:
        state = c.get(f"{NGSI}/entities/{LIGHTS_B[1]}", params={"options": "keyValues"}).json()
    assert "powerConsumption" not in state


def test_dead_letters_need_a_grant_over_the_metropole(city):
    with city.client(person("view-a")) as c:
        assert c.get("/api/v1/dead-letters").status_code == 403
    with city.client(person("metro")) as c:
        assert c.get("/api/v1/dead-letters").status_code == 200


def test_a_service_request_is_answered_by_an_operator_of_its_municipality(city):
    docs = [
        {
            "id": f"urn:ngsi-ld:ServiceRequest:sr-{m}",
            "type": "ServiceRequest",
            "refMunicipality": {"type": "Relationship", "object": muni},
            "status": {"type": "Property", "value": "open"},
        }
        for m, muni in (("a", MUNI_A), ("b", MUNI_B))
    ]
    with city.client(person("admin")) as c:
        assert c.post(f"{NGSI}/entityOperations/upsert", json=docs).status_code == 201
    with city.client(person("ops-a")) as c:
        r = c.post("/api/v1/service-requests/sr-b/answer", json={"status": "closed"})
        assert r.status_code == 404
        r = c.post("/api/v1/service-requests/sr-a/answer", json={"status": "closed"})
        assert r.status_code == 200, r.text
