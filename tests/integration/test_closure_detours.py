"""The closure book and the transit detours over a real store: a plan follows every
closure made, ended by an operator or past its end time, and a detour book that starts
listening after closures were made (a flood mode at start) learns of them at once."""

from __future__ import annotations

import time

import pytest

from citypilot.broker import Broker
from citypilot.bus.memory import MemoryBus
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.types import TypeRegistry
from citypilot.ops.closures import ClosureBook
from citypilot.ops.detours import DetourBook, transit_lines
from citypilot.ops.routing import open_routing
from citypilot.publish.gtfs_static import StaticFeed
from citypilot.store.sqlite import SQLiteStore
from citypilot.twin import generate_city, write_gtfs
from citypilot.twin.export import write_graph


@pytest.fixture
async def town(tmp_path):
    city = generate_city(7, 0.1)
    write_gtfs(city, tmp_path / "gtfs")
    write_graph(city, tmp_path / "graph")
    store = SQLiteStore(tmp_path / "city.db")
    await store.open()
    routing = open_routing(tmp_path / "graph")
    index = StaticFeed(tmp_path / "gtfs").index()
    bus_line = next(r for r in city.transit.routes if r.vehicle_type == "Bus")
    edge = bus_line.patterns[0].edges[len(bus_line.patterns[0].edges) // 2]
    book = ClosureBook(Broker(TypeRegistry(BUILTIN_TYPES), store, MemoryBus()), routing)

    def detours() -> DetourBook:
        return DetourBook(transit_lines(index, routing.network), routing, index)

    yield book, detours, bus_line.route_id, edge
    await store.close()


def _detoured(detours: DetourBook) -> set[str]:
    return {d.line.route_id for d in detours.detours() if d.kind == "detour"}


async def test_a_detour_book_listening_late_learns_the_closures_in_force(town):
    book, detours, route_id, edge = town
    closure = await book.close([edge], time.time() + 3600, "flood", "mode:flood")
    late = detours()
    book.listen(late.update)
    assert route_id in _detoured(late)
    await book.end(closure.id, "alice")
    assert late.detours() == []


async def test_a_closure_past_its_end_time_restores_the_line(town):
    book, detours, route_id, edge = town
    plans = detours()
    book.listen(plans.update)
    ends = time.time() + 600
    await book.close([edge], ends, "works", "alice")
    assert route_id in _detoured(plans)
    await book.refresh(now=ends - 1)
    assert route_id in _detoured(plans)
    await book.refresh(now=ends + 1)
    assert plans.detours() == [] and plans.alerts() == []
