"""The command tables in both stores: kept, updated, filtered, paged, keyed, with transitions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from citypilot.store.base import Store
from citypilot.store.commands import CommandLog, CommandRow, TransitionRow, command_log_for


@pytest.fixture
async def log(store_factory: Callable[[], Store]) -> AsyncIterator[CommandLog]:
    """The command tables of a fresh store of each backend."""
    store = store_factory()
    await store.open()
    commands = command_log_for(store)
    await commands.open()
    await commands.open()  # idempotent, as at every start
    yield commands
    await store.close()


def row(entity: str, state: str, at: float, key: str | None = None) -> CommandRow:
    """A command row with a fresh id."""
    cid = f"cmd-{uuid.uuid4().hex}"
    return CommandRow(cid, entity, state, at, at, key, {"id": cid, "state": state})


async def test_commands_are_kept_updated_and_found(log: CommandLog):
    entity = f"urn:ngsi-ld:Streetlight:{uuid.uuid4().hex[:8]}"
    first = row(entity, "pending", 100.0, key=f"k-{uuid.uuid4().hex}")
    second = row(entity, "pending", 200.0)
    await log.save([first, second], [TransitionRow(first.id, 100.0, "pending", "op", {})])
    moved = CommandRow(
        first.id,
        entity,
        "confirmed",
        100.0,
        300.0,
        first.idempotency_key,
        {"id": first.id, "state": "confirmed"},
    )
    await log.save([moved], [TransitionRow(first.id, 300.0, "confirmed", "device", {"v": 1})])
    assert (await log.get(first.id)).doc["state"] == "confirmed"
    assert (await log.by_key(first.idempotency_key)).id == first.id
    assert await log.get("cmd-none") is None
    rows, total = await log.query(entity, None, None, 10, 0)
    assert total == 2 and [r.id for r in rows] == [second.id, first.id]  # newest first
    rows, total = await log.query(entity, ["confirmed"], None, 10, 0)
    assert total == 1 and rows[0].id == first.id
    rows, total = await log.query(entity, None, 250.0, 10, 0)
    assert [r.id for r in rows] == [first.id]
    rows, total = await log.query(entity, None, None, 1, 1)
    assert total == 2 and [r.id for r in rows] == [first.id]
    steps = await log.transitions(first.id)
    assert [(t.state, t.actor, t.detail) for t in steps] == [
        ("pending", "op", {}),
        ("confirmed", "device", {"v": 1}),
    ]


async def test_callbacks_are_registered_and_removed(log: CommandLog):
    await log.put_endpoint("Streetlight", "http://gw.example/cmd")
    await log.put_endpoint("Streetlight", "http://gw2.example/cmd")
    await log.put_endpoint("urn:ngsi-ld:Camera:1", "http://cam.example/")
    assert await log.endpoints() == {
        "Streetlight": "http://gw2.example/cmd",
        "urn:ngsi-ld:Camera:1": "http://cam.example/",
    }
    await log.put_endpoint("Streetlight", None)
    assert await log.endpoints() == {"urn:ngsi-ld:Camera:1": "http://cam.example/"}
