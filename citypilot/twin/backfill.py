"""The recent past of the demo city, played into its history on the first start.

A platform shown with empty charts and an all-green map tells nothing; a city has a
yesterday. ``play_recent_history`` runs the simulator over the last hours (a day by
default) and sends what the devices would have reported, in time order, through any
sink (the server's own ingest API in the demo). Slow-changing sensors (air, water,
parking, vehicles, buildings) play the whole span; the dense layers (streetlights,
signals) only their last minutes, which is what their state needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from citypilot.twin.city import City
from citypilot.twin.clients import Sink
from citypilot.twin.scenario import ResolvedEvent
from citypilot.twin.simulator import Simulator

#: Types whose whole span is played (the others get their last ``DENSE_MINUTES``).
SPAN_TYPES = (
    "AirQualityObserved",
    "WaterLevelSensor",
    "WaterQualityObserved",
    "BikeStation",
    "Tram",
    "Bus",
    "PoliceUnit",
    "TechnicalVehicle",
    "ParkingSpot",
    "DeliveryArea",
    "OffStreetParking",
    "Camera",
    "AccessPoint",
    "Building",
)
DENSE_TYPES = ("Streetlight", "TrafficSignal")
DENSE_MINUTES = 20
BATCH = 10_000
#: Reports of the span types come this many times less often than live (history, not a feed).
INTERVAL_FACTOR = 6.0


async def play_recent_history(
    sink: Sink,
    city: City,
    seed: int,
    *,
    hours: int = 24,
    until: datetime | None = None,
    events: Sequence[ResolvedEvent] = (),
    progress: Callable[[int, int, int], None] | None = None,
) -> int:
    """Send the last ``hours`` of the city's reports to ``sink``; return how many were sent.

    ``events`` (scenario events placed in time) shape the past as they will the live
    run. ``progress(hour_done, hours, sent)`` is called after each simulated hour.
    """
    end = until or datetime.now(UTC)
    sent = 0

    async def send(observations: list[dict]) -> None:
        nonlocal sent
        for k in range(0, len(observations), BATCH):
            await sink.send(observations[k : k + BATCH])
        sent += len(observations)

    span = Simulator(
        city, seed, end - timedelta(hours=hours), interval_factor=INTERVAL_FACTOR, types=SPAN_TYPES
    )
    for event in events:
        span.inject(event)
    for done in range(1, hours + 1):
        await send(span.run_until(end - timedelta(hours=hours - done), step_s=60))
        if progress is not None:
            progress(done, hours, sent)
    dense = Simulator(city, seed, end - timedelta(minutes=DENSE_MINUTES), types=DENSE_TYPES)
    await send(dense.run_until(end, step_s=60))
    return sent
