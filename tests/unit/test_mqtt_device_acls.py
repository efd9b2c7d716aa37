"""The broker ACL of a device key: only the topics of what its binding covers."""

from __future__ import annotations

from citypilot.security.devices import DeviceBinding
from citypilot.security.mqtt_devices import device_acls

A = "urn:ngsi-ld:Municipality:a"
SCOPES = {
    "urn:ngsi-ld:Streetlight:1": ("Streetlight", A, None),
    "urn:ngsi-ld:Streetlight:2": ("Streetlight", "urn:ngsi-ld:Municipality:b", None),
    "urn:ngsi-ld:ParkingSpot:9": ("ParkingSpot", A, None),
}


def _published(binding: DeviceBinding) -> list[str]:
    return [
        a["topic"]
        for a in device_acls("cp", binding, SCOPES)
        if a["acltype"] == "publishClientSend"
    ]


def test_an_entity_list_gives_each_entity_its_observation_and_ack_topics():
    acls = device_acls("cp", DeviceBinding(entities=("urn:ngsi-ld:Streetlight:1",)), SCOPES)
    assert [(a["acltype"], a["topic"]) for a in acls] == [
        ("publishClientSend", "cp/Streetlight/1/attrs"),
        ("publishClientSend", "cp/Streetlight/1/cmd/ack"),
        ("subscribePattern", "cp/Streetlight/1/cmd"),
    ]
    assert all(a["allow"] for a in acls)


def test_a_municipality_expands_to_its_entities_of_the_bound_type():
    assert _published(DeviceBinding(municipality=A)) == [
        "cp/ParkingSpot/9/attrs",
        "cp/ParkingSpot/9/cmd/ack",
        "cp/Streetlight/1/attrs",
        "cp/Streetlight/1/cmd/ack",
    ]
    assert _published(DeviceBinding(type="Streetlight", municipality=A)) == [
        "cp/Streetlight/1/attrs",
        "cp/Streetlight/1/cmd/ack",
    ]


def test_every_restriction_of_a_binding_holds():
    listed = ("urn:ngsi-ld:Streetlight:1", "urn:ngsi-ld:Streetlight:2")
    assert _published(DeviceBinding(entities=listed, municipality=A)) == [
        "cp/Streetlight/1/attrs",
        "cp/Streetlight/1/cmd/ack",
    ]


def test_a_type_gets_a_wildcard_and_only_an_unbound_key_gets_batches():
    assert _published(DeviceBinding(type="Streetlight")) == [
        "cp/Streetlight/+/attrs",
        "cp/Streetlight/+/cmd/ack",
    ]
    assert _published(DeviceBinding()) == ["cp/+/+/attrs", "cp/+/+/cmd/ack", "cp/batch"]


def test_an_id_no_topic_can_name_gets_no_topic():
    odd = ("urn:ngsi-ld:Streetlight:a+b", "urn:ngsi-ld:Streetlight:#", "not-a-urn")
    assert device_acls("cp", DeviceBinding(entities=odd), {}) == []
