"""Public traveller information against a real server holding a generated town's feed."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from citypilot.bench.server import server_process
from citypilot.twin import generate_city, write_gtfs
from citypilot.twin.export import write_graph
from tests.conftest import Server, seed_accounts

SEED, SCALE = 7, 0.1


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose data directory holds a small generated city's GTFS and road graph."""
    data = tmp_path_factory.mktemp("transit-town")
    asyncio.run(seed_accounts(data))
    city = generate_city(SEED, SCALE)
    write_gtfs(city, data / "gtfs")
    write_graph(city, data / "graph")
    with server_process(data) as url:
        yield Server(url, data)


def test_the_static_feed_is_served_without_login(town: Server):
    r = httpx.get(town.url + "/gtfs/gtfs.zip")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert {"stops.txt", "trips.txt", "stop_times.txt", "calendar_dates.txt"} <= set(
            zf.namelist()
        )
        assert zf.read("stops.txt") == (town.data_dir / "gtfs" / "stops.txt").read_bytes()
    again = httpx.get(town.url + "/gtfs/gtfs.zip", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


def test_a_server_without_a_timetable_says_so(server: Server):
    r = httpx.get(server.url + "/gtfs/gtfs.zip")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "GTFS" in r.json()["detail"]
