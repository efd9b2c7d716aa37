"""The engine seen from an API process when it runs in the engine worker (``engine =
"worker"``): stand-ins with the methods the routers call.

Commands are read from the shared command log as the leading engine wrote it (an
unstarted :class:`CommandService`: no timers, no listening); what changes them —
submitting, a device's answer, a callback registered — is a call to the leader
(``engine/rpc.py``). Alarms, rules and modes live in the leader's memory: every
use is a call (:class:`RemoteAlarms`, :class:`RemoteRules`, :class:`RemoteModes`),
except what never changes (mode definitions) and what the API computes itself
(a rule's dry run over history). Their methods have the services' names; those
that are synchronous in the services are coroutines here, and the routers await
them through ``api.deps.resolved``; ``engine/engine_calls.py`` is the leader's side.
Arguments and results travel as JSON: alarms as their fields, rules as their
definition (compiled again here), a caller's visibility as its grants.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from citypilot.broker import Broker
from citypilot.engine.alarm_model import Alarm
from citypilot.engine.command_model import Command
from citypilot.engine.commands import CommandService, DeviceAnswer
from citypilot.engine.modes import ModeService
from citypilot.engine.rpc import MODE_CALL_TIMEOUT_S, RpcClient
from citypilot.engine.rule_model import Rule, compile_rule
from citypilot.model.types import TypeRegistry
from citypilot.security.scopes import Visibility
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


class RemoteCallbacks:
    """HTTP command callbacks, registered with the leading engine worker."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def register(self, target: str, url: str | None) -> None:
        """The engine's ``HttpCallbackChannel.register``."""
        await self.rpc.call("callbacks_register", target=target, url=url)


def grants_of(visible: Visibility | None) -> list[dict[str, Any]] | None:
    """A caller's visibility as a call carries it: its grants (None: no restriction)."""
    return None if visible is None else [asdict(g) for g in visible.grants]


class RemoteAlarms:
    """The leader's :class:`~citypilot.engine.alarms.AlarmService`."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc
        self.clock = time.time

    async def _alarm(self, method: str, **kwargs: Any) -> Alarm:
        return Alarm(**await self.rpc.call(method, **kwargs))

    async def get(self, alarm_id: str) -> Alarm:
        """The alarm (ResourceNotFound otherwise)."""
        return await self._alarm("alarms_get", alarm_id=alarm_id)

    async def search(
        self, *, visible: Visibility | None = None, **criteria: Any
    ) -> tuple[list[Alarm], int]:
        """A page of alarms, newest first, and how many match."""
        criteria = {k: list(v) if isinstance(v, tuple) else v for k, v in criteria.items()}
        found = await self.rpc.call("alarms_search", visible=grants_of(visible), **criteria)
        return [Alarm(**doc) for doc in found["alarms"]], found["total"]

    async def figures(
        self, operators: int = 1, window_s: float = 86400.0, visible: Visibility | None = None
    ) -> dict[str, Any]:
        """The ISA-18.2 figures of the alarms ``visible`` covers."""
        return await self.rpc.call(
            "alarms_figures", operators=operators, window_s=window_s, visible=grants_of(visible)
        )

    async def raise_alarm(
        self, rule: str, source: str, severity: str, message: str, *, by: str | None = None
    ) -> Alarm:
        """Raise an alarm (or count a repeat of the open one)."""
        return await self._alarm(
            "alarms_raise", rule=rule, source=source, severity=severity, message=message, by=by
        )

    async def acknowledge(self, alarm_id: str, by: str, note: str = "") -> Alarm:
        """Acknowledge an alarm (idempotent)."""
        return await self._alarm("alarms_acknowledge", alarm_id=alarm_id, by=by, note=note)

    async def shelve(self, alarm_id: str, by: str, duration_s: float, reason: str) -> Alarm:
        """Shelve an open alarm for ``duration_s``."""
        return await self._alarm(
            "alarms_shelve", alarm_id=alarm_id, by=by, duration_s=duration_s, reason=reason
        )

    async def unshelve(self, alarm_id: str, by: str) -> Alarm:
        """End an alarm's shelving now."""
        return await self._alarm("alarms_unshelve", alarm_id=alarm_id, by=by)

    async def comment(self, alarm_id: str, by: str, text: str) -> Alarm:
        """Add an operator's comment."""
        return await self._alarm("alarms_comment", alarm_id=alarm_id, by=by, text=text)


