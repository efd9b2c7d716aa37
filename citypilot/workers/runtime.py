"""What every worker process shares: its store, bus and broker, metrics port and clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from citypilot import metrics
from citypilot.broker import Broker
from citypilot.bus.nats import NatsBus
from citypilot.config import Settings
from citypilot.heap import settle_heap
from citypilot.model.errors import BadRequestData

log = logging.getLogger(__name__)


def worker_id(settings: Settings) -> str:
    """This worker's stable name: the ``worker_id`` setting, else the host name."""
    return settings.worker_id or socket.gethostname()


def check_distributed(settings: Settings) -> None:
    """Workers need the NATS bus (and, to share state, PostgreSQL)."""
    if settings.bus != "nats":
        raise BadRequestData(
            'workers need bus = "nats" (and store = "postgres"); see docs/deploy.md', "bus"
        )


@contextlib.asynccontextmanager
async def worker_broker(settings: Settings, role: str, sink: bool = False) -> AsyncIterator[Broker]:
    """The store, the NATS bus and a broker for one worker; ``sink``: queue observations."""
    from citypilot.api.app import build_registry
    from citypilot.bus.factory import open_bus
    from citypilot.store.factory import open_store
    from citypilot.workers.queue import ObservationQueue

    store = open_store(settings)
    await store.open()
    bus = open_bus(settings, f"citypilot-{role}-{worker_id(settings)}")
    await bus.start()
    assert isinstance(bus, NatsBus)
    broker = Broker(
        build_registry(settings), store, bus, ObservationQueue(bus, store) if sink else None
    )
    await broker.load_registered_types()
    settle_heap()
    try:
        yield broker
    finally:
        await bus.stop()
        await store.close()


def run_worker(settings: Settings, role: str, main: Callable[[], Awaitable[None]]) -> int:
    """Run ``main`` until SIGTERM or SIGINT, with ``/metrics`` on ``metrics_port``."""
    check_distributed(settings)
    logging.basicConfig(
        level=settings.log_level.upper(), format=f"%(asctime)s {role} %(levelname)s %(message)s"
    )
    if settings.metrics_port:
        metrics.serve_metrics(settings.metrics_port)
        log.info("metrics on :%d/metrics", settings.metrics_port)

    async def supervise() -> None:
        task = asyncio.create_task(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    log.info("%s worker %s (pid %d) starting", role, worker_id(settings), os.getpid())
    asyncio.run(supervise())
    return 0
