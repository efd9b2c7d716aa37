"""Device ingest over MQTT: observations published by devices and gateways.

Topics under the configured root (``citypilot`` by default):

* ``<root>/<Type>/<local-id>/attrs`` carries one observation of the entity
  ``urn:ngsi-ld:<Type>:<local-id>`` as ``{"observedAt": ..., "attrs": {...}}``;
* ``<root>/batch`` carries compact observations (``{"id", "type", "observedAt",
  "attrs"}``) as a JSON array or NDJSON, for gateways.

Messages are gathered and handed to :meth:`Broker.ingest` in batches (size or
delay, whichever comes first). Whatever cannot be used — a payload that is not
JSON, a topic outside the scheme, an observation refused by validation — is kept
as a dead letter with the reason and the raw payload, source ``mqtt:<topic>``.
See docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from citypilot import metrics
from citypilot.broker import Broker, ItemError, unusable
from citypilot.model.errors import BadRequestData, CityPilotError, InvalidRequest
from citypilot.model.ids import check_device_id, entity_id
from citypilot.model.json_limits import (
    DEFAULT_MAX_DEPTH,
    check_depth,
    depth_error,
    dumps_anything,
    max_depth,
    too_deep_at,
)
from citypilot.model.observation import parse_observation
from citypilot.model.timeutil import MAX_FUTURE_SKEW_S

log = logging.getLogger(__name__)

#: Largest part of a refused payload kept in a dead letter (as over HTTP).
DEAD_LETTER_PAYLOAD_MAX = 65_536
#: How long the broker keeps our session (subscription and queued messages) while we are away.
SESSION_EXPIRY_S = 7 * 24 * 3600
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def client_id_for(topic_root: str) -> str:
    """The stable MQTT client id of the ingest adapter for ``topic_root``.

    It is the same at every start, so the broker keeps our persistent session
    (subscription and queued QoS 1 messages) while the server is down.
    """
    root = topic_root.strip("/")
    digest = hashlib.sha256(root.encode()).hexdigest()[:10]
    return f"citypilot-ingest-{_UNSAFE.sub('-', root)[:40]}-{digest}"


def _connect_properties(receive_maximum: int = 65535) -> Properties:
    """CONNECT properties: keep the session while we are away; let the broker stream."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    # The broker may send this many unacknowledged QoS 1 messages (our bound on
    # messages in flight). With a small window (Mosquitto's own default for MQTT
    # 3.1.1 clients is 20) the broker queues during any pause of ours and, beyond
    # its max_queued_messages, drops: see docs/deploy.md for the broker settings.
    props.ReceiveMaximum = min(receive_maximum, 65535)
    return props


def _clip(payload: bytes) -> bytes:
    return payload[:DEAD_LETTER_PAYLOAD_MAX]


