"""The writer worker: observation batches from JetStream → the store, then change events.

Messages are acknowledged only after the store committed them and their change
events are stored; a writer killed before that leaves them to be delivered again
(to it or to another writer) after the ack wait. While the store is down the
batch is retried, and JetStream is told the work is in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from nats.aio.msg import Msg

from citypilot import metrics
from citypilot.broker import Broker
from citypilot.bus.nats import NatsBus
from citypilot.config import Settings
from citypilot.workers.pressure import WRITER_CONSUMER
from citypilot.workers.queue import OBSERVATIONS, decode
from citypilot.workers.runtime import worker_broker

log = logging.getLogger(__name__)
#: Longest pause between two attempts of a batch the store refused.
MAX_RETRY_S = 5.0


async def write_batch(broker: Broker, msgs: Sequence[Msg]) -> None:
    """Write the readings of ``msgs`` until it succeeds, then acknowledge them."""
    readings = [r for msg in msgs for r in decode(msg.data)]
    delay = 0.2
    while True:
        started = time.perf_counter()
        try:
            await broker.apply_observations(readings)
            break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("writing %d readings failed (%r); retrying", len(readings), exc)
            with contextlib.suppress(Exception):  # NATS may be down too
                for msg in msgs:
                    await msg.in_progress()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)
    metrics.BATCH_WRITE_SECONDS.observe(time.perf_counter() - started)
    metrics.READINGS_WRITTEN.inc(len(readings))
    # an ack lost with the NATS connection only means the batch comes again (idempotent)
    with contextlib.suppress(Exception):
        for msg in msgs:
            await msg.ack()


async def run_writer(settings: Settings) -> None:
    """Consume the observation stream into the store until cancelled."""
    async with worker_broker(settings, "writer") as broker:
        bus = broker.bus
        assert isinstance(bus, NatsBus)

        async def on_batch(msgs: Sequence[Msg]) -> None:
            await write_batch(broker, msgs)

        await bus.consume(
            f"{OBSERVATIONS}.>", WRITER_CONSUMER, on_batch, batch=settings.writer_batch
        )
