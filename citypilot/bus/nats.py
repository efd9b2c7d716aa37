"""The NATS JetStream event bus: durable streams shared by every CityPilot process.

Bus subjects map to NATS subjects under a prefix (``citypilot`` by default) and
to one durable stream by their first token:

========================  ==========================================  ==================
bus subject               NATS subject                                stream
========================  ==========================================  ==================
``observations.<T>.<M>``  ``<prefix>.observations.<T>.<M>``            ``<P>_OBSERVATIONS``
``entities.changed``      ``<prefix>.entities.changed.<T>`` (per type) ``<P>_CHANGES``
``entities.deleted``      ``<prefix>.entities.deleted``                ``<P>_CHANGES``
``commands.*``            ``<prefix>.commands.*``                      ``<P>_COMMANDS``
``command_acks.*``        ``<prefix>.command_acks.*``                  ``<P>_COMMAND_ACKS``
anything else ``S``       ``<prefix>.events.S``                        ``<P>_EVENTS``
========================  ==========================================  ==================

(``T`` is an entity type, ``M`` a municipality token; ``P`` the prefix in capitals.)

``publish`` returns once JetStream has stored the event (its PubAck), so a caller
may acknowledge its own sender after it. ``listen`` without a group gives every
process every event from the moment it listened (an ordered, ephemeral consumer);
``listen`` with a ``group`` shares the events among the group's listeners in every
process (a durable pull consumer per subject and group, from the group's first
listen on, with explicit ack: an event whose handler failed, or whose process
died, is delivered again). Observations are consumed in batches
with :meth:`NatsBus.consume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from citypilot.bus.base import Handler

log = logging.getLogger(__name__)

#: (first token of a bus subject, stream suffix); unknown first tokens go to EVENTS.
STREAMS: tuple[tuple[str, str], ...] = (
    ("observations", "OBSERVATIONS"),
    ("entities", "CHANGES"),
    ("commands", "COMMANDS"),
    ("command_acks", "COMMAND_ACKS"),
    ("events", "EVENTS"),
)
_STREAM_OF = dict(STREAMS)
_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
#: Changes per ``entities.changed`` message at most (NATS refuses messages over 1 MB).
CHANGES_PER_EVENT = 1000
#: How long each stream keeps events (observations wait here while writers are down).
MAX_AGE_S = 7 * 24 * 3600

BatchHandler = Callable[[Sequence[Msg]], Awaitable[None]]


class BusUnavailable(Exception):
    """JetStream did not store an event in time (NATS down or reconnecting)."""


def subject_token(text: str) -> str:
    """``text`` as one NATS subject token (no dots, wildcards or spaces)."""
    return _UNSAFE_TOKEN.sub("_", text) or "_"


class NatsBus:
    """The :class:`~citypilot.bus.base.EventBus` on NATS JetStream."""

    def __init__(
        self,
        url: str,
        prefix: str = "citypilot",
        *,
        ack_wait_s: float = 30.0,
        publish_timeout_s: float = 5.0,
        replicas: int = 1,
        name: str = "citypilot",
    ) -> None:
        self.url = url
        self.prefix = subject_token(prefix)
        self.ack_wait_s = ack_wait_s
        self.publish_timeout_s = publish_timeout_s
        self.replicas = replicas
        self.name = name
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Any] = []
        self._closing = False
        #: publishes sent and not yet acknowledged by JetStream (for back-pressure)
        self.in_flight = 0

    # -- naming ----------------------------------------------------------------
    def stream_name(self, suffix: str) -> str:
        """The stream name for a suffix of :data:`STREAMS`."""
        return f"{self.prefix.upper()}_{suffix}"

    def nats_subject(self, subject: str) -> str:
        """The NATS subject a bus subject is published on."""
        first = subject.split(".", 1)[0]
        if first in _STREAM_OF:
            return f"{self.prefix}.{subject}"
        return f"{self.prefix}.events.{subject}"

    def bus_subject(self, nats_subject: str) -> str:
        """The bus subject of a NATS subject (the inverse of :meth:`nats_subject`)."""
        rest = nats_subject[len(self.prefix) + 1 :]
        if rest.startswith("events."):
            rest = rest[len("events.") :]
        if rest.startswith("entities.changed."):
            return "entities.changed"
        return rest

    def _filter(self, subject: str) -> tuple[str, str]:
        """(stream, NATS filter subject) of a bus subject, wildcards allowed."""
        nats_subject = self.nats_subject(subject)
        if subject == "entities.changed":
            nats_subject += ".>"
        first = nats_subject[len(self.prefix) + 1 :].split(".", 1)[0]
        return self.stream_name(_STREAM_OF[first]), nats_subject

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (the bus must be started)."""
        if self._js is None:
            raise RuntimeError("the NATS bus is not started")
        return self._js

    @property
    def client(self) -> Client:
        """The NATS connection, for core request/reply (the bus must be started)."""
        if self._nc is None:
            raise RuntimeError("the NATS bus is not started")
        return self._nc

    @property
    def connected(self) -> bool:
        """Whether the connection to NATS is up now."""
        return self._nc is not None and self._nc.is_connected

    # -- life cycle ------------------------------------------------------------
    async def start(self) -> None:
        """Connect (retrying until NATS answers) and create or update the streams."""
        self._nc = await nats.connect(
            servers=[u.strip() for u in self.url.split(",")],
            name=self.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            connect_timeout=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._js = self._nc.jetstream(timeout=self.publish_timeout_s)
        for first, suffix in STREAMS:
            config = StreamConfig(
                name=self.stream_name(suffix),
                subjects=[f"{self.prefix}.{first}.>"],
                storage=StorageType.FILE,
                max_age=MAX_AGE_S,
                num_replicas=self.replicas,
            )
            try:
                await self._js.stream_info(config.name)
                await self._js.update_stream(config)
            except NotFoundError:
                await self._js.add_stream(config)

    async def stop(self) -> None:
        """Drop every listener and close the connection."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = None

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS connection lost; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("NATS connection restored")

    # -- publishing --------------------------------------------------------------
    async def publish(self, subject: str, payload: dict[str, Any]) -> None:
        """Store the event in its stream; BusUnavailable when JetStream did not confirm.

        ``entities.changed`` is split per entity type so that consumers can filter, and
        in messages of at most :data:`CHANGES_PER_EVENT` changes.
        """
        if subject == "entities.changed":
            by_type: dict[str, list[dict[str, Any]]] = {}
            for change in payload.get("changes", ()):
                by_type.setdefault(change["type"], []).append(change)
            await asyncio.gather(
                *(
                    self.publish_raw(
                        f"{self.prefix}.entities.changed.{subject_token(t)}",
                        orjson.dumps({**payload, "changes": changes[i : i + CHANGES_PER_EVENT]}),
                    )
                    for t, changes in by_type.items()
                    for i in range(0, len(changes), CHANGES_PER_EVENT)
                )
            )
            return
        await self.publish_raw(self.nats_subject(subject), orjson.dumps(payload))

    async def publish_raw(self, nats_subject: str, data: bytes) -> None:
        """Publish bytes on a NATS subject and wait for JetStream's PubAck."""
        self.in_flight += 1
        try:
            await self.js.publish(nats_subject, data, timeout=self.publish_timeout_s)
        except (NatsTimeout, nats.errors.Error, OSError) as exc:
            raise BusUnavailable(f"JetStream did not store the event: {exc!r}") from exc
        finally:
            self.in_flight -= 1

    # -- listening ---------------------------------------------------------------
    def listen(
        self, subject: str, handler: Handler, *, group: str | None = None
    ) -> Callable[[], None]:
        """Call ``handler(subject, payload)`` per event; returns the unsubscribe function.

        Without ``group`` each process gets every event stored from now on; with a
        ``group``, each event goes to one listener of the group (across processes)
        and is acknowledged once the handler returned.
        """
        if group is None:
            start_time = datetime.now(UTC)
            task = self._spawn(self._fan_out(subject, handler, start_time))
        else:

            async def on_batch(msgs: Sequence[Msg]) -> None:
                for msg in msgs:
                    result = handler(self.bus_subject(msg.subject), orjson.loads(msg.data))
                    if asyncio.iscoroutine(result):
                        await result
                    await msg.ack()

            task = self._spawn(self.consume(subject, group, on_batch, batch=64, from_now=True))

        def unsubscribe() -> None:
            task.cancel()

        return unsubscribe

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _fan_out(self, subject: str, handler: Handler, start_time: datetime) -> None:
        """An ordered consumer of ``subject`` from ``start_time``; calls ``handler`` per event."""
        subjects = (
            [f"{self.prefix}.{first}.>" for first, _ in STREAMS if first != "observations"]
            if subject == "*"
            else [self._filter(subject)[1]]
        )

        async def on_msg(msg: Msg) -> None:
            try:
                result = handler(self.bus_subject(msg.subject), orjson.loads(msg.data))
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("bus listener %r failed on %s", handler, msg.subject)

        subs = []
        try:
            for nats_subject in subjects:
                sub = await self.js.subscribe(
                    nats_subject,
                    cb=on_msg,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.BY_START_TIME,
                    config=ConsumerConfig(opt_start_time=start_time.isoformat()),
                )
                subs.append(sub)
                self._subs.append(sub)
            await asyncio.Event().wait()  # until cancelled
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                with contextlib.suppress(ValueError):
                    self._subs.remove(sub)

    async def consume(
        self,
        subject: str,
        durable: str,
        on_batch: BatchHandler,
        *,
        batch: int = 256,
        max_ack_pending: int = 20_000,
        from_now: bool = False,
    ) -> None:
        """Feed batches of a durable pull consumer to ``on_batch`` until cancelled.

        A consumer made here starts at the first event of the stream, or with
        ``from_now`` at the next one (a group of listeners hears what happens from when
        it first listened, not the stream's past days); one that exists goes on.

        ``on_batch`` acknowledges the messages it handled; those it did not are
        delivered again after the ack wait (to this process or another). Transient
        NATS failures are retried with a short back-off.
        """
        stream, filter_subject = self._filter(subject)
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_ack_pending=max_ack_pending,
            filter_subject=filter_subject,
            max_deliver=-1,
            deliver_policy=DeliverPolicy.NEW if from_now else DeliverPolicy.ALL,
        )
        sub = None
        while True:
            try:
                if sub is None:
                    sub = await self.js.pull_subscribe(
                        filter_subject, durable=durable, stream=stream, config=config
                    )
                    log.info("consumer %s of %s ready", durable, filter_subject)
                msgs = await sub.fetch(batch, timeout=1.0)
            except (TimeoutError, NatsTimeout):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("NATS consumer %s: %r; retrying", durable, exc)
                await asyncio.sleep(0.5)
                continue
            try:
                await on_batch(msgs)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s failed on a batch; it is delivered again", durable)
                for msg in msgs:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=1.0)

    async def lag(self, subject: str, durable: str) -> int | None:
        """Events of ``subject`` not yet acknowledged by the durable consumer (None: unknown)."""
        stream, _ = self._filter(subject)
        try:
            info = await self.js.consumer_info(stream, durable, timeout=1.0)
        except Exception:
            return None
        return info.num_pending + info.num_ack_pending
