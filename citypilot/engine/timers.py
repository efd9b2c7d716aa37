"""Background timers of the engine services: call ``tick`` every few seconds until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def start_ticker(every_s: float, tick: Callable[[], Awaitable[None]], name: str) -> asyncio.Task:
    """A task calling ``tick`` every ``every_s`` seconds; a failing tick is logged and
    the next one runs."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await tick()
            except Exception:
                log.exception("%s failed", name)

    return asyncio.create_task(loop(), name=name)


async def stop_ticker(task: asyncio.Task | None) -> None:
    """Cancel a ticker (None: nothing to stop) and wait for it to end."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
