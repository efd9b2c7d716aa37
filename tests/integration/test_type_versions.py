"""Types are versioned, on both stores: a change that stored entities break is refused
with what breaks unless forced, built-in types may only be extended, and a type with
no entities can be deleted; the history of every version survives restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from citypilot.broker import Broker
from citypilot.bus.memory import MemoryBus
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.errors import Conflict, ResourceNotFound
from citypilot.model.types import TypeRegistry
from citypilot.store.base import Store

KIOSK = {
    "name": "Kiosk",
    "department": "economy",
    "attributes": {
        "status": {"value": "string", "choices": ["open", "closed", "moved"]},
        "visitors": {"value": "integer", "minimum": 0, "maximum": 1000},
    },
}


async def open_broker(store: Store) -> Broker:
    await store.open()
    broker = Broker(TypeRegistry(BUILTIN_TYPES), store, MemoryBus())
    await broker.load_registered_types()
    return broker


@pytest.fixture
async def broker(store_factory: Callable[[], Store]) -> AsyncIterator[Broker]:
    opened = await open_broker(store_factory())
    yield opened
    await opened.store.close()


def kiosk(**attributes: Any) -> dict[str, Any]:
    """The kiosk declaration with some attributes replaced (None: removed)."""
    attrs = {**KIOSK["attributes"], **attributes}
    return {**KIOSK, "attributes": {n: a for n, a in attrs.items() if a is not None}}


async def add_kiosks(broker: Broker, *values: dict[str, Any]) -> None:
    for n, attrs in enumerate(values):
        await broker.create_entity({"id": f"urn:ngsi-ld:Kiosk:{n}", "type": "Kiosk", **attrs})


async def test_versions_count_changes_and_an_unchanged_declaration_is_not_one(broker: Broker):
    entity_type, created = await broker.types.register(KIOSK, by="admin")
    assert (entity_type.version, created) == (1, True)
    assert await broker.types.register(KIOSK) == (entity_type, False)
    wider = kiosk(visitors={"value": "number", "minimum": -1}, opening={"value": "datetime"})
    entity_type, created = await broker.types.register(wider, by="admin")
    assert (entity_type.version, created) == (2, False)
    assert broker.registry.get("Kiosk").attributes["visitors"].value == "number"
    history = await broker.types.history("Kiosk")
    assert [(r["version"], r["registeredBy"], r["forced"]) for r in history] == [
        (1, "admin", False),
        (2, "admin", False),
    ]
    assert history[1]["type"]["attributes"]["opening"] == {"kind": "Property", "value": "datetime"}
    with pytest.raises(ResourceNotFound):
        await broker.types.history("Never")


async def test_a_change_stored_entities_break_is_refused_with_what_breaks(broker: Broker):
    await broker.types.register(KIOSK)
    await add_kiosks(
        broker, {"status": "open", "visitors": 10}, {"status": "moved", "visitors": 900}, {}
    )
    with pytest.raises(Conflict) as refused:
        await broker.types.register(kiosk(visitors={"value": "integer", "maximum": 100}))
    assert refused.value.status == 409
    assert refused.value.extra["breaks"] == [
        {
            "attribute": "visitors",
            "change": "range",
            "detail": "range 0..1000 -> None..100",
            "count": 1,
            "entities": ["urn:ngsi-ld:Kiosk:1"],
        }
    ]
    with pytest.raises(Conflict) as refused:
        await broker.types.register(kiosk(status=None, visitors={"value": "string"}))
    breaks = {b["attribute"]: (b["change"], b["count"]) for b in refused.value.extra["breaks"]}
    assert breaks == {"status": ("removed", 2), "visitors": ("value", 2)}
    assert broker.registry.get("Kiosk").version == 1  # nothing was applied
    # A narrowing no stored value violates is no break.
    entity_type, _ = await broker.types.register(
        kiosk(status={"value": "string", "choices": ["open", "moved"]})
    )
    assert entity_type.version == 2
    # Forced: registered, and the record says what it broke.
    entity_type, _ = await broker.types.register(kiosk(status=None), force=True, by="chief")
    assert entity_type.version == 3 and "status" not in entity_type.attributes
    record = (await broker.types.history("Kiosk"))[-1]
    assert record["forced"] is True and record["registeredBy"] == "chief"
    assert record["breaks"][0]["entities"] == ["urn:ngsi-ld:Kiosk:0", "urn:ngsi-ld:Kiosk:1"]


async def test_a_stale_version_in_the_declaration_is_refused(broker: Broker):
    await broker.types.register(KIOSK)
    await broker.types.register({**kiosk(size={"value": "number"}), "version": 1})
    with pytest.raises(Conflict, match="at version 2, not 1"):
        await broker.types.register({**kiosk(colour={"value": "string"}), "version": 1})


async def test_built_in_types_may_only_be_extended(broker: Broker):
    light = broker.registry.get("Streetlight").to_json()
    await broker.create_entity(
        {"id": "urn:ngsi-ld:Streetlight:1", "type": "Streetlight", "powerState": "on"}
    )
    for force in (False, True):
        with pytest.raises(Conflict, match="built-in type") as refused:
            await broker.types.register({**light, "attributes": {}}, force=force)
        breaks = {b["attribute"]: b["count"] for b in refused.value.extra["breaks"]}
        assert breaks == {"powerState": 1}
    cap = {"value": "number", "unit": "WTT", "minimum": 0, "maximum": 50}
    narrower = {**light["attributes"], "powerConsumption": cap}
    with pytest.raises(Conflict, match="narrows powerConsumption"):
        await broker.types.register({**light, "attributes": narrower})
    with pytest.raises(Conflict, match="department"):
        await broker.types.register({**light, "department": "police"})
    extended = {**light["attributes"], "poleHeight": {"value": "number", "unit": "MTR"}}
    entity_type, created = await broker.types.register({**light, "attributes": extended})
    assert (entity_type.version, created) == (2, False)
    assert [r["version"] for r in await broker.types.history("Streetlight")] == [1, 2]
    with pytest.raises(Conflict, match="cannot be deleted"):
        await broker.types.delete("Streetlight")


async def test_a_type_is_deleted_only_without_entities(broker: Broker):
    await broker.types.register(KIOSK)
    await add_kiosks(broker, {"status": "open"}, {})
    with pytest.raises(Conflict) as refused:
        await broker.types.delete("Kiosk")
    assert refused.value.extra["count"] == 2
    assert refused.value.extra["entities"] == ["urn:ngsi-ld:Kiosk:0", "urn:ngsi-ld:Kiosk:1"]
    await broker.batch_delete(["urn:ngsi-ld:Kiosk:0", "urn:ngsi-ld:Kiosk:1"])
    await broker.types.delete("Kiosk")
    assert "Kiosk" not in broker.registry
    with pytest.raises(ResourceNotFound):
        await broker.types.delete("Kiosk")
    # registered again, it takes the next version: numbers are never reused
    entity_type, created = await broker.types.register(KIOSK)
    assert (entity_type.version, created) == (2, True)
    assert [r["version"] for r in await broker.types.history("Kiosk")] == [1, 2]


async def test_versions_survive_a_restart(store_factory: Callable[[], Store]):
    broker = await open_broker(store_factory())
    await broker.types.register(KIOSK)
    await broker.types.register(kiosk(size={"value": "number"}))
    await broker.store.close()
    again = await open_broker(store_factory())
    try:
        assert again.registry.get("Kiosk").version == 2
        assert "size" in again.registry.get("Kiosk").attributes
        assert len(await again.types.history("Kiosk")) == 2
    finally:
        await again.store.close()
