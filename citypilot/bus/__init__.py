"""Event buses: the in-process default and, later, NATS JetStream, behind one interface."""

from citypilot.bus.base import EventBus, Handler
from citypilot.bus.memory import MemoryBus

__all__ = ["EventBus", "Handler", "MemoryBus"]
