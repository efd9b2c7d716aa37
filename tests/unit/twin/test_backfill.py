"""The demo's recent past: the last hours of the city's reports, shaped by its scenario."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from citypilot.model.timeutil import parse_instant
from citypilot.twin import MemorySink, generate_city, load_scenario
from citypilot.twin.backfill import DENSE_MINUTES, play_recent_history

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
GAUGE = "urn:ngsi-ld:WaterLevelSensor:001"


def _played(events=()) -> tuple[list[dict], list[tuple[int, int, int]]]:
    city = generate_city(7, 0.05)
    sink = MemorySink(keep=10**7)
    calls: list[tuple[int, int, int]] = []
    sent = asyncio.run(
        play_recent_history(
            sink, city, 7, hours=3, until=END, events=events, progress=lambda *a: calls.append(a)
        )
    )
    assert sent == sink.count == len(sink.kept)
    return sink.kept, calls


def _levels(observations: list[dict]) -> list[float]:
    return [o["attrs"]["waterLevel"] for o in observations if o["id"] == GAUGE]


def test_the_past_covers_the_span_and_reports_progress_each_hour():
    observations, calls = _played()
    times = [parse_instant(o["observedAt"], "t") for o in observations]
    assert min(times) >= (END - timedelta(hours=3)).timestamp()
    assert max(times) <= END.timestamp()
    lights = [t for o, t in zip(observations, times, strict=True) if o["type"] == "Streetlight"]
    assert lights and min(lights) >= (END - timedelta(minutes=DENSE_MINUTES)).timestamp()
    assert {o["type"] for o in observations} >= {"WaterLevelSensor", "Bus", "Streetlight"}
    assert [c[0] for c in calls] == [1, 2, 3] and calls[-1][2] > 0


def test_a_scenario_shapes_the_past_as_it_will_the_live_run():
    city = generate_city(7, 0.05)
    storm = load_scenario("flood").resolve(city, END.timestamp())
    calm, _ = _played()
    flooded, _ = _played(storm)
    assert _levels(flooded)[-1] > _levels(calm)[-1] + 0.5
