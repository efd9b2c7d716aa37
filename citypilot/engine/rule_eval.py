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

Evaluation is synchronous and quick (it runs on the bus's path); what the rule then
does runs elsewhere (``engine/rule_actions.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def run_expression(
    expr: Expression, change: Mapping[str, Any] | None, entity: Mapping[str, Any], now: float
) -> bool:
    """Evaluate a condition over the change and the entity's state; EvaluationError
    when it fails or gives anything but true or false."""
    if expr.entity_attrs is None:
        seen: Mapping[str, Any] = entity
    else:
        seen = {n: entity[n] for n in expr.entity_attrs if n in entity}
        seen.update(id=entity.get("id"), type=entity.get("type"))  # type: ignore[attr-defined]
    context: dict[str, Any] = {"entity": seen, "now": now}
    if change is not None:
        attrs = change["attrs"]
        if expr.change_attrs is not None:
            attrs = {n: attrs[n] for n in expr.change_attrs if n in attrs}
        context["change"] = {
            "id": change["id"],
            "type": change["type"],
            "observedAt": change["observedAtS"],
            "attrs": attrs,
        }
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
        self, change: Mapping[str, Any], entity: Mapping[str, Any], now: float
    ) -> Firing | None:
        """What this change of an entity makes the rule do, if anything."""
        rule, spec, kind = self.rule, self.rule.trigger, self.kind
        entity_id, at = change["id"], change["observedAtS"]
        attrs = change["attrs"]
        if kind == "silent":
            st = self._state(entity_id)
            st.since = at
            if st.active:
                st.active = False
                return Firing(rule.id, entity_id, RESET, None, at)
            return None
        holds = (
            True if rule.condition is None else run_expression(rule.condition, change, entity, now)
        )
        if kind == "change":
            first = next((attrs[a] for a in rule.attributes if a in attrs), None)
            if holds:
                self._state(entity_id).active = True
                return Firing(rule.id, entity_id, FIRE, first, at, _first(rule, attrs))
            st = self.states.get(entity_id)
            if st is not None and st.active:
                st.active = False
                return Firing(rule.id, entity_id, RESET, first, at, _first(rule, attrs))
            return None
        if kind == "threshold":
            name = spec["attribute"]
            value = attrs.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            st = self._state(entity_id)
            if "above" in spec:
                crossed, back = value > spec["above"], value < spec["clearBelow"]
            else:
                crossed, back = value < spec["below"], value > spec["clearAbove"]
            if not st.active and crossed and holds:
                st.active = True
                return Firing(rule.id, entity_id, FIRE, value, at, name)
            if st.active and back:
                st.active = False
                return Firing(rule.id, entity_id, RESET, value, at, name)
            return None
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
            waited = now - st.since
            if waited >= span:
                st.active = True
                out.append(Firing(rule.id, entity_id, FIRE, waited, now))
        return out


def _first(rule: Rule, attrs: Mapping[str, Any]) -> str | None:
    return next((a for a in rule.attributes if a in attrs), None)