class RemoteRules:
    """The leader's :class:`~citypilot.engine.rules.RuleEngine`."""

    def __init__(self, rpc: RpcClient, registry: TypeRegistry) -> None:
        self.rpc = rpc
        self.registry = registry

    async def _rule(self, method: str, **kwargs: Any) -> Rule:
        return compile_rule(await self.rpc.call(method, **kwargs), self.registry)

    async def listing(self) -> dict[str, Any]:
        """Every rule as the API shows it, and the load errors."""
        return await self.rpc.call("rules_listing")

    async def view(self, rule: Rule) -> dict[str, Any]:
        """A rule as the API shows it (with what it did and its errors)."""
        return await self.rpc.call("rules_view", rule_id=rule.id)

    async def get(self, rule_id: str) -> Rule:
        """One rule (ResourceNotFound otherwise)."""
        return await self._rule("rules_get", rule_id=rule_id)

    async def create(self, doc: Any, by: str) -> Rule:
        """Add a rule."""
        return await self._rule("rules_create", doc=doc, by=by)

    async def replace(self, rule_id: str, doc: Any, by: str) -> Rule:
        """Replace a rule's definition."""
        return await self._rule("rules_replace", rule_id=rule_id, doc=doc, by=by)

    async def delete(self, rule_id: str, by: str) -> None:
        """Remove a rule."""
        await self.rpc.call("rules_delete", rule_id=rule_id, by=by)

    async def enable(self, rule_id: str, by: str) -> Rule:
        """Enable a rule."""
        return await self._rule("rules_enable", rule_id=rule_id, by=by)

    async def disable(self, rule_id: str, by: str) -> Rule:
        """Disable a rule."""
        return await self._rule("rules_disable", rule_id=rule_id, by=by)


class RemoteModes:
    """The leader's :class:`~citypilot.engine.modes.ModeService`; the definitions, which
    never change while the city runs, are read here."""

    def __init__(self, rpc: RpcClient, registry: TypeRegistry) -> None:
        from citypilot.engine.mode_model import load_modes

        self.rpc = rpc
        self.definitions = load_modes(registry)

    definition = ModeService.definition

    async def level(self) -> int:
        """The city's operational level."""
        return await self.rpc.call("modes_level")

    async def active(self) -> list[dict[str, Any]]:
        """The activations holding the city now."""
        return await self.rpc.call("modes_active")

    async def scope_of(self, name: str) -> dict[str, Any] | None:
        """The scope the mode is on for (None when it is not on)."""
        return await self.rpc.call("modes_scope_of", name=name)

    async def last(self, name: str) -> dict[str, Any] | None:
        """The mode's open activation, else its latest one."""
        return await self.rpc.call("modes_last", name=name)

    async def history(self, limit: int) -> list[dict[str, Any]]:
        """The latest activations, newest first."""
        return await self.rpc.call("modes_history", limit=limit)

    async def enter(
        self, name: str, scope_doc: Any, reason: Any, by: str, client: str | None = None
    ) -> dict[str, Any]:
        """Enter the mode for a scope."""
        return await self.rpc.call(
            "modes_enter",
            timeout_s=MODE_CALL_TIMEOUT_S,
            name=name,
            scope_doc=scope_doc,
            reason=reason,
            by=by,
            client=client,
        )

    async def leave(
        self, name: str, reason: Any, by: str, client: str | None = None
    ) -> dict[str, Any]:
        """Leave the mode, restoring each device."""
        return await self.rpc.call(
            "modes_leave",
            timeout_s=MODE_CALL_TIMEOUT_S,
            name=name,
            reason=reason,
            by=by,
            client=client,
        )
