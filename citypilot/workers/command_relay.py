"""The ingest worker's part of device commands: the engine's queued commands out to
MQTT, the devices' acks back to the engine (subjects in ``ingest/bus_commands.py``).

Every ingest worker pulls from the one durable consumer of ``commands.deliver.>``, so
each command is published once whichever workers run, and a command queued while none
runs goes out when one starts. A command message is acknowledged to JetStream only once
the MQTT broker acknowledged the command (PUBACK, QoS 1) and JetStream stored the send
report; a failure on either side leaves it to be delivered again (the device may then
get the same command id twice, as with a resend). A command past its deadline is
dropped: the engine expires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import orjson
from nats.aio.msg import Msg

from citypilot.bus.nats import BusUnavailable, NatsBus, subject_token
from citypilot.engine.commands import DeliveryError
from citypilot.engine.timers import stop_ticker
from citypilot.ingest.bus_commands import (
    ANSWER,
    DELIVER,
    RELAY_CONSUMER,
    SENT,
    ack_type_token,
)
from citypilot.ingest.mqtt import MqttIngest
from citypilot.ingest.mqtt_commands import MqttCommandPublisher, device_topic
from citypilot.model.errors import CityPilotError, ServiceUnavailable
from citypilot.model.timeutil import parse_instant

log = logging.getLogger(__name__)
RETRY_DELAY_S = 1.0  # before a command that could not go out is delivered again


class CommandRelay:
    """Publishes the queued commands over MQTT and forwards the acks the adapter receives."""

    def __init__(self, bus: NatsBus, adapter: MqttIngest, client_id: str) -> None:
        self.bus = bus
        self.root = adapter.topic_root
        self.publisher = MqttCommandPublisher(adapter, client_id)
        self._consumer: asyncio.Task[None] | None = None
        adapter.command_acks = self.forward_ack

    def start(self) -> None:
        """Take commands from the shared consumer until :meth:`stop`."""
        self._consumer = asyncio.create_task(
            self.bus.consume(f"{DELIVER}.>", RELAY_CONSUMER, self._relay_batch)
        )

    async def stop(self) -> None:
        """Stop taking commands (those unacknowledged go to another worker) and disconnect."""
        await stop_ticker(self._consumer)
        await self.publisher.close()

    async def _relay_batch(self, msgs: Sequence[Msg]) -> None:
        await asyncio.gather(*(self._relay(msg) for msg in msgs))

    async def _relay(self, msg: Msg) -> None:
        """Publish one command to its device, report the send, then acknowledge it."""
        try:
            doc = orjson.loads(msg.data)
            device, entity, entity_type = doc["device"], doc["entityId"], doc["entityType"]
            deadline = parse_instant(device["deadline"], "deadline")
        except (orjson.JSONDecodeError, KeyError, TypeError, CityPilotError):
            log.error("unreadable command on %s dropped: %r", msg.subject, msg.data[:200])
            await msg.term()
            return
        if deadline <= time.time():
            log.info("command %s is past its deadline: not sent", device.get("id"))
            await msg.ack()
            return
        topic = device_topic(self.root, entity_type, entity)
        try:
            await self.publisher.publish(topic, orjson.dumps(device))
            report = {"id": device.get("id"), "topic": topic}
            await self.bus.publish(f"{SENT}.{subject_token(entity_type)}", report)
        except (DeliveryError, BusUnavailable) as exc:
            log.warning("command %s not relayed now (%s); it comes again", device.get("id"), exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=RETRY_DELAY_S)
            return
        await msg.ack()

    async def forward_ack(self, topic: str, payload: bytes) -> None:
        """Store a device's ack message in ``command_acks.answer.<Type>`` (called by the
        adapter before it acknowledges the MQTT message); 503 if JetStream did not."""
        body = {"topic": topic, "payload": payload.decode("utf-8", "replace")}
        try:
            await self.bus.publish(f"{ANSWER}.{ack_type_token(self.root, topic)}", body)
        except BusUnavailable as exc:
            raise ServiceUnavailable(f"the command ack stream cannot take it: {exc}", 1) from None