class _Inbox(asyncio.Queue["aiomqtt.Message"]):
    """Stands in for aiomqtt's queue of incoming messages (its ``queue_type`` option).

    Each message goes straight to ``sink`` instead of through a task per message;
    the queue itself stays empty.
    """

    def __init__(self, sink: Callable[[aiomqtt.Message], None], maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self._sink = sink

    def put_nowait(self, item: aiomqtt.Message) -> None:
        """Deliver the message now."""
        self._sink(item)


class MqttIngest:
    """Subscribes to the device topics and feeds observations to the broker in batches.

    Counters (for metrics): ``received`` messages, observations ``accepted`` and
    ``refused`` (each refusal is a dead letter), ``batches`` handed to the
    broker, messages ``failed`` by an unexpected error (logged), ``connected``
    and ``backlog``.

    Several ingest workers split one topic tree with ``share_group`` (an MQTT 5
    shared subscription ``$share/<group>/<root>/#``; each needs its own
    ``client_id``). ``max_in_flight`` bounds the QoS 1 messages received and not
    yet acknowledged: the broker sends no more until we acknowledge (MQTT 5
    Receive Maximum), so memory stays bounded. While ``pressure()`` names a reason
    (the observation stream is behind), batches wait and nothing is acknowledged:
    the adapter stops taking messages and the broker holds the rest.
    """

    def __init__(
        self,
        url: str,
        topic_root: str,
        broker: Broker,
        *,
        batch_size: int = 2000,
        flush_delay: float = 0.05,
        client_id: str | None = None,
        start_timeout: float = 5.0,
        share_group: str | None = None,
        max_in_flight: int = 65535,
        pressure: Callable[[], str | None] | None = None,
        max_json_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(  # the URL may hold a password, so it is not echoed
                "MQTT URL must look like mqtt://host:1883 or mqtts://host:8883, "
                f"not scheme {parts.scheme!r} with host {parts.hostname!r}"
            )
        root = topic_root.strip("/")
        if not root or any(c in root for c in "+#\0"):
            raise ValueError(f"MQTT topic root must be non-empty, without + or #: {topic_root!r}")
        self.host: str = parts.hostname
        self.port: int = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._tls = ssl.create_default_context() if parts.scheme == "mqtts" else None
        self.topic_root = root
        self.client_id = client_id or client_id_for(root)
        self.broker = broker
        self.batch_size = batch_size
        self.flush_delay = flush_delay
        self.start_timeout = start_timeout
        self.max_json_depth = max_json_depth
        self._prefix = root + "/"
        self._batch_topic = root + "/batch"
        self._subscription = (
            f"$share/{share_group}/{self._prefix}#" if share_group else self._prefix + "#"
        )
        self.max_in_flight = max_in_flight
        self.pressure = pressure

        # counters
        self.received = 0
        self.accepted = 0
        self.refused = 0
        self.batches = 0
        self.failed = 0
        self.connected = False
        # (topic, payload) waiting for the next flush
        self._pending: list[tuple[str, bytes]] = []
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._attempted = asyncio.Event()
        self._closing = False
        self._receiver: asyncio.Task[None] | None = None
        self._inbox = functools.partial(_Inbox, self._take)
        self._flusher: asyncio.Task[None] | None = None
        self._acks: list[tuple[int, int, int]] = []  # (mid, qos, connection) per pending message
        self._paho: Any = None
        self._generation = 0
        #: Called with (topic, payload) for each ``.../cmd/ack`` message, before its
        #: PUBACK (set by the command channel, ``ingest/mqtt_commands.py``).
        self.command_acks: Callable[[str, bytes], Awaitable[None]] | None = None

    @property
    def backlog(self) -> int:
        """Messages received and not yet handed to the broker."""
        return len(self._pending)

    # -- life cycle ------------------------------------------------------------
    async def start(self) -> None:
        """Start receiving; wait (briefly) for the first connection attempt.

        If the broker is unreachable the server starts anyway; the adapter keeps
        retrying in the background.
        """
        self._flusher = asyncio.create_task(self._flush_loop(), name="mqtt-ingest-flush")
        self._receiver = asyncio.create_task(self._run(), name="mqtt-ingest-receive")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), self.start_timeout)

    async def stop(self) -> None:
        """Disconnect (the persistent session stays on the broker) and flush what was received."""
        self._closing = True
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        self._wakeup.set()
        self._full.set()
        if self._flusher is not None:
            await self._flusher
        self.connected = False

    # -- receiving -------------------------------------------------------------
    async def _run(self) -> None:
        """Connect, subscribe and receive; reconnect with back-off until stopped."""
        delay = 0.5
        connected_at: float | None = None
        while not self._closing:
            try:
                client = aiomqtt.Client(
                    self.host,
                    self.port,
                    username=self._username,
                    password=self._password,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=_connect_properties(self.max_in_flight),
                    tls_context=self._tls,
                    logger=log,
                    queue_type=cast("type[asyncio.Queue[aiomqtt.Message]]", self._inbox),
                )
                # Acknowledge (PUBACK) only once a message is committed to the store, so
                # an acknowledged message survives a crash; set before connecting, as the
                # broker may deliver the session's queued messages at once. aiomqtt keeps
                # its paho client private; the pin on aiomqtt keeps this attribute stable.
                paho = client._client
                paho.manual_ack_set(True)
                async with client:
                    self._paho = paho
                    self._generation += 1
                    # Retained messages only for a new subscription: a reconnect to
                    # our own session must not replay them into history.
                    options = SubscribeOptions(
                        qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
                    )
                    granted = await client.subscribe(self._subscription, options=options)
                    code = granted[0]
                    value = code if isinstance(code, int) else code.value
                    if value >= 0x80:
                        raise aiomqtt.MqttError(
                            f"subscription to {self._subscription} refused: {code}"
                        )
                    if value < 1:
                        log.warning("MQTT broker granted only QoS 0 on %s", self._subscription)
                    self.connected = True
                    self._attempted.set()
                    connected_at = time.monotonic()
                    log.info(
                        "MQTT ingest subscribed to %s on %s:%s",
                        self._subscription,
                        self.host,
                        self.port,
                    )
                    # _Inbox hands every message to _take as it arrives, so this
                    # loop only ends (MqttError) when the connection drops.
                    async for message in client.messages:
                        self._take(message)
            except Exception as exc:  # never let the receiver die: log, back off, retry
                self.connected = False
                self._paho = None
                self._attempted.set()
                if connected_at is not None and time.monotonic() - connected_at > 30:
                    delay = 0.5  # a connection that held a while: start the back-off afresh
                connected_at = None
                wait = delay * (0.5 + random.random())
                if not isinstance(exc, aiomqtt.MqttError):
                    log.exception("MQTT ingest receiver failed")
                log.warning(
                    "MQTT connection to %s:%s failed or lost (%s); retrying in %.1f s",
                    self.host,
                    self.port,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, 30.0)

    def _acknowledge(self, acks: Sequence[tuple[int, int, int]]) -> None:
        """PUBACK the stored messages that arrived on the current connection.

        A message from an earlier connection is not acknowledged here: the broker
        delivers it again on the new one (history keeps a reading once).
        """
        paho, generation = self._paho, self._generation
        if paho is None:
            return
        for mid, qos, gen in acks:
            if qos > 0 and gen == generation:
                paho.ack(mid, qos)

    def _take(self, message: aiomqtt.Message) -> None:
        """Add one received message to the pending batch (called by paho's read callback)."""
        self.received += 1
        payload = message.payload
        if not isinstance(payload, bytes):  # aiomqtt types it loosely
            payload = str(payload).encode()
        pending = self._pending
        pending.append((message.topic.value, payload))
        self._acks.append((message.mid, message.qos, self._generation))
        n = len(pending)
        if n == 1:
            self._wakeup.set()
        if n >= self.batch_size:
            self._full.set()

    # -- back-pressure -----------------------------------------------------------
    async def _wait_for_stream(self) -> None:
        """While the observation stream is behind, wait (acknowledging nothing)."""
        reason = self.pressure() if self.pressure is not None else None
        if reason is None:
            return
        metrics.INGEST_PAUSED.labels(reason).inc()
        while reason is not None and not self._closing:
            await asyncio.sleep(0.05)
            reason = self.pressure() if self.pressure is not None else None

    # -- batching ----------------------------------------------------------------
    async def _flush_loop(self) -> None:
        """Hand the pending messages to the broker when a batch is full or has waited enough."""
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._pending) < self.batch_size and not self._closing:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_delay)
            await self._wait_for_stream()
            batch = self._pending[: self.batch_size]
            acks = self._acks[: self.batch_size]
            del self._pending[: self.batch_size]
            del self._acks[: self.batch_size]
            try:
                await self._ingest(batch)
            except Exception:
                log.exception(
                    "MQTT ingest could not store a batch of %d messages; storing them one by one",
                    len(batch),
                )
                if not await self._ingest_each(batch, acks) and self._paho is not None:
                    self._paho.disconnect()
                continue
            self._acknowledge(acks)

    async def _ingest_each(
        self, batch: Sequence[tuple[str, bytes]], acks: Sequence[tuple[int, int, int]]
    ) -> bool:
        """Ingest messages one at a time, so that one poison message cannot block the rest.

        A message that still fails on its own becomes a dead letter with the reason and
        is acknowledged. When the failure is not the message's (a 503: the observation
        stream cannot take it now, NATS being away), or when even its dead letter cannot
        be written (the store is down), this stops: that message and the ones after it
        stay unacknowledged, for the broker to deliver again after a reconnect. Returns
        whether all were kept.
        """
        for n, (message, ack) in enumerate(zip(batch, acks, strict=True)):
            try:
                await self._ingest([message])
            except Exception as exc:
                topic, payload = message
                if isinstance(exc, CityPilotError) and exc.status == 503:
                    # not the message: where it goes cannot take it now (NATS away)
                    self.failed += len(batch) - n
                    log.warning(
                        "MQTT ingest cannot store %d messages now (%s); they stay"
                        " unacknowledged and the broker delivers them again after a reconnect",
                        len(batch) - n,
                        exc,
                    )
                    return False
                try:
                    await self._dead_letter([(topic, payload, unusable(exc, "payload"))])
                except Exception:
                    self.failed += len(batch) - n
                    log.exception(
                        "MQTT ingest could not store %d messages nor keep them as dead letters;"
                        " they stay unacknowledged and the broker delivers them again after"
                        " a reconnect",
                        len(batch) - n,
                    )
                    return False
                log.warning("MQTT message on %s kept as a dead letter: %s", topic[:200], exc)
            self._acknowledge([ack])
        return True

    async def _ingest(self, batch: Sequence[tuple[str, bytes]]) -> None:
        """Parse, check and ingest one batch of messages (one ``Broker.ingest`` call)."""
        items: list[Any] = []
        raws: list[bytes] = []
        wheres: list[str] = []
        sources: list[str] = []
        refused: list[tuple[str, bytes, CityPilotError]] = []
        acks = []
        for topic, payload in batch:
            if topic.endswith("/cmd"):
                continue  # a command we published ourselves
            if topic.endswith("/cmd/ack") and self.command_acks is not None:
                acks.append(self.command_acks(topic, payload))
                continue
            if topic == self._batch_topic:
                self._split_batch(topic, payload, items, raws, wheres, sources, refused)
                continue
            try:
                items.append(self._device_observation(topic, payload))
            except CityPilotError as exc:
                refused.append((topic, payload, exc))
                continue
            except Exception as exc:  # whatever the cause, one message never fails the batch
                refused.append((topic, payload, unusable(exc, "payload")))
                continue
            raws.append(payload)
            wheres.append("payload")
            sources.append(topic)

        # Checked here first (about 2 us per observation) so that a refusal names the
        # field inside the device's own payload ("payload.attrs.x"), not a batch index.
        registry = self.broker.registry
        latest_allowed = time.time() + MAX_FUTURE_SKEW_S
        good, good_raws, good_topics = [], [], []
        for item, raw, where, topic in zip(items, raws, wheres, sources, strict=True):
            try:
                parse_observation(item, registry, where, latest_allowed)
            except CityPilotError as exc:
                refused.append((topic, raw, exc))
                continue
            except Exception as exc:
                refused.append((topic, raw, unusable(exc, where)))
                continue
            good.append(item)
            good_raws.append(raw)
            good_topics.append(topic)

        if acks:
            await asyncio.gather(*acks)
        if refused:
            await self._dead_letter(refused)
        # One call per batch; gateway payloads can make a batch hold many more
        # observations than messages, so those are cut at batch_size.
        size = self.batch_size if len(good) > self.batch_size * 2 else len(good)
        for start in range(0, len(good), max(size, 1)):
            # What the broker refuses now is only an unknown entity: kept with its topic.
            result = await self.broker.ingest(
                good[start : start + size],
                f"mqtt:{self._prefix}#",
                good_raws[start : start + size],
                sources=[f"mqtt:{t}" for t in good_topics[start : start + size]],
            )
            self.accepted += result.accepted
            self.refused += len(result.errors)
            self.batches += 1

    def _device_observation(self, topic: str, payload: bytes) -> dict[str, Any]:
        """The compact observation carried by a device topic message."""
        if not topic.startswith(self._prefix) or not topic.endswith("/attrs"):
            raise self._bad_topic(topic)
        segments = topic[len(self._prefix) : -len("/attrs")].split("/")
        if len(segments) != 2:
            raise self._bad_topic(topic)
        type_name, local_id = segments
        eid = check_device_id(entity_id(type_name, local_id), "topic", type_name)
        if type_name not in self.broker.registry:
            raise BadRequestData(
                f"topic names type {type_name!r}, which is not registered", "topic"
            )
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"payload is not valid JSON: {exc}", "payload") from None
        if type(doc) is not dict:
            raise BadRequestData(
                'payload must be a JSON object {"observedAt": ..., "attrs": {...}}', "payload"
            )
        check_depth(payload, doc, self.max_json_depth, "payload")
        for key, expected in (("id", eid), ("type", type_name)):
            if key in doc and doc[key] != expected:
                raise BadRequestData(
                    f"payload.{key} {str(doc[key])[:80]!r} contradicts the topic ({expected})",
                    f"payload.{key}",
                )
        doc["id"] = eid
        doc["type"] = type_name
        return doc

    def _split_batch(
        self,
        topic: str,
        payload: bytes,
        items: list[Any],
        raws: list[bytes],
        wheres: list[str],
        sources: list[str],
        refused: list[tuple[str, bytes, CityPilotError]],
    ) -> None:
        """Append the observations of a gateway batch: JSON array, one object, or NDJSON."""
        body = payload.strip()
        if not body:
            refused.append((topic, payload, BadRequestData("payload is empty", "payload")))
            return
        try:
            docs = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if body[:1] == b"[" or b"\n" not in body:
                refused.append(
                    (topic, payload, InvalidRequest(f"payload is not valid JSON: {exc}", "payload"))
                )
                return
            docs = None
        if docs is not None:
            limit = self.max_json_depth
            if type(docs) is dict:
                docs = [docs]
                limit += 1  # the list is ours, not a level of the payload
            elif type(docs) is not list:
                refused.append(
                    (
                        topic,
                        payload,
                        BadRequestData(
                            "payload must be a JSON array (or NDJSON) of observations", "payload"
                        ),
                    )
                )
                return
            deep = max_depth(body, limit) >= limit  # needed (not sufficient) for a deep item
            for i, doc in enumerate(docs):
                path = too_deep_at(doc, limit - 1, f"[{i}]") if deep else None
                if path is not None:
                    error = depth_error(path, self.max_json_depth)
                    refused.append((topic, dumps_anything(doc), error))
                    continue
                items.append(doc)
                raws.append(orjson.dumps(doc))
                wheres.append(f"[{i}]")
                sources.append(topic)
            return
        for number, line in enumerate(body.split(b"\n"), 1):
            line = line.strip()
            if not line:
                continue
            try:
                doc = orjson.loads(line)
                check_depth(line, doc, self.max_json_depth, f"line {number}")
            except orjson.JSONDecodeError as exc:
                error = InvalidRequest(f"line {number} is not valid JSON: {exc}", f"line {number}")
                refused.append((topic, line, error))
                continue
            except CityPilotError as exc:
                refused.append((topic, line, exc))
                continue
            items.append(doc)
            raws.append(line)
            wheres.append(f"line {number}")
            sources.append(topic)

    def _bad_topic(self, topic: str) -> BadRequestData:
        return BadRequestData(
            f"topic {topic[:200]!r} fits neither {self._prefix}<Type>/<local-id>/attrs "
            f"nor {self._batch_topic}",
            "topic",
        )

    async def _dead_letter(self, refused: Sequence[tuple[str, bytes, CityPilotError]]) -> None:
        """Keep refused messages, one broker call per topic."""
        self.refused += len(refused)
        metrics.OBSERVATIONS_RECEIVED.labels("mqtt").inc(len(refused))
        metrics.OBSERVATIONS_REFUSED.labels("mqtt").inc(len(refused))
        by_topic: dict[str, list[tuple[bytes, CityPilotError]]] = {}
        for topic, raw, exc in refused:
            by_topic.setdefault(topic, []).append((raw, exc))
        for topic, entries in by_topic.items():
            raws = [_clip(raw) for raw, _ in entries]
            errors = [ItemError(i, None, exc) for i, (_, exc) in enumerate(entries)]
            await self.broker.dead_letter(raws, errors, f"mqtt:{topic}", raws)
