"""Choosing the event bus from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citypilot.bus.base import EventBus
    from citypilot.config import Settings


def open_bus(settings: Settings, name: str = "citypilot", tenant: str | None = None) -> EventBus:
    """The bus the settings name (not yet started): in-process by default, or NATS JetStream.

    A tenant's data space has a bus of its own: on NATS, subjects and streams under
    ``<nats_prefix>_t_<tenant>``, shared by every process that opens the tenant.
    """
    if settings.bus == "nats":
        from citypilot.bus.nats import NatsBus

        prefix = settings.nats_prefix if tenant is None else f"{settings.nats_prefix}_t_{tenant}"
        return NatsBus(
            settings.nats_url,
            prefix,
            ack_wait_s=settings.nats_ack_wait_s,
            replicas=settings.nats_replicas,
            name=name,
        )
    from citypilot.bus.memory import MemoryBus

    return MemoryBus()
