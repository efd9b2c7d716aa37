"""The engine seen from an API process when it runs in the engine worker (``engine =
"worker"``): stand-ins with the methods the routers call.

Commands are read from the shared command log as the leading engine wrote it (an
unstarted :class:`CommandService`: no timers, no listening); what changes them —
submitting, a device's answer, a callback registered — is a call to the leader
(``engine/rpc.py``). :func:`engine_methods` is the leader's side of those calls.
Alarms, rules and modes are not yet served to API processes from the engine
worker: :class:`NotServedHere` answers their routes with a 503 that says so.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from citypilot.broker import Broker
from citypilot.engine.assembly import Engine
from citypilot.engine.command_model import Command
from citypilot.engine.commands import CommandService, DeviceAnswer
from citypilot.engine.rpc import Method, RpcClient
from citypilot.model.errors import CityPilotError
from citypilot.store.commands import CommandLog


class RemoteCommands(CommandService):
    """Commands read here, submitted and acknowledged by the leading engine worker."""

    def __init__(self, broker: Broker, log_: CommandLog, rpc: RpcClient) -> None:
        super().__init__(broker, log_)
        self.rpc = rpc

    async def submit(
        self,
        entity_id: str,
        command: str,
        args: dict[str, Any] | None,
        *,
        reason: str,
        requested_by: str,
        idempotency_key: str | None = None,
        deadline: float | None = None,
    ) -> Command:
        """The engine's :meth:`CommandService.submit`."""
        doc = await self.rpc.call(
            "commands_submit",
            entity_id=entity_id,
            command=command,
            args=args,
            reason=reason,
            requested_by=requested_by,
            idempotency_key=idempotency_key,
            deadline=deadline,
        )
        return Command.from_doc(doc)

    async def acknowledge(
        self,
        command_id: Any,
        answer: DeviceAnswer,
        *,
        source: str,
        payload: Any = None,
        entity_id: str | None = None,
    ) -> Command | None:
        """The engine's :meth:`CommandService.acknowledge`."""
        doc = await self.rpc.call(
            "commands_acknowledge",
            command_id=command_id,
            answer=asdict(answer),
            source=source,
            payload=payload,
            entity_id=entity_id,
        )
        return None if doc is None else Command.from_doc(doc)


class EngineElsewhere(CityPilotError):
    """A route whose engine service runs in the engine worker and is not served here."""

    status = 503
    problem = "ServiceUnavailable"
    title = "Service unavailable"


class NotServedHere:
    """An engine service that API processes do not reach with ``engine = "worker"``
    (yet): any use of it is a 503 naming it, never a crash."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise EngineElsewhere(
            f'{self.what} run in the engine worker (engine = "worker") and are not yet '
            "served by API processes; see docs/deploy.md",
            "engine",
        )


class RemoteCallbacks:
    """HTTP command callbacks, registered with the leading engine worker."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def register(self, target: str, url: str | None) -> None:
        """The engine's ``HttpCallbackChannel.register``."""
        await self.rpc.call("callbacks_register", target=target, url=url)


def engine_methods(engine: Engine) -> dict[str, Method]:
    """What the leading engine worker answers, by method name."""

    async def commands_submit(**kwargs: Any) -> dict[str, Any]:
        command = kwargs.pop("command")
        entity_id, args = kwargs.pop("entity_id"), kwargs.pop("args")
        return (await engine.commands.submit(entity_id, command, args, **kwargs)).to_doc()

    async def commands_acknowledge(**kwargs: Any) -> dict[str, Any] | None:
        answer = DeviceAnswer(**kwargs.pop("answer"))
        cmd = await engine.commands.acknowledge(kwargs.pop("command_id"), answer, **kwargs)
        return None if cmd is None else cmd.to_doc()

    async def callbacks_register(target: str, url: str | None) -> None:
        await engine.callbacks.register(target, url)

    return {
        "commands_submit": commands_submit,
        "commands_acknowledge": commands_acknowledge,
        "callbacks_register": callbacks_register,
    }
