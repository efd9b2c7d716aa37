"""Conformance of subscriptions and notifications (ETSI GS CIM 009 v1.8, clauses 5.2.12
Subscription, 5.3.1 Notification, 6.10-6.11 subscription operations), over real HTTP
against a server on each store. Notifications are received by a real local HTTP
endpoint and through the real Mosquitto broker.

Where a test shows that something is *not* notified, it makes a later change that is,
and checks what arrived first: notifications of one subscription leave in order.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiomqtt
import httpx
import orjson
import pytest

from citypilot.bench.receiver import Receiver
from citypilot.bench.server import free_port, server_child
from tests.conftest import ADMIN, OPERATOR, VIEWER, Server, require_service, seed_accounts
from tests.integration.two_stores import server_on_store

S = "/ngsi-ld/v1/subscriptions"
BAD_REQUEST = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on each store; failed notifications are tried again within 0.2 s."""
    env = {"CITYPILOT_NOTIFY_RETRY_MIN_S": "0.05", "CITYPILOT_NOTIFY_RETRY_MAX_S": "0.2"}
    with server_on_store(request, tmp_path_factory, env) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP endpoint on a free local port."""
    with Receiver() as r:
        yield r


def lamp(city: Server) -> str:
    """A new streetlight (off, 10 W)."""
    entity_id = f"urn:ngsi-ld:Streetlight:sub-{uuid.uuid4().hex[:10]}"
    doc = {
        "id": entity_id,
        "type": "Streetlight",
        "powerState": {"type": "Property", "value": "off"},
        "powerConsumption": {"type": "Property", "value": 10.0},
    }
    with city.client(OPERATOR) as c:
        assert c.post("/ngsi-ld/v1/entities", json=doc).status_code == 201
    return entity_id


def change(city: Server, entity_id: str, **attrs: Any) -> None:
    """A device reports new values."""
    with city.device() as d:
        obs = {"id": entity_id, "type": "Streetlight", "observedAt": _now(), "attrs": attrs}
        r = d.post("/api/v1/ingest", json=[obs])
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def subscribe(city: Server, uri: str, entity_id: str, **members: Any) -> str:
    """Subscribe to one entity's changes; returns the subscription id."""
    doc = {
        "type": "Subscription",
        "entities": [{"type": "Streetlight", "id": entity_id}],
        "notification": {"endpoint": {"uri": uri}},
        **members,
    }
    with city.client(OPERATOR) as c:
        r = c.post(S, json=doc)
    assert r.status_code == 201, r.text
    return r.headers["Location"].rsplit("/", 1)[1]


def read(city: Server, sub_id: str) -> httpx.Response:
    """A viewer reads the subscription."""
    with city.client(VIEWER) as c:
        return c.get(f"{S}/{sub_id}")


def test_create_read_list_update_delete(city: Server):
    sub_id = f"urn:ngsi-ld:Subscription:crud-{uuid.uuid4().hex[:8]}"
    doc = {
        "id": sub_id,
        "type": "Subscription",
        "subscriptionName": "lamps",
        "entities": [{"type": "Streetlight", "idPattern": "^urn:ngsi-ld:Streetlight:sub-"}],
        "watchedAttributes": ["powerState"],
        "q": "powerConsumption>5",
        "notification": {
            "attributes": ["powerState"],
            "format": "keyValues",
            "endpoint": {"uri": "http://127.0.0.1:9/notify", "accept": "application/json"},
        },
    }
    with city.client(OPERATOR) as c:
        r = c.post(S, json=doc)
        assert r.status_code == 201, r.text
        assert r.headers["Location"] == f"{S}/{sub_id}"
        assert c.post(S, json=doc).status_code == 409
        got = read(city, sub_id).json()
        assert got["notification"].pop("timesSent") == 0
        assert {k: got[k] for k in doc} == doc
        assert (got["status"], got["isActive"]) == ("active", True)
        assert "_owner" not in got
        listed = c.get(S, params={"limit": 1000, "count": "true"})
        assert sub_id in [s["id"] for s in listed.json()]
        assert int(listed.headers["NGSILD-Results-Count"]) >= 1

        assert c.patch(f"{S}/{sub_id}", json={"isActive": False}).status_code == 204
        assert read(city, sub_id).json()["status"] == "paused"
        r = c.patch(f"{S}/{sub_id}", json={"notification": {"format": "normalized"}})
        assert r.status_code == 204
        after = read(city, sub_id).json()["notification"]
        assert after["format"] == "normalized" and after["attributes"] == ["powerState"]
        assert (
            c.patch(f"{S}/{sub_id}", json={"expiresAt": "2020-01-01T00:00:00Z"}).status_code == 204
        )
        assert read(city, sub_id).json()["status"] == "expired"

        assert c.delete(f"{S}/{sub_id}").status_code == 204
        assert read(city, sub_id).status_code == 404
        assert c.delete(f"{S}/{sub_id}").status_code == 404
        r = c.patch(f"{S}/{sub_id}", json={"isActive": True})
        assert r.status_code == 404
        assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"


