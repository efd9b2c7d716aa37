"""The leading engine worker's side of the API processes' calls (``engine/remote.py``):
each method by name, its JSON arguments turned into the services' and its result
into JSON (alarms as their fields, rules as their definition)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from citypilot.engine.alarm_model import Alarm
from citypilot.engine.assembly import Engine
from citypilot.engine.commands import DeviceAnswer
from citypilot.engine.rpc import Method
from citypilot.engine.rule_model import Rule
from citypilot.model.types import TypeRegistry
from citypilot.security.scopes import Grant, TypePolicy, Visibility


def visibility_of(grants: list[dict[str, Any]] | None, registry: TypeRegistry) -> Visibility | None:
    """The visibility of the grants a call carries (None: no restriction)."""
    if grants is None:
        return None
    return Visibility(tuple(Grant(**g) for g in grants), TypePolicy.of(registry))


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

    registry = engine.commands.broker.registry
    alarms, rules, modes = engine.alarms, engine.rules, engine.modes

    async def alarms_search(visible: Any, **criteria: Any) -> dict[str, Any]:
        found, total = await alarms.search(visible=visibility_of(visible, registry), **criteria)
        return {"alarms": [asdict(a) for a in found], "total": total}

    async def alarms_figures(visible: Any, **kwargs: Any) -> dict[str, Any]:
        return alarms.figures(visible=visibility_of(visible, registry), **kwargs)

    def alarm(call: Callable[..., Awaitable[Alarm]]) -> Method:
        async def method(**kwargs: Any) -> dict[str, Any]:
            return asdict(await call(**kwargs))

        return method

    def rule(call: Callable[..., Awaitable[Rule]]) -> Method:
        async def method(**kwargs: Any) -> dict[str, Any]:
            return (await call(**kwargs)).doc

        return method

    async def rules_get(rule_id: str) -> dict[str, Any]:
        return rules.get(rule_id).doc

    async def rules_listing() -> dict[str, Any]:
        return rules.listing()

    async def rules_view(rule_id: str) -> dict[str, Any]:
        return rules.view(rules.get(rule_id))

    async def modes_level() -> int:
        return modes.level()

    async def modes_active() -> list[dict[str, Any]]:
        return modes.active()

    async def modes_scope_of(name: str) -> dict[str, Any] | None:
        return modes.scope_of(name)

    return {
        "alarms_get": alarm(alarms.get),
        "alarms_search": alarms_search,
        "alarms_figures": alarms_figures,
        "alarms_raise": alarm(alarms.raise_alarm),
        "alarms_acknowledge": alarm(alarms.acknowledge),
        "alarms_shelve": alarm(alarms.shelve),
        "alarms_unshelve": alarm(alarms.unshelve),
        "alarms_comment": alarm(alarms.comment),
        "rules_listing": rules_listing,
        "rules_view": rules_view,
        "rules_get": rules_get,
        "rules_create": rule(rules.create),
        "rules_replace": rule(rules.replace),
        "rules_delete": rules.delete,
        "rules_enable": rule(rules.enable),
        "rules_disable": rule(rules.disable),
        "modes_level": modes_level,
        "modes_active": modes_active,
        "modes_scope_of": modes_scope_of,
        "modes_last": modes.last,
        "modes_history": modes.history,
        "modes_enter": modes.enter,
        "modes_leave": modes.leave,
        "commands_submit": commands_submit,
        "commands_acknowledge": commands_acknowledge,
        "callbacks_register": callbacks_register,
    }
