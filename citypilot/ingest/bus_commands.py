"""Device commands across processes: the engine queues them on the NATS bus, the ingest
workers publish them over MQTT and forward the devices' acks back (``bus = "nats"``).

Streams and subjects (bus subjects; on NATS under ``<prefix>.``, see ``bus/nats.py``):

* ``commands.deliver.<Type>`` (stream ``<P>_COMMANDS``), published by the engine:
  ``{"entityId", "entityType", "device": <the MQTT command message>}``. The ingest
  workers share the durable pull consumer :data:`RELAY_CONSUMER` (each command goes
  out once) and acknowledge a message once the MQTT broker acknowledged the command
  (PUBACK) and JetStream stored the send report (``workers/command_relay.py``);
* ``command_acks.sent.<Type>`` (stream ``<P>_COMMAND_ACKS``), published by an ingest
  worker after the MQTT PUBACK: ``{"id", "topic"}`` — the command is ``sent`` then;
* ``command_acks.answer.<Type>``, published by the ingest worker that received a
  device's ``.../cmd/ack`` before it acknowledges the MQTT message: ``{"topic",
  "payload"}`` (the MQTT topic and the payload as text).

The engine consumes ``command_acks.>`` with the durable consumer :data:`ACK_CONSUMER`
and applies each message as the embedded MQTT adapter does (an ack naming no command
sent is a dead letter); a message is acknowledged to JetStream once applied, so what
an engine did not apply before it died is applied by the next leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from nats.aio.msg import Msg

from citypilot.bus.nats import BusUnavailable, NatsBus, subject_token
from citypilot.engine.command_model import Command
from citypilot.engine.commands import QUEUED, CommandService, DeliveryError, Queued
from citypilot.engine.timers import stop_ticker
from citypilot.ingest.mqtt_commands import apply_ack, command_document

log = logging.getLogger(__name__)

DELIVER = "commands.deliver"
ACKS = "command_acks"
SENT = f"{ACKS}.sent"
ANSWER = f"{ACKS}.answer"
#: The ingest workers' shared durable consumer of ``commands.deliver.>``.
RELAY_CONSUMER = "ingest-command-relay"
#: The engine's durable consumer of ``command_acks.>``.
ACK_CONSUMER = "engine-command-acks"


def ack_type_token(root: str, topic: str) -> str:
    """The subject token of the type named by an ack topic (``_`` if it names none)."""
    parts = topic[len(root) + 1 :].split("/")
    return subject_token(parts[0]) if len(parts) == 4 and topic.startswith(root + "/") else "_"


class BusCommandChannel:
    """The engine's channel to MQTT devices through the ingest workers.

    ``deliver`` returns :data:`~citypilot.engine.commands.QUEUED` once JetStream stored
    the command: it stays ``pending`` until an ingest worker reports it published.
    """

    name = "mqtt"

    def __init__(self, bus: NatsBus, service: CommandService, topic_root: str) -> None:
        self.bus = bus
        self.service = service
        self.root = topic_root.strip("/")
        self._consumer: asyncio.Task[None] | None = None

    def reaches(self, command: Command) -> bool:
        """Any device may listen on MQTT."""
        return True

    async def deliver(self, command: Command) -> Queued:
        """Queue the command on ``commands.deliver.<Type>``; DeliveryError if JetStream
        did not store it."""
        body = {
            "entityId": command.entity_id,
            "entityType": command.entity_type,
            "device": command_document(command),
        }
        try:
            await self.bus.publish(f"{DELIVER}.{subject_token(command.entity_type)}", body)
        except BusUnavailable as exc:
            raise DeliveryError(f"the command stream cannot take it: {exc}") from None
        return QUEUED

    def start(self) -> None:
        """Consume the send reports and the devices' acks (after the service started)."""
        self._consumer = asyncio.create_task(
            self.bus.consume(f"{ACKS}.>", ACK_CONSUMER, self._apply)
        )

    async def close(self) -> None:
        """Stop consuming (what was not applied is delivered to the next engine)."""
        await stop_ticker(self._consumer)

    async def _apply(self, msgs: Sequence[Msg]) -> None:
        """Apply a batch: one device's messages in order, the devices side by side."""
        by_device: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for msg in msgs:
            subject = self.bus.bus_subject(msg.subject)
            try:
                doc = orjson.loads(msg.data)
                key = doc["topic"].removesuffix("/ack")
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                log.error("unreadable message on %s dropped: %r", msg.subject, msg.data[:200])
                continue
            by_device.setdefault(key, []).append((subject, doc))
        await asyncio.gather(*(self._apply_device(entries) for entries in by_device.values()))
        for msg in msgs:
            await msg.ack()

    async def _apply_device(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        for subject, doc in entries:
            if subject.startswith(SENT + "."):
                await self.service.sent(
                    str(doc.get("id")), channel=self.name, source="channel:mqtt"
                )
            elif subject.startswith(ANSWER + "."):
                payload = str(doc.get("payload", "")).encode()
                await apply_ack(self.service, self.root, doc["topic"], payload)