_ENDPOINT = {"endpoint": {"uri": "http://127.0.0.1:9/n"}}
_GOOD = {"type": "Subscription", "entities": [{"type": "Streetlight"}], "notification": _ENDPOINT}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "Notification"}, "type"),
        ({"entities": None, "watchedAttributes": None}, "entities"),
        ({"entities": [{"id": "urn:ngsi-ld:Streetlight:1"}]}, "entities[0].type"),
        ({"entities": [{"type": "Streetlight", "idPattern": "(a"}]}, "entities[0].idPattern"),
        ({"watchedAttributes": []}, "watchedAttributes"),
        ({"notification": {**_ENDPOINT, "join": "deep"}}, "notification.join"),
        (
            {"notification": {**_ENDPOINT, "join": "inline", "joinLevel": 0}},
            "notification.joinLevel",
        ),
        ({"notification": {**_ENDPOINT, "joinLevel": "2"}}, "notification.joinLevel"),
        ({"notification": {**_ENDPOINT, "pick": []}}, "notification.pick"),
        ({"notification": {**_ENDPOINT, "pick": ["id"], "omit": ["type"]}}, "notification.omit"),
        ({"q": "powerConsumption>"}, "q"),
        ({"scopeQ": "/Dijon/#/Centre"}, "scopeQ"),
        ({"scopeQ": ["/Dijon"]}, "scopeQ"),
        ({"geoQ": {"georel": "near", "geometry": "Point", "coordinates": [5, 47]}}, "geoQ.georel"),
        ({"timeInterval": 10, "watchedAttributes": ["powerState"]}, "watchedAttributes"),
        ({"timeInterval": 10, "throttling": 5}, "throttling"),
        ({"throttling": -1}, "throttling"),
        ({"expiresAt": "tomorrow"}, "expiresAt"),
        ({"isActive": "yes"}, "isActive"),
        ({"colour": "red"}, "subscription.colour"),
        ({"notification": None}, "notification"),
        (
            {"notification": {"endpoint": {"uri": "ftp://example.org/x"}}},
            "notification.endpoint.uri",
        ),
        (
            {"notification": {"endpoint": {"uri": "mqtt://127.0.0.1:1883"}}},
            "notification.endpoint.uri",
        ),
        ({"notification": {**_ENDPOINT, "format": "xml"}}, "notification.format"),
        ({"notification": {**_ENDPOINT, "attributes": "powerState"}}, "notification.attributes"),
        ({"notification": {**_ENDPOINT, "timesSent": 3}}, "notification.timesSent"),
        ({"id": "not a uri"}, "id"),
        ({"notificationTrigger": ["entityMoved"]}, "notificationTrigger"),
        ({"notificationTrigger": []}, "notificationTrigger"),
        (
            {"notification": {"endpoint": {"uri": "http://h/n", "receiverInfo": {"a": "b"}}}},
            "notification.endpoint.receiverInfo",
        ),
        (
            {"notification": {"endpoint": {"uri": "http://h/n", "receiverInfo": [{"key": "X"}]}}},
            "notification.endpoint.receiverInfo[0]",
        ),
        (
            {
                "notification": {
                    "endpoint": {
                        "uri": "http://h/n",
                        "receiverInfo": [{"key": "Content-Type", "value": "text/plain"}],
                    }
                }
            },
            "notification.endpoint.receiverInfo[0].key",
        ),
        (
            {
                "notification": {
                    "endpoint": {
                        "uri": "http://h/n",
                        "receiverInfo": [{"key": "X-Token", "value": "a\r\nInjected: 1"}],
                    }
                }
            },
            "notification.endpoint.receiverInfo[0].value",
        ),
    ],
)
def test_a_bad_subscription_is_400_naming_the_member(city: Server, change: dict, field: str):
    doc = {k: v for k, v in {**_GOOD, **change}.items() if v is not None}
    with city.client(OPERATOR) as c:
        r = c.post(S, json=doc)
    assert r.status_code == 400, r.text
    assert (r.json()["type"], r.json()["field"]) == (BAD_REQUEST, field)


