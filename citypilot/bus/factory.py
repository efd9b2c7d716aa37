"""Choosing the event bus from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citypilot.bus.base import EventBus
    from citypilot.config import Settings


def open_bus(settings: Settings, name: str = "citypilot") -> EventBus:
    """The bus the settings name (not yet started): in-process by default, or NATS JetStream."""
    if settings.bus == "nats":
        from citypilot.bus.nats import NatsBus

        return NatsBus(
            settings.nats_url,
            settings.nats_prefix,
            ack_wait_s=settings.nats_ack_wait_s,
            replicas=settings.nats_replicas,
            name=name,
        )
    from citypilot.bus.memory import MemoryBus

    return MemoryBus()
