"""The simulator as an MQTT device gateway for commands (``citypilot simulate --mqtt``).

It subscribes to ``<root>/+/+/cmd`` (QoS 1), carries out each command addressed to
a device it simulates (:func:`citypilot.twin.device_commands.carry_out`) and
publishes the device's answer on the same topic plus ``/ack`` (QoS 1):
``{"id", "status": "accepted" | "rejected", "reason", "at"}``. The device's next
report, published by :class:`~citypilot.twin.clients.MqttPublisher`, confirms it.
Commands for devices it does not simulate are left to other gateways.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from citypilot.model.timeutil import format_instant
from citypilot.twin.clients import TOPIC_PREFIX, MqttPublisher
from citypilot.twin.device_commands import carry_out, simulates
from citypilot.twin.simulator import Simulator

log = logging.getLogger("citypilot.twin.command_gateway")


class MqttCommandGateway:
    """Receives commands for the simulator's devices over MQTT and answers them."""

    def __init__(
        self,
        url: str,
        sim: Simulator,
        *,
        topic_root: str = TOPIC_PREFIX,
        first_backoff: float = 0.5,
    ) -> None:
        self.sim = sim
        self.topic_root = topic_root.strip("/")
        self._link = MqttPublisher(url, topic_root=topic_root, first_backoff=first_backoff)
        self.subscribed = asyncio.Event()
        self.answered = 0
        self.ignored = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Subscribe and answer commands until ``stop`` is set (reconnecting as needed)."""
        import aiomqtt

        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self._link.connect()
            client = self._link._client
            try:
                await client.subscribe(f"{self.topic_root}/+/+/cmd", qos=1)
                self.subscribed.set()
                receiving = asyncio.create_task(self._receive(client))
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for task in (receiving, stopping):
                    task.cancel()
                if receiving.done() and not receiving.cancelled() and receiving.exception():
                    raise receiving.exception()  # type: ignore[misc]
            except aiomqtt.MqttError as exc:
                log.warning("command gateway lost the broker (%s); reconnecting", exc)
                self.subscribed.clear()
            finally:
                await self._link.aclose()

    async def _receive(self, client: Any) -> None:
        answering: set[asyncio.Task[None]] = set()
        async for message in client.messages:
            # carried out at once, in order; the acks' PUBACKs are awaited side by side
            task = asyncio.create_task(self.answer(client, str(message.topic), message.payload))
            answering.add(task)
            task.add_done_callback(answering.discard)

    async def answer(self, client: Any, topic: str, payload: Any) -> None:
        """Carry out one command message and publish the device's answer."""
        payload = payload if isinstance(payload, bytes) else str(payload).encode()
        parts = topic.split("/")
        if len(parts) < 4:
            return
        entity = f"urn:ngsi-ld:{parts[-3]}:{parts[-2]}"
        if not simulates(self.sim, entity):
            self.ignored += 1
            return
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = None
        command_id = doc.get("id") if isinstance(doc, dict) else None
        if not isinstance(command_id, str):
            log.warning("command on %s without an id: ignored", topic)
            self.ignored += 1
            return
        accepted, reason, at = carry_out(
            self.sim, entity, str(doc.get("command")), doc.get("args", {}), command_id
        )
        ack: dict[str, Any] = {
            "id": command_id,
            "status": "accepted" if accepted else "rejected",
            "at": format_instant(at),
        }
        if reason:
            ack["reason"] = reason
        await client.publish(topic + "/ack", orjson.dumps(ack), qos=1)
        self.answered += 1
