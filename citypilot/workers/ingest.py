"""The ingest worker: MQTT messages → validate → JetStream, PUBACK once JetStream stored
them; and the engine's device commands out to MQTT, their acks back (``command_relay``)."""

from __future__ import annotations

import asyncio
import logging

from citypilot.bus.nats import NatsBus
from citypilot.config import Settings
from citypilot.ingest.mqtt import MqttIngest, client_id_for
from citypilot.model.errors import BadRequestData
from citypilot.workers.command_relay import CommandRelay
from citypilot.workers.pressure import StreamPressure
from citypilot.workers.runtime import worker_broker, worker_id

log = logging.getLogger(__name__)


async def run_ingest(settings: Settings) -> None:
    """Take the shared MQTT subscription and relay device commands until cancelled; pause
    while the stream is behind."""
    if not settings.mqtt_url:
        raise BadRequestData("the ingest worker needs mqtt_url", "mqtt_url")
    async with worker_broker(settings, "ingest", sink=True) as broker:
        bus = broker.bus
        assert isinstance(bus, NatsBus)
        pressure = StreamPressure(bus, settings.max_stream_lag, settings.max_publish_in_flight)
        pressure.start()

        def stream_pressure() -> str | None:
            return "bus_down" if not bus.connected else pressure.reason()

        root = settings.mqtt_topic_root
        client_id = f"{client_id_for(root)}-{worker_id(settings)}"[:64]
        adapter = MqttIngest(
            settings.mqtt_url,
            root,
            broker,
            client_id=client_id,
            share_group=settings.mqtt_share_group,
            max_in_flight=settings.mqtt_max_in_flight,
            pressure=stream_pressure,
            max_json_depth=settings.max_json_depth,
        )
        relay = CommandRelay(bus, adapter, client_id.replace("-ingest-", "-commands-", 1))
        await adapter.start()
        relay.start()
        try:
            await asyncio.Event().wait()
        finally:
            await relay.stop()
            await adapter.stop()
            await pressure.stop()
