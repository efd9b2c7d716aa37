"""Device commands over MQTT: published to each device's command topic, answered on its ack topic.

* ``<root>/<Type>/<local-id>/cmd`` (QoS 1, published by CityPilot):
  ``{"id", "command", "args", "issuedAt", "deadline"}``;
* ``<root>/<Type>/<local-id>/cmd/ack`` (QoS 1, published by the device):
  ``{"id", "status": "accepted" | "rejected", "reason", "at"}`` — ``at`` is the
  device's instant of the answer (ISO 8601; default: when CityPilot receives it).

Acks arrive through the ingest adapter's own persistent subscription (``<root>/#``)
and are acknowledged to the broker once recorded, like observations. An ack that
cannot be read, or names a command never sent to that device, is a dead letter.
See docs/mqtt.md and docs/commands.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiomqtt
import orjson

from citypilot.engine.command_model import Command
from citypilot.engine.commands import CommandService, DeliveryError, DeviceAnswer, read_answer
from citypilot.ingest.mqtt import MqttIngest, client_id_for
from citypilot.model.errors import BadRequestData, CityPilotError
from citypilot.model.ids import entity_id
from citypilot.model.timeutil import format_instant

log = logging.getLogger(__name__)
CMD_SUFFIX = "/cmd"
ACK_SUFFIX = "/cmd/ack"
MAX_INFLIGHT = 256  # commands awaiting their PUBACK at once (a mode sends hundreds)


def device_topic(root: str, entity_type: str, entity: str) -> str:
    """The command topic of an entity's device: ``<root>/<Type>/<local-id>/cmd``."""
    local = entity[len(f"urn:ngsi-ld:{entity_type}:") :]
    return f"{root}/{entity_type}/{local}{CMD_SUFFIX}"


def command_topic(root: str, command: Command) -> str:
    """The command topic of the command's device."""
    return device_topic(root, command.entity_type, command.entity_id)


def command_document(command: Command) -> dict[str, Any]:
    """What a device receives on its command topic (as JSON)."""
    return {
        "id": command.id,
        "command": command.command,
        "args": command.args,
        "issuedAt": format_instant(command.created_at),
        "deadline": format_instant(command.deadline),
    }


def parse_ack(root: str, topic: str, payload: bytes) -> tuple[str, str, DeviceAnswer]:
    """(entity id, command id, answer) of an ack message; BadRequestData naming the field."""
    inner = topic[len(root) + 1 : -len(ACK_SUFFIX)].split("/")
    if not topic.startswith(root + "/") or len(inner) != 2:
        raise BadRequestData(f"topic {topic[:200]!r} is not <root>/<Type>/<id>/cmd/ack", "topic")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadRequestData(f"ack is not valid JSON: {exc}", "payload") from None
    command_id, answer = read_answer(doc, "payload")
    if command_id is None:
        raise BadRequestData("payload.id must name the command", "payload.id")
    return entity_id(*inner), command_id, answer


class MqttCommandPublisher:
    """One MQTT client publishing command messages at QoS 1 (connected on first use)."""

    def __init__(self, ingest: MqttIngest, identifier: str) -> None:
        self.ingest = ingest
        self.identifier = identifier
        self._client: aiomqtt.Client | None = None
        self._connecting = asyncio.Lock()

    async def _connected(self) -> aiomqtt.Client:
        async with self._connecting:
            if self._client is None:
                client = aiomqtt.Client(
                    self.ingest.host,
                    self.ingest.port,
                    username=self.ingest._username,
                    password=self.ingest._password,
                    identifier=self.identifier,
                    tls_context=self.ingest._tls,
                    logger=log,
                    max_inflight_messages=MAX_INFLIGHT,
                )
                try:
                    await client.__aenter__()
                except aiomqtt.MqttError as exc:
                    raise DeliveryError(f"MQTT broker unreachable: {exc}") from None
                self._client = client
            return self._client

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1; returns once the broker acknowledged it (PUBACK), else
        DeliveryError (the client reconnects on the next publish)."""
        client = await self._connected()
        try:
            await client.publish(topic, payload, qos=1)
        except aiomqtt.MqttError as exc:
            await self.close()
            raise DeliveryError(f"MQTT publish failed: {exc}") from None

    async def close(self) -> None:
        """Disconnect."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)


async def apply_ack(service: CommandService, root: str, topic: str, payload: bytes) -> None:
    """Record one ack message of ``topic`` in the command service, or keep it as a dead
    letter (source ``mqtt:<topic>``) when it cannot be read or names no command sent."""
    source = f"mqtt:{topic}"
    try:
        device, command_id, answer = parse_ack(root, topic, payload)
    except CityPilotError as exc:
        text = payload.decode("utf-8", "replace")
        await service.dead_letter(source, exc.detail, exc.field, text)
        return
    await service.acknowledge(
        command_id,
        answer,
        source=source,
        payload=payload.decode("utf-8", "replace"),
        entity_id=device,
    )


class MqttCommandChannel:
    """Publishes commands to devices' command topics and takes their acks from ingest."""

    name = "mqtt"

    def __init__(self, ingest: MqttIngest, service: CommandService) -> None:
        self.service = service
        self.root = ingest.topic_root
        identifier = client_id_for(self.root).replace("ingest", "commands")
        self.publisher = MqttCommandPublisher(ingest, identifier)
        ingest.command_acks = self.on_ack

    def reaches(self, command: Command) -> bool:
        """Any device may listen on MQTT."""
        return True

    async def deliver(self, command: Command) -> None:
        """Publish the command (QoS 1); the ack comes later on the ack topic."""
        payload = orjson.dumps(command_document(command))
        await self.publisher.publish(command_topic(self.root, command), payload)

    async def close(self) -> None:
        """Disconnect the publishing client."""
        await self.publisher.close()

    async def on_ack(self, topic: str, payload: bytes) -> None:
        """Record one ack message (called by the ingest adapter before it PUBACKs)."""
        await apply_ack(self.service, self.root, topic, payload)
