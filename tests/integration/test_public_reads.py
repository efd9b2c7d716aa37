"""Anonymous reads (setting ``public_read_types``): a city opens the reads of chosen
entity types to callers without a credential; everything else stays closed — other
types, writes, restricted types (cameras, police) whatever the setting; on each store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.types import TypeRegistry
from citypilot.security.public import check_public_types
from citypilot.security.scopes import Grant
from tests.conftest import OPERATOR, VIEWER, Server
from tests.integration.two_stores import server_on_store

NGSI = "/ngsi-ld/v1"
PUBLIC = ["BikeStation", "ParkingSpot", "AirQualityObserved"]


def _entity(type_name: str, local: str) -> dict:
    return {
        "id": f"urn:ngsi-ld:{type_name}:{local}",
        "type": type_name,
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.0, 47.3]}},
    }


async def _grant_police(dsn: str) -> None:
    """Let the test operator change police entities (to create the camera)."""
    from citypilot.store.postgres import PostgresStore

    store = PostgresStore(dsn)
    await store.open()
    account = await store.get_account(OPERATOR[0])
    account.grants = (Grant("operator"), Grant("operator", department="police"))
    await store.put_account(account)
    await store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A city whose bike stations, parking spots and air quality are public, holding one
    entity of each and of two closed types (a streetlight, a restricted camera)."""
    env = {"CITYPILOT_PUBLIC_READ_TYPES": '["BikeStation", "ParkingSpot", "AirQualityObserved"]'}
    with server_on_store(request, tmp_path_factory, env) as server:
        if request.param == "postgres":  # the SQLite seed grants the operator police too
            asyncio.run(_grant_police(request.getfixturevalue("postgres_dsn")))
        docs = [_entity(t, "pub-1") for t in (*PUBLIC, "Streetlight", "Camera")]
        with server.client(OPERATOR) as c:
            r = c.post(f"{NGSI}/entityOperations/create", json=docs)
            assert r.status_code == 201, r.text
        yield server


def test_anyone_reads_the_public_types_without_a_credential(city: Server):
    with city.client(None) as c:
        listed = c.get(f"{NGSI}/entities", params={"type": "BikeStation,ParkingSpot"})
        one = c.get(f"{NGSI}/entities/urn:ngsi-ld:AirQualityObserved:pub-1")
    assert listed.status_code == 200, listed.text
    assert sorted(e["type"] for e in listed.json()) == ["BikeStation", "ParkingSpot"]
    assert one.status_code == 200 and one.json()["type"] == "AirQualityObserved"


def test_an_anonymous_query_sees_only_the_public_types(city: Server):
    with city.client(None) as c:
        everything = c.get(f"{NGSI}/entities", params={"idPattern": ".*pub-1", "count": "true"})
        closed = c.get(f"{NGSI}/entities", params={"type": "Streetlight,Camera"})
    assert sorted(e["type"] for e in everything.json()) == sorted(PUBLIC)
    assert everything.headers["NGSILD-Results-Count"] == "3"
    assert closed.status_code == 200 and closed.json() == []


def test_other_types_are_missing_for_an_anonymous_caller(city: Server):
    with city.client(None) as c:
        for type_name in ("Streetlight", "Camera"):
            r = c.get(f"{NGSI}/entities/urn:ngsi-ld:{type_name}:pub-1")
            assert r.status_code == 404, r.text
    with city.client(VIEWER) as c:  # a person still sees what their grants cover
        assert c.get(f"{NGSI}/entities/urn:ngsi-ld:Streetlight:pub-1").status_code == 200


def test_writes_and_other_reads_still_need_a_credential(city: Server):
    entity = f"{NGSI}/entities/urn:ngsi-ld:BikeStation:pub-1"
    with city.client(None) as c:
        assert c.post(f"{NGSI}/entities", json=_entity("BikeStation", "pub-2")).status_code == 401
        r = c.patch(f"{entity}/attrs", json={"name": {"type": "Property", "value": "x"}})
        assert r.status_code == 401
        assert c.delete(entity).status_code == 401
        assert c.get(f"{NGSI}/types").status_code == 401
        assert c.get(f"{NGSI}/subscriptions").status_code == 401
        assert c.get("/api/v1/alarms").status_code == 401


def test_a_bad_token_is_refused_not_taken_as_anonymous(city: Server):
    with city.client(None) as c:
        r = c.get(
            f"{NGSI}/entities",
            params={"type": "BikeStation"},
            headers={"Authorization": "Bearer not-a-token"},
        )
    assert r.status_code == 401


def test_the_temporal_reads_of_public_types_are_open_too(city: Server):
    with city.client(None) as c:
        public = c.get(f"{NGSI}/temporal/entities/urn:ngsi-ld:BikeStation:pub-1")
        closed = c.get(f"{NGSI}/temporal/entities/urn:ngsi-ld:Streetlight:pub-1")
    assert public.status_code == 200, public.text
    assert closed.status_code == 404


def test_a_restricted_type_can_never_be_made_public():
    registry = TypeRegistry(BUILTIN_TYPES)
    check_public_types(PUBLIC, registry)  # accepted
    for restricted in ("Camera", "PoliceUnit"):
        with pytest.raises(ValueError, match=restricted):
            check_public_types([*PUBLIC, restricted], registry)


def test_the_description_says_which_reads_are_open_and_for_which_types(city: Server):
    with city.client(None) as c:
        paths = c.get("/openapi.json").json()["paths"]
    entities = paths["/ngsi-ld/v1/entities"]
    for op in (entities["get"], paths["/ngsi-ld/v1/entities/{entity_id}"]["get"]):
        assert {} in op["security"] and {"bearerAuth": []} in op["security"]
        assert op["x-citypilot-public-types"] == PUBLIC
    assert {} not in entities["post"]["security"]
    assert {} not in paths["/ngsi-ld/v1/types"]["get"]["security"]
