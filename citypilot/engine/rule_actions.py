"""What a rule does when it fires: alarms, commands, webhooks, incidents, city modes.

Every action goes through the service that owns it: alarms through
``engine/alarms.py``, commands through ``engine/commands.py`` (so they are checked,
kept, delivered and confirmed like an operator's), incidents through
``ops/incidents.py``, city modes through a pluggable :data:`ModeHook` (the modes
module installs its own; until then a mode action fails visibly with "modes not
available"). :func:`describe` says what an action would do, for the dry run.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from citypilot.engine.rule_eval import FIRE, RESET, EvaluationError, Firing, run_expression
from citypilot.engine.rule_model import Action, Rule
from citypilot.model.timeutil import format_instant
from citypilot.store.base import EntityQuery

#: ``hook(action, mode, scope, reason, by)``: enter (``action="enter"``) or leave a city
#: mode; ``scope`` as the rule gives it (``{}`` for the whole metropole).
ModeHook = Callable[[str, str, dict[str, Any], str, str], Awaitable[Any]]
MAX_SELECTED = 5000
WEBHOOK_TIMEOUT_S = 5.0
_FIELD = re.compile(r"\{(\w+)\}")


class ActionFailed(Exception):
    """An action could not be carried out (kept on the rule with the entity and reason)."""


async def modes_not_available(action: str, mode: str, scope: dict, reason: str, by: str) -> Any:
    """The mode hook until the city modes module installs its own."""
    raise ActionFailed(f"cannot {action} mode {mode!r}: modes not available")


def render(template: str, rule: Rule, firing: Firing) -> str:
    """A message with ``{entity}``, ``{value}``, ``{attribute}``, ``{rule}`` filled in
    (any other ``{name}`` is left as written)."""
    values = {
        "entity": firing.entity or "",
        "value": "" if firing.value is None else _short(firing.value),
        "attribute": firing.attribute or "",
        "rule": rule.id,
    }
    return _FIELD.sub(lambda m: values.get(m[1], m[0]), template)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)[:200]


def applies(action: Action, firing: Firing) -> bool:
    """Whether the action runs on this firing (alarms both raise and clear)."""
    return action.kind == "alarm" or action.on == firing.event


def describe(rule: Rule, action: Action, firing: Firing) -> dict[str, Any]:
    """What the action would do for this firing (the dry run's answer)."""
    at = format_instant(firing.observed_at)
    spec = action.spec
    if action.kind == "alarm":
        if firing.event == FIRE:
            return {
                "at": at,
                "action": "raise",
                "entity": firing.entity,
                "severity": spec["severity"],
                "message": render(spec["message"], rule, firing),
                "value": firing.value,
            }
        return {"at": at, "action": "clear", "entity": firing.entity}
    out: dict[str, Any] = {"at": at, "action": action.kind, "entity": firing.entity}
    if action.kind == "command":
        out.update(command=spec["command"], args=spec["args"], target=spec["target"])
    elif action.kind == "webhook":
        out["url"] = spec["url"]
    elif action.kind == "incident":
        out.update(incidentType=spec["incidentType"], severity=spec.get("severity", "moderate"))
    elif action.kind == "mode":
        out.update(mode=spec.get("enter") or spec.get("leave"), enter="enter" in spec)
    return out


class ActionRunner:
    """Carries out rules' actions through the services of the running city."""

    def __init__(
        self,
        broker: Any,
        alarms: Any,
        commands: Any,
        incidents: Any = None,
        mode_hook: ModeHook = modes_not_available,
    ) -> None:
        self.broker = broker
        self.alarms = alarms
        self.commands = commands
        self.incidents = incidents
        self.mode_hook = mode_hook
        self._http: Any = None
        self._opened: dict[tuple[str, str | None], str] = {}  # (rule, entity) -> incident id

    async def close(self) -> None:
        """Close the webhook client."""
        if self._http is not None:
            await self._http.aclose()

    async def run(self, rule: Rule, action: Action, firing: Firing) -> dict[str, Any]:
        """Carry out one action; ActionFailed (or a service's error) when it cannot."""
        by = f"rule:{rule.id}"
        spec = action.spec
        if action.kind == "alarm":
            if self.alarms is None:
                raise ActionFailed("the alarm service is not running")
            if firing.event == FIRE:
                alarm = await self.alarms.raise_alarm(
                    rule.id,
                    firing.entity,
                    spec["severity"],
                    render(spec["message"], rule, firing),
                    value=firing.value,
                    observed_at=firing.observed_at,
                )
                return {"alarm": alarm.id}
            cleared = await self.alarms.clear_alarm(rule.id, firing.entity)
            return {"alarm": None if cleared is None else cleared.id}
        if action.kind == "command":
            return {"commands": await self._command(rule, action, firing, by)}
        if action.kind == "webhook":
            return await self._webhook(rule, spec["url"], firing)
        if action.kind == "incident":
            return await self._incident(rule, spec, firing, by)
        name = spec.get("enter") or spec.get("leave")
        verb = "enter" if "enter" in spec else "leave"
        reason = spec.get("reason") or f"rule {rule.id} on {firing.entity or 'schedule'}"
        result = await self.mode_hook(verb, name, dict(spec.get("scope", {})), reason, by)
        return {"mode": name, verb: True, "result": result}

    async def targets(self, action: Action, firing: Firing) -> list[str]:
        """The entities a command action goes to: the rule's entity, or a selection."""
        target = action.spec["target"]
        if target == "self":
            return [firing.entity] if firing.entity else []
        found, _ = await self.broker.store.query_entities(
            EntityQuery(types=(target["type"],), limit=MAX_SELECTED + 1)
        )
        zone = target.get("zone")
        area = None
        if isinstance(zone, dict):
            from shapely.geometry import shape
            from shapely.prepared import prep

            area = prep(shape(zone))
        chosen = []
        for entity in found:
            values = {"id": entity.id, "type": entity.type}
            values.update({n: a.value for n, a in entity.attrs.items()})
            if isinstance(zone, str) and values.get("refZone") != zone:
                continue
            if area is not None and not _inside(area, values.get("location")):
                continue
            if action.select is not None:
                try:
                    if not run_expression(action.select, None, values, firing.observed_at):
                        continue
                except EvaluationError as exc:
                    raise ActionFailed(f"target.condition on {entity.id}: {exc}") from None
            chosen.append(entity.id)
        if len(chosen) > MAX_SELECTED:
            raise ActionFailed(f"the selection matches more than {MAX_SELECTED} entities")
        return chosen

    async def _command(self, rule: Rule, action: Action, firing: Firing, by: str) -> list[str]:
        if self.commands is None:
            raise ActionFailed("the command service is not running")
        spec = action.spec
        reason = spec.get("reason") or f"rule {rule.id} ({firing.event} on {firing.entity})"
        stamp = format_instant(firing.observed_at)
        sent = []
        for target in await self.targets(action, firing):
            cmd = await self.commands.submit(
                target,
                spec["command"],
                spec["args"],
                reason=reason[:500],
                requested_by=by,
                # the same firing never commands a device twice (a replay, a retry)
                idempotency_key=f"{by}:v{rule.version}:{firing.entity}:{stamp}:{target}"[:200],
            )
            sent.append(cmd.id)
        return sent

    async def _webhook(self, rule: Rule, url: str, firing: Firing) -> dict[str, Any]:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        body = {
            "rule": rule.id,
            "version": rule.version,
            "event": firing.event,
            "entity": firing.entity,
            "value": firing.value,
            "observedAt": format_instant(firing.observed_at),
        }
        try:
            r = await self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise ActionFailed(f"webhook {url[:100]}: {type(exc).__name__}: {exc}") from None
        if r.status_code >= 400:
            raise ActionFailed(f"webhook {url[:100]} answered {r.status_code}")
        return {"webhook": r.status_code}

    async def _incident(
        self, rule: Rule, spec: dict[str, Any], firing: Firing, by: str
    ) -> dict[str, Any]:
        from citypilot.ops.incidents import NewIncident, point_of

        if self.incidents is None:
            raise ActionFailed("incidents are not available")
        key = (rule.id, firing.entity)
        if firing.event == RESET:
            self._opened.pop(key, None)
            return {}
        if key in self._opened:  # one incident while the condition lasts
            return {"incident": self._opened[key]}
        entity = await self.broker.store.get_entity(firing.entity)
        point = None if entity is None else point_of(entity)
        if point is None:
            raise ActionFailed(f"{firing.entity} has no location to open an incident at")
        links: dict[str, list[str]] = {"rules": [rule.id]}
        if self.alarms is not None:
            alarm = self.alarms.open_alarm(rule.id, firing.entity)
            if alarm is not None:
                links["alarms"] = [alarm.id]
        new = NewIncident(
            spec["incidentType"],
            spec.get("severity", "moderate"),
            point[0],
            point[1],
            spec.get("description") or f"Opened by rule {rule.id} on {firing.entity}",
            links=links,
        )
        opened = await self.incidents.open(new, by, source="rule")
        self._opened[key] = opened.id
        return {"incident": opened.id}


def _inside(area: Any, location: Any) -> bool:
    if not isinstance(location, dict) or location.get("type") != "Point":
        return False
    from shapely.geometry import Point

    lon, lat = location["coordinates"][:2]
    return bool(area.contains(Point(lon, lat)))
