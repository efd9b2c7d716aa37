"""Back-pressure from the observation stream: is JetStream or are the writers falling behind?

Ingest checks :meth:`StreamPressure.over_limit` before taking more: the MQTT
ingest workers then stop acknowledging and reading (the MQTT broker keeps the
messages), and the API answers HTTP ingest with 503 and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from citypilot import metrics
from citypilot.bus.nats import NatsBus

log = logging.getLogger(__name__)

#: The durable consumer the writer workers share.
WRITER_CONSUMER = "writer"
#: How often the writers' lag is read from JetStream.
POLL_S = 0.25


class StreamPressure:
    """Watches the writers' consumer lag and the publishes awaiting PubAck."""

    def __init__(self, bus: NatsBus, max_lag: int, max_in_flight: int) -> None:
        self.bus = bus
        self.max_lag = max_lag
        self.max_in_flight = max_in_flight
        self.lag = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling the lag."""
        self._task = asyncio.create_task(self._poll(), name="stream-pressure")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            lag = await self.bus.lag("observations.>", WRITER_CONSUMER)
            if lag is not None:
                self.lag = lag
                metrics.STREAM_LAG.labels(WRITER_CONSUMER).set(lag)
            metrics.PUBLISH_IN_FLIGHT.set(self.bus.in_flight)
            await asyncio.sleep(POLL_S)

    def reason(self) -> str | None:
        """Why ingest should pause now ("lag" or "in_flight"), or None."""
        if self.lag > self.max_lag:
            return "lag"
        if self.bus.in_flight > self.max_in_flight:
            return "in_flight"
        return None

    def over_limit(self) -> bool:
        """Whether ingest should pause now."""
        return self.reason() is not None

    def describe(self) -> str:
        """The current figures, for messages."""
        return (
            f"{self.lag} messages waiting for writers (limit {self.max_lag}), "
            f"{self.bus.in_flight} publishes in flight (limit {self.max_in_flight})"
        )
