"""The real-time loop: step the simulator as the clock runs and send what it produces.

``run_simulation(sim, sink, speed)`` advances simulated time by ``speed``
seconds per real second, sends each step's observations to the sink in batches
(waiting for each batch: a slow server slows the loop instead of piling up
memory), logs its publish rate, and stops after ``duration`` real seconds or
when ``stop_event`` is set.

Simulated time never runs ahead of the wall clock by more than ``max_ahead_s``:
the platform refuses observations from the future. To replay at ``speed`` > 1,
start the simulator in the past (:func:`replay_start`); once it catches up with
the present it continues in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from citypilot.twin.clients import Sink
from citypilot.twin.simulator import Simulator

log = logging.getLogger("citypilot.twin.runner")

TICK_S = 0.5  # real seconds between steps
BATCH_SIZE = 5000
MAX_AHEAD_S = 60.0  # well inside the platform's 300 s tolerance for clock skew
REPORT_EVERY_S = 10.0


@dataclass
class RunStats:
    """What a run did: observations sent, batches, simulated and real time, rate."""

    published: int = 0
    batches: int = 0
    sim_seconds: float = 0.0
    real_seconds: float = 0.0
    lagging_steps: int = 0  # steps that could not keep up with the requested speed

    @property
    def rate(self) -> float:
        """Observations sent per real second."""
        return self.published / self.real_seconds if self.real_seconds > 0 else 0.0


def replay_start(speed: float, real_minutes: float, now: float | None = None) -> datetime:
    """A start instant from which ``real_minutes`` at ``speed`` end at the present."""
    now = time.time() if now is None else now
    return datetime.fromtimestamp(now - max(0.0, speed - 1.0) * real_minutes * 60.0, tz=UTC)


async def run_simulation(
    sim: Simulator,
    sink: Sink,
    speed: float | None = None,
    duration: float | None = None,
    stop_event: asyncio.Event | None = None,
    *,
    tick: float = TICK_S,
    batch_size: int = BATCH_SIZE,
    max_ahead_s: float | None = MAX_AHEAD_S,
    on_stats: Callable[[RunStats], None] | None = None,
) -> RunStats:
    """Run ``sim`` in real time against ``sink`` until ``duration`` or ``stop_event``.

    ``speed`` defaults to ``sim.speed``; ``max_ahead_s=None`` lifts the wall-clock cap
    (only for sinks that accept future instants, such as a benchmark's MemorySink).
    """
    speed = sim.speed if speed is None else speed
    loop = asyncio.get_running_loop()
    stats = RunStats()
    real0 = loop.time()
    sim0 = sim.now
    last_report = real0
    last_count = 0
    stop = stop_event or asyncio.Event()
    while not stop.is_set():
        tick_start = loop.time()
        elapsed = tick_start - real0
        target = sim0 + elapsed * speed
        if max_ahead_s is not None:
            target = min(target, time.time() + max_ahead_s)
        observations = sim.step(max(target, sim.now))
        for k in range(0, len(observations), batch_size):
            await sink.send(observations[k : k + batch_size])
            stats.batches += 1
        stats.published += len(observations)
        stats.sim_seconds = sim.now - sim0
        now = loop.time()
        stats.real_seconds = now - real0
        if now - tick_start > tick:
            stats.lagging_steps += 1
        if now - last_report >= REPORT_EVERY_S:
            rate = (stats.published - last_count) / (now - last_report)
            log.info(
                "simulator: %d observations (%.0f/s), simulated %s",
                stats.published,
                rate,
                datetime.fromtimestamp(sim.now, tz=UTC).isoformat(timespec="seconds"),
            )
            last_report, last_count = now, stats.published
            if on_stats is not None:
                on_stats(stats)
        if duration is not None and stats.real_seconds >= duration:
            break
        wait = max(0.0, tick - (loop.time() - tick_start))
        if duration is not None:
            wait = min(wait, max(0.0, duration - (loop.time() - real0)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
    stats.real_seconds = loop.time() - real0
    return stats
