"""``bench soak``: the simulated devices each report once a minute, and the verdict on
memory reads the samples as a user would."""

from __future__ import annotations

from collections import Counter

from citypilot.bench.soak import _second_messages, flat_memory
from citypilot.workers.queue import MESSAGE_READINGS, decode


def test_every_device_reports_once_a_minute_spread_over_the_seconds():
    devices = 5_000
    seen: Counter[str] = Counter()
    per_second = []
    for second in range(60):
        messages = _second_messages(devices, second, 1_700_000_000.0 + second)
        readings = [r for body in messages for r in decode(body)]
        assert all(len(decode(body)) <= MESSAGE_READINGS for body in messages)
        per_second.append(len(readings))
        seen.update(r.entity_id for r in readings)
    assert len(seen) == devices and set(seen.values()) == {1}
    assert max(per_second) - min(per_second) <= 1
    again = _second_messages(devices, 60, 0.0)
    assert {r.entity_id for body in again for r in decode(body)} == {
        r.entity_id for body in _second_messages(devices, 0, 0.0) for r in decode(body)
    }


def test_memory_is_flat_when_it_stops_growing_once_every_device_reported():
    warming = [(t, 200.0 + min(t, 60) * 3 + (t % 7)) for t in range(0, 600, 5)]
    growing = [(t, 300.0 + t / 2) for t in range(0, 600, 5)]
    assert flat_memory(warming, 600) is True
    assert flat_memory(growing, 600) is False
    assert flat_memory(warming[:20], 100) is None
