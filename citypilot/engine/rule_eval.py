"""Evaluating one rule's trigger: on each change of an entity, and as time passes.

Each trigger keeps a small state per entity and answers *fire* when its condition
starts (or, for a plain change trigger, each time it holds) and *reset* when it
ends, so that an alarm raised on *fire* clears on *reset*:

* ``change``: fires on every matching change whose condition holds (repeats are
  counted on the alarm); resets on the first that no longer holds.
* ``threshold``: fires when the attribute goes above ``above`` (or below
  ``below``); resets only once it is back under ``clearBelow`` (above
  ``clearAbove``): hysteresis, so a value wavering at the line does not chatter.
* ``held``: fires once the condition has held for ``for`` seconds, measured on the
  devices' ``observedAt`` (and, between reports, on the clock); resets when it ends.
* ``zone``: fires when the entity's location enters (or leaves) the area.
* ``silent``: fires once no report came for ``after`` seconds; resets on the next.
* ``cron``: fires at each time of its schedule (no entity).
* ``command``: fires when a command to the entity ends ``timed_out`` (or another of
  ``states``), with ``diverged`` only when the device reports something else;
  resets when a later command is confirmed.

Evaluation is synchronous and quick (it runs on the bus's path); what the rule then
does runs elsewhere (``engine/rule_actions.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cel

from citypilot.engine.rule_model import Expression, Rule

FIRE = "fire"
RESET = "reset"


class EvaluationError(Exception):
    """A condition failed on an entity (kept on the rule with the entity and reason)."""


@dataclass(frozen=True)
class Firing:
    """A rule firing or resetting for an entity, with the value and instant that did it."""

    rule: str
    entity: str | None
    event: str
    value: Any
    observed_at: float
    attribute: str | None = None


@dataclass
class EntityState:
    """What a trigger remembers of one entity."""

    active: bool = False
    since: float | None = None  # held: when the condition started to hold
    inside: bool | None = None  # zone: whether the entity was inside the area


def _differs(want: Any, got: Any) -> bool:
    """Whether a reported value is surely not the guard's literal (same kind, other value)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(want, bool) and isinstance(got, bool) and want is not got
    if isinstance(want, str):
        return isinstance(got, str) and got != want
    return isinstance(got, int | float) and float(got) != want


def run_expression(
    expr: Expression,
    change: Mapping[str, Any] | None,
    entity: Mapping[str, Any],
    now: float,
    shared: dict[str, Any] | None = None,
) -> bool:
    """Evaluate a condition over the change and the entity's state; EvaluationError
    when it fails or gives anything but true or false.

    ``shared`` carries the CEL context between the rules tried on one change: the
    change and the entity are converted to CEL values once, not once per rule.
    """
    if expr.guard is not None and change is not None:
        name, want = expr.guard
        attrs = change["attrs"]
        if name in attrs and _differs(want, attrs[name]):
            return False
    if shared is None:
        shared = {}
    context = shared.get("context")
    if context is None:
        values: dict[str, Any] = {"now": now}
        if change is not None:
            values["change"] = {
                "id": change["id"],
                "type": change["type"],
                "observedAt": change["observedAtS"],
                "attrs": change["attrs"],
            }
        context = shared["context"] = cel.Context(values)
    if expr.uses_entity and not shared.get("entity"):
        context.add_variable("entity", dict(entity))
        shared["entity"] = True
    try:
        result = expr.program.execute(context)
    except KeyError as exc:
        raise EvaluationError(f"no attribute {exc.args[0]!r} (use has() to test for it)") from None
    except Exception as exc:
        raise EvaluationError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(result, bool):
        raise EvaluationError(f"the condition gave {str(result)[:60]!r}, not true or false")
    return result