def test_subscriptions_need_an_operator_to_change_them(city: Server):
    with city.client(VIEWER) as c:
        assert c.post(S, json=_GOOD).status_code == 403
    with city.client(None) as anonymous:
        assert anonymous.get(S).status_code == 401


def test_a_change_is_notified_to_the_http_endpoint(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    sub_id = subscribe(
        city,
        receiver.url + "/notify",
        entity_id,
        watchedAttributes=["powerState"],
        notification={
            "attributes": ["powerState"],
            "format": "keyValues",
            "endpoint": {"uri": receiver.url + "/notify"},
        },
    )
    change(city, entity_id, powerState="on", powerConsumption=40.0)
    [got] = receiver.wait_for(1)
    assert got.path == "/notify"
    assert got.headers["content-type"] == "application/json"
    assert "json-ld#context" in got.headers["link"]
    body = got.json()
    assert body["type"] == "Notification" and body["subscriptionId"] == sub_id
    assert body["id"].startswith("urn:ngsi-ld:Notification:")
    assert body["data"] == [{"id": entity_id, "type": "Streetlight", "powerState": "on"}]


def test_a_deletion_is_notified_when_it_is_a_trigger(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    sub_id = subscribe(city, receiver.url, entity_id, notificationTrigger=["entityDeleted"])
    change(city, entity_id, powerState="on")  # an update: not a trigger here
    with city.client(OPERATOR) as c:
        assert c.delete(f"/ngsi-ld/v1/entities/{entity_id}").status_code == 204
    [first] = receiver.wait_for(1)
    body = first.json()
    assert body["subscriptionId"] == sub_id
    [gone] = body["data"]
    assert (gone["id"], gone["type"]) == (entity_id, "Streetlight")
    assert gone["deletedAt"].endswith("Z") and set(gone) == {"id", "type", "deletedAt"}


def test_the_deletion_of_an_entity_whose_id_names_no_type_is_notified(
    city: Server, receiver: Receiver
):
    entity_id = f"https://example.org/vehicles/{uuid.uuid4().hex[:10]}"
    with city.client(OPERATOR) as c:
        r = c.post("/ngsi-ld/v1/entities", json={"id": entity_id, "type": "Vehicle", "speed": 3})
        assert r.status_code == 201, r.text
        doc = {
            "type": "Subscription",
            "entities": [{"type": "Vehicle", "id": entity_id}],
            "notificationTrigger": ["entityDeleted"],
            "notification": {"endpoint": {"uri": receiver.url}},
        }
        assert c.post(S, json=doc).status_code == 201
        path = f"/ngsi-ld/v1/entities/{quote(entity_id, safe='')}"
        assert c.delete(path).status_code == 204
    [first] = receiver.wait_for(1)
    [gone] = first.json()["data"]
    assert (gone["id"], gone["type"]) == (entity_id, "Vehicle")


def test_an_attribute_deletion_is_notified_when_it_is_a_trigger(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    subscribe(
        city,
        receiver.url,
        entity_id,
        notificationTrigger=["attributeDeleted"],
        watchedAttributes=["powerConsumption"],
    )
    change(city, entity_id, powerConsumption=20.0)  # an update: not a trigger here
    with city.client(OPERATOR) as c:
        r = c.delete(f"/ngsi-ld/v1/entities/{entity_id}/attrs/powerConsumption")
        assert r.status_code == 204
    [first] = receiver.wait_for(1)
    [entity] = first.json()["data"]
    assert entity["id"] == entity_id and "powerConsumption" not in entity


def test_receiver_info_is_sent_as_headers(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    info = [
        {"key": "Authorization", "value": "Bearer for-the-receiver"},
        {"key": "X-City", "value": "Dijon"},
    ]
    endpoint = {"uri": receiver.url, "receiverInfo": info}
    subscribe(city, receiver.url, entity_id, notification={"endpoint": endpoint})
    change(city, entity_id, powerState="on")
    [got] = receiver.wait_for(1)
    assert got.headers["authorization"] == "Bearer for-the-receiver"
    assert got.headers["x-city"] == "Dijon"
    assert got.headers["content-type"] == "application/json"


def test_the_status_counts_what_was_sent(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    sub_id = subscribe(city, receiver.url, entity_id)
    change(city, entity_id, powerState="on")
    receiver.wait_for(1)
    status: dict[str, Any] = {}
    for _ in range(200):  # the status is saved just after the endpoint answered
        status = read(city, sub_id).json()["notification"]
        if status["timesSent"] >= 1:
            break
    assert status["timesSent"] == 1 and status["status"] == "ok"
    assert status["lastSuccess"] == status["lastNotification"]
    assert "lastFailure" not in status


def test_normalized_notifications_carry_the_attributes_as_stored(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    subscribe(city, receiver.url, entity_id, notification={"endpoint": {"uri": receiver.url}})
    change(city, entity_id, powerConsumption=41.5)
    [entity] = receiver.wait_for(1)[0].json()["data"]
    assert entity["powerConsumption"]["type"] == "Property"
    assert entity["powerConsumption"]["value"] == 41.5
    assert entity["powerConsumption"]["unitCode"] == "WTT"
    assert entity["powerState"] == {"type": "Property", "value": "off"}


def _lamp_in_town(city: Server) -> tuple[str, str]:
    """A new streetlight (off, 10 W) in a new municipality; their ids."""
    town = f"urn:ngsi-ld:Municipality:sub-{uuid.uuid4().hex[:10]}"
    with city.client(OPERATOR) as c:
        r = c.post(
            "/ngsi-ld/v1/entities", json={"id": town, "type": "Municipality", "name": "Fontaine"}
        )
        assert r.status_code == 201, r.text
    entity_id = lamp(city)
    with city.client(OPERATOR) as c:
        link = {"refMunicipality": {"type": "Relationship", "object": town}}
        r = c.post(f"/ngsi-ld/v1/entities/{entity_id}/attrs", json=link)
        assert r.status_code == 204, r.text
    return entity_id, town


def test_join_inline_puts_the_linked_entity_in_the_notification(city: Server, receiver: Receiver):
    entity_id, town = _lamp_in_town(city)
    note = {"endpoint": {"uri": receiver.url}, "format": "keyValues", "join": "inline"}
    subscribe(city, receiver.url, entity_id, watchedAttributes=["powerState"], notification=note)
    change(city, entity_id, powerState="on")
    [entity] = receiver.wait_for(1)[0].json()["data"]
    assert entity["powerState"] == "on"
    assert entity["refMunicipality"]["id"] == town
    assert entity["refMunicipality"]["name"] == "Fontaine"


def test_join_flat_and_pick_shape_the_notification(city: Server, receiver: Receiver):
    entity_id, town = _lamp_in_town(city)
    note = {
        "endpoint": {"uri": receiver.url},
        "join": "flat",
        "pick": ["id", "powerState", "name"],
    }
    subscribe(city, receiver.url, entity_id, watchedAttributes=["powerState"], notification=note)
    change(city, entity_id, powerState="on", powerConsumption=40.0)
    lamp_doc, town_doc = receiver.wait_for(1)[0].json()["data"]
    assert set(lamp_doc) == {"id", "powerState"} and lamp_doc["id"] == entity_id
    assert lamp_doc["powerState"]["value"] == "on"
    assert town_doc == {"id": town, "name": {"type": "Property", "value": "Fontaine"}}


def test_omit_drops_members_from_the_notification(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    note = {"endpoint": {"uri": receiver.url}, "format": "keyValues", "omit": ["powerConsumption"]}
    subscribe(city, receiver.url, entity_id, notification=note)
    change(city, entity_id, powerState="on", powerConsumption=40.0)
    [entity] = receiver.wait_for(1)[0].json()["data"]
    assert entity["powerState"] == "on" and "powerConsumption" not in entity
    assert entity["id"] == entity_id


def test_a_notification_holds_only_the_entities_its_owner_may_see(city: Server, receiver: Receiver):
    tag = uuid.uuid4().hex[:8]
    town = f"urn:ngsi-ld:Municipality:sub-{tag}"
    townsman = (f"townsman-{tag}", "townsman-password-0123")
    with city.client(ADMIN) as c:
        r = c.post(
            "/api/v1/users",
            json={
                "username": townsman[0],
                "password": townsman[1],
                "role": "operator",
                "grants": [{"role": "operator", "municipality": town}],
            },
        )
        assert r.status_code == 201, r.text
    lamps = {}
    for where in ("in", "out"):
        lamps[where] = f"urn:ngsi-ld:Streetlight:sub-{tag}-{where}"
        doc: dict[str, Any] = {"id": lamps[where], "type": "Streetlight", "powerState": "off"}
        if where == "in":
            doc["refMunicipality"] = {"type": "Relationship", "object": town}
        with city.client(OPERATOR) as c:
            r = c.post(
                "/ngsi-ld/v1/entities", json=doc, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 201, r.text
    sub = {
        "type": "Subscription",
        "entities": [{"type": "Streetlight", "idPattern": f"sub-{tag}-"}],
        "watchedAttributes": ["powerState"],
        "notification": {
            "attributes": ["powerState"],
            "format": "keyValues",
            "endpoint": {"uri": receiver.url + "/notify"},
        },
    }
    with city.client(townsman) as c:
        assert c.post(S, json=sub).status_code == 201
    with city.device() as d:
        obs = [
            {
                "id": lamps[w],
                "type": "Streetlight",
                "observedAt": _now(),
                "attrs": {"powerState": "on"},
            }
            for w in ("in", "out")
        ]
        assert d.post("/api/v1/ingest", json=obs).json()["accepted"] == 2
    [got] = receiver.wait_for(1)
    assert got.json()["data"] == [{"id": lamps["in"], "type": "Streetlight", "powerState": "on"}]


def test_only_watched_attributes_trigger(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    subscribe(city, receiver.url, entity_id, watchedAttributes=["powerState"])
    change(city, entity_id, powerConsumption=50.0)  # not watched
    change(city, entity_id, powerState="low")
    [first] = receiver.wait_for(1)
    assert first.json()["data"][0]["powerState"]["value"] == "low"


def test_q_filters_what_is_notified(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    subscribe(city, receiver.url, entity_id, q="powerConsumption>100")
    change(city, entity_id, powerConsumption=50.0)
    change(city, entity_id, powerConsumption=150.0)
    [first] = receiver.wait_for(1)
    assert first.json()["data"][0]["powerConsumption"]["value"] == 150.0


def test_scope_q_filters_what_is_notified(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    subscribe(city, receiver.url, entity_id, scopeQ="/Dijon/#")
    change(city, entity_id, powerConsumption=50.0)  # the lamp has no scope yet
    with city.client(OPERATOR) as c:
        path = f"/ngsi-ld/v1/entities/{quote(entity_id, safe='')}"
        assert c.patch(path, json={"scope": "/Dijon/Centre"}).status_code == 204
    [first] = receiver.wait_for(1)
    assert first.json()["data"][0]["scope"] == "/Dijon/Centre"


def test_geoq_filters_what_is_notified(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    near = {"georel": "near;maxDistance==500", "geometry": "Point", "coordinates": [5.04, 47.32]}
    subscribe(city, receiver.url, entity_id, geoQ=near, watchedAttributes=["location"])
    change(city, entity_id, location={"type": "Point", "coordinates": [5.2, 47.32]})  # ~12 km
    change(city, entity_id, location={"type": "Point", "coordinates": [5.041, 47.32]})  # ~76 m
    [first] = receiver.wait_for(1)
    assert first.json()["data"][0]["location"]["value"]["coordinates"] == [5.041, 47.32]


def test_throttling_leaves_out_notifications_in_its_window(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    throttled = subscribe(city, receiver.url + "/throttled", entity_id, throttling=3600)
    marker = subscribe(city, receiver.url + "/marker", entity_id)
    change(city, entity_id, powerState="on")
    change(city, entity_id, powerState="low")
    got = receiver.wait_for(3)  # the throttled one once, the marker twice
    for _ in range(200):  # both subscriptions' deliveries are settled together
        if read(city, marker).json()["notification"]["timesSent"] == 2:
            break
    assert read(city, throttled).json()["notification"]["timesSent"] == 1
    assert sorted(g.path for g in got) == ["/marker", "/marker", "/throttled"]


def test_a_paused_subscription_notifies_nothing(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    paused = subscribe(city, receiver.url + "/paused", entity_id, isActive=False)
    marker = subscribe(city, receiver.url + "/marker", entity_id)
    change(city, entity_id, powerState="on")
    receiver.wait_for(1)
    for _ in range(200):  # both subscriptions' deliveries are settled together
        if read(city, marker).json()["notification"]["timesSent"] == 1:
            break
    assert read(city, paused).json()["notification"]["timesSent"] == 0
    assert [g.path for g in receiver.received] == ["/marker"]


def test_a_failed_notification_is_sent_again(city: Server):
    with Receiver(fail_first=2) as flaky:
        entity_id = lamp(city)
        sub_id = subscribe(city, flaky.url, entity_id)
        change(city, entity_id, powerState="on")
        [got] = flaky.wait_for(1)  # after two 500 answers
        assert got.json()["subscriptionId"] == sub_id
        status: dict[str, Any] = {}
        for _ in range(200):
            status = read(city, sub_id).json()["notification"]
            if status.get("status") == "ok":
                break
        assert status["timesSent"] == 3 and "lastFailure" in status and "lastSuccess" in status


def test_time_interval_notifies_the_current_entities_periodically(city: Server, receiver: Receiver):
    entity_id = lamp(city)
    sub_id = subscribe(city, receiver.url, entity_id, timeInterval=0.5)
    first, second = receiver.wait_for(2)
    assert first.json()["subscriptionId"] == second.json()["subscriptionId"] == sub_id
    assert [e["id"] for e in second.json()["data"]] == [entity_id]
    with city.client(OPERATOR) as c:
        assert c.delete(f"{S}/{sub_id}").status_code == 204


def test_a_change_is_notified_through_mqtt(city: Server):
    require_service("Mosquitto", "127.0.0.1", 1883)
    topic = f"citypilot-test/notify/{uuid.uuid4().hex}"
    entity_id = lamp(city)

    async def notified() -> tuple[str, bytes]:
        async with aiomqtt.Client("127.0.0.1", 1883) as client:
            await client.subscribe(topic, qos=1)
            sub_id = await asyncio.to_thread(
                subscribe, city, f"mqtt://127.0.0.1:1883/{topic}", entity_id
            )
            await asyncio.to_thread(change, city, entity_id, powerState="on")
            async for message in client.messages:
                return sub_id, bytes(message.payload)
        raise AssertionError("the broker closed the subscription")

    sub_id, payload = asyncio.run(asyncio.wait_for(notified(), 30))
    message = orjson.loads(payload)
    assert message["metadata"]["Content-Type"] == "application/json"
    assert message["body"]["subscriptionId"] == sub_id
    assert message["body"]["data"][0]["powerState"]["value"] == "on"


@pytest.mark.slow
def test_a_pending_notification_survives_a_kill_9_of_the_server(tmp_path):
    data = tmp_path / "data"
    asyncio.run(seed_accounts(data))
    port = free_port()  # the endpoint's: nobody listens there yet
    env = {"CITYPILOT_NOTIFY_RETRY_MIN_S": "0.1", "CITYPILOT_NOTIFY_RETRY_MAX_S": "0.5"}
    with server_child(data, env) as (url, proc):
        server = Server(url, data)
        entity_id = lamp(server)
        sub_id = subscribe(server, f"http://127.0.0.1:{port}/late", entity_id)
        change(server, entity_id, powerState="on")
        status: dict[str, Any] = {}
        for _ in range(600):  # tried, and failed: it waits in the outbox
            status = read(server, sub_id).json()["notification"]
            if status.get("status") == "failed":
                break
        assert status["status"] == "failed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with Receiver(port=port) as late, server_child(data, env) as (url, _proc):
        got = late.wait_for(1)[0].json()
        assert got["subscriptionId"] == sub_id
        assert got["data"][0]["id"] == entity_id
        assert got["data"][0]["powerState"]["value"] == "on"


async def test_subscriptions_changed_through_another_process_are_taken_up(tmp_path):
    from citypilot.bus.memory import MemoryBus
    from citypilot.notify.notifier import Notifier
    from citypilot.notify.subscription import merged, new_subscription
    from citypilot.security.tokens import Principal
    from citypilot.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "city.db")
    await store.open()
    here = Notifier(store, MemoryBus(), lambda _sub, _entities: [])
    try:
        doc = new_subscription(_GOOD, Principal("op", "operator"), 0.0)
        # another API process creates, pauses and deletes it, in the shared store
        await store.put_subscription(doc["id"], doc, create=True)
        await here.refresh()
        assert here.subs[doc["id"]].doc.get("isActive", True) is True
        await store.put_subscription(doc["id"], merged(doc, {"isActive": False}), create=False)
        await here.refresh()
        assert here.subs[doc["id"]].doc["isActive"] is False
        await store.delete_subscription(doc["id"])
        await here.refresh()
        assert doc["id"] not in here.subs
    finally:
        await here.stop()
        await store.close()
