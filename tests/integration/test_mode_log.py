"""The mode table in both stores: an activation is kept, updated, listed while open."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from citypilot.store.base import Store
from citypilot.store.modes import ActivationRow, ModeLog, mode_log_for


@pytest.fixture
async def log(store_factory: Callable[[], Store]) -> AsyncIterator[ModeLog]:
    """The mode table of a fresh store of each backend."""
    store = store_factory()
    await store.open()
    modes = mode_log_for(store)
    await modes.open()
    await modes.open()  # idempotent, as at every start
    yield modes
    await store.close()


async def test_activations_are_kept_updated_and_listed_while_open(log: ModeLog):
    flood = ActivationRow(f"mode-{uuid.uuid4().hex}", "flood", "active", 100.0, 100.0, {"n": 1})
    event = ActivationRow(f"mode-{uuid.uuid4().hex}", "major-event", "entering", 200.0, 200.0, {})
    await log.save(flood)
    await log.save(event)
    assert [r.name for r in await log.open_activations()] == ["flood", "major-event"]
    await log.save(ActivationRow(flood.id, "flood", "left", 100.0, 300.0, {"n": 2}))
    assert [r.name for r in await log.open_activations()] == ["major-event"]
    latest = await log.recent(10)
    assert [r.name for r in latest] == ["major-event", "flood"]
    assert latest[1].state == "left" and latest[1].doc == {"n": 2} and latest[1].updated_at == 300.0
    assert len(await log.recent(1)) == 1