class Trigger:
    """The trigger of one rule and its per-entity state."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.kind = rule.kind
        self.states: dict[str, EntityState] = {}
        #: silent: no device counts as silent for longer than since this instant (the
        #: engine's start, the dry run's window), so history coming late is no silence
        self.floor = float("-inf")
        #: the rule's counts (set by the engine; the dry run keeps none)
        self.stats: Any = None
        spec = rule.trigger
        self._area = None
        if self.kind == "zone":
            from shapely.geometry import shape
            from shapely.prepared import prep

            self._area = prep(shape(spec["area"]))

    def _state(self, entity_id: str) -> EntityState:
        st = self.states.get(entity_id)
        if st is None:
            st = self.states[entity_id] = EntityState()
        return st

    def on_change(
        self,
        change: Mapping[str, Any],
        entity: Mapping[str, Any],
        now: float,
        shared: dict[str, Any] | None = None,
    ) -> Firing | None:
        """What this change of an entity makes the rule do, if anything (``shared``: see
        :func:`run_expression`)."""
        kind = self.kind
        if kind == "threshold":
            return self._threshold(change, entity, now, shared)
        rule, spec = self.rule, self.rule.trigger
        entity_id, at = change["id"], change["observedAtS"]
        attrs = change["attrs"]
        if kind == "silent":
            st = self._state(entity_id)
            st.since = at
            if st.active:
                st.active = False
                return Firing(rule.id, entity_id, RESET, None, at)
            return None
        holds = rule.condition is None or run_expression(
            rule.condition, change, entity, now, shared
        )
        if kind == "change":
            if holds:
                self._state(entity_id).active = True
            else:
                st = self.states.get(entity_id)
                if st is None or not st.active:
                    return None
                st.active = False
            name = _first(rule, attrs)
            value = None if name is None else attrs[name]
            return Firing(rule.id, entity_id, FIRE if holds else RESET, value, at, name)
        if kind == "held":
            st = self._state(entity_id)
            if holds:
                if st.since is None:
                    st.since = at
                if not st.active and at - st.since >= spec["for"]:
                    st.active = True
                    return Firing(rule.id, entity_id, FIRE, at - st.since, at)
                return None
            st.since = None
            if st.active:
                st.active = False
                return Firing(rule.id, entity_id, RESET, None, at)
            return None
        if kind == "zone":
            lon, lat = change.get("lon"), change.get("lat")
            if "location" not in attrs or lon is None or lat is None:
                return None
            from shapely.geometry import Point

            inside = bool(self._area.contains(Point(lon, lat)))  # type: ignore[union-attr]
            st = self._state(entity_id)
            before, st.inside = st.inside, inside
            went = (inside and not before) if spec["on"] == "enter" else (before and not inside)
            came_back = (
                (before and not inside) if spec["on"] == "enter" else (inside and before is False)
            )
            point = {"type": "Point", "coordinates": [lon, lat]}
            if went and holds and not st.active:
                st.active = True
                return Firing(rule.id, entity_id, FIRE, point, at, "location")
            if came_back and st.active:
                st.active = False
                return Firing(rule.id, entity_id, RESET, point, at, "location")
        return None

    def _threshold(
        self,
        change: Mapping[str, Any],
        entity: Mapping[str, Any],
        now: float,
        shared: dict[str, Any] | None,
    ) -> Firing | None:
        """The hot path: most reports cross nothing, so that costs a comparison; the
        condition is evaluated only when the value crosses the line."""
        spec = self.rule.trigger
        name = spec["attribute"]
        value = change["attrs"].get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        entity_id = change["id"]
        st = self.states.get(entity_id)
        above = "above" in spec
        if st is None or not st.active:
            level = _level(spec["above" if above else "below"], entity)
            if not (value > level if above else value < level):
                return None
            condition = self.rule.condition
            if condition is not None and not run_expression(condition, change, entity, now, shared):
                return None
            if st is None:
                st = self.states[entity_id] = EntityState()
            st.active = True
            return Firing(self.rule.id, entity_id, FIRE, value, change["observedAtS"], name)
        margin = spec["clearMargin"]
        if above:
            back = value < _level(spec["clearBelow"], entity) - margin
        else:
            back = value > _level(spec["clearAbove"], entity) + margin
        if back:
            st.active = False
            return Firing(self.rule.id, entity_id, RESET, value, change["observedAtS"], name)
        return None

    def on_command(self, command: Mapping[str, Any], at: float) -> Firing | None:
        """What a command's new state makes a ``command`` trigger do: fire when it ended
        in one of ``states`` (and, with ``diverged``, the device reports something
        else); reset when a later command of the entity is confirmed."""
        spec, entity_id, state = self.rule.trigger, command["entityId"], command["state"]
        st = self._state(entity_id)
        if state in spec["states"] and (not spec["diverged"] or command.get("diverged")):
            st.active = True
            value = {
                "command": command.get("command"),
                "state": state,
                "expected": command.get("expected"),
                "lastReported": command.get("lastReported"),
            }
            return Firing(self.rule.id, entity_id, FIRE, value, at, "command")
        if state == "confirmed" and st.active:
            st.active = False
            return Firing(self.rule.id, entity_id, RESET, None, at, "command")
        return None

    def next_due(self) -> float | None:
        """The earliest instant the passing of time makes this rule fire (held, silent)."""
        if self.kind not in ("held", "silent"):
            return None
        span = self.rule.trigger["for" if self.kind == "held" else "after"]
        due = [
            st.since + span for st in self.states.values() if st.since is not None and not st.active
        ]
        return min(due) if due else None

    def on_time(self, now: float) -> list[Firing]:
        """What the passing of time makes the rule do (held and silent triggers)."""
        rule, spec = self.rule, self.rule.trigger
        out = []
        if self.kind not in ("held", "silent"):
            return out
        span = spec["for"] if self.kind == "held" else spec["after"]
        for entity_id, st in self.states.items():
            if st.since is None or st.active:
                continue
            waited = now - max(st.since, self.floor)
            if waited >= span:
                st.active = True
                out.append(Firing(rule.id, entity_id, FIRE, waited, now))
        return out


def _level(level: float | str, entity: Mapping[str, Any]) -> float:
    """A threshold level: a number, or the entity's value of the attribute named."""
    if isinstance(level, float):
        return level
    value = entity.get(level)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationError(f"no numeric {level!r} on the entity to compare with")
    return float(value)


def _first(rule: Rule, attrs: Mapping[str, Any]) -> str | None:
    return next((a for a in rule.attributes if a in attrs), None)
