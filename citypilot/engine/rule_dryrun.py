"""The dry run: replay recorded history through a rule and say what it would have done.

The rule (saved or not) gets a fresh trigger; the history of the entities of its
type between ``from`` and ``to`` is read from the store (each entity's values as
they stood at ``from`` first, so conditions on the entity's state see them), then
replayed in time order, with the passing of time (held durations, silent devices,
cron times) stepped between reports. Nothing is written and no action runs: the
answer lists what the rule would have raised, cleared, commanded, called or opened,
with times, and the evaluation errors it would have met.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from citypilot.engine.rule_actions import applies, describe
from citypilot.engine.rule_eval import FIRE, EvaluationError, Firing, Trigger
from citypilot.engine.rule_model import Rule
from citypilot.model.errors import BadRequestData
from citypilot.model.observation import DEFAULT_DATASET
from citypilot.model.timeutil import format_instant
from citypilot.store.base import EntityQuery, TemporalQuery

MAX_SPAN_S = 31 * 86400.0
MAX_ENTITIES = 5000
MAX_INSTANCES = 500_000
MAX_OUTCOMES = 1000
MAX_ERRORS = 100
MAX_CRON_TIMES = 10_000
CHUNK = 200
#: Rules see what devices report: the attributes' default instances.
DEVICE = (DEFAULT_DATASET,)


@dataclass
class DryRun:
    """What a replay found."""

    entities: int = 0
    reports: int = 0
    truncated: bool = False
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    summary: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    last_errors: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, rule: Rule, start: float, end: float) -> dict[str, Any]:
        """The dry run's answer."""
        return {
            "rule": rule.id,
            "version": rule.version,
            "from": format_instant(start),
            "to": format_instant(end),
            "entities": self.entities,
            "reports": self.reports,
            "truncated": self.truncated,
            "summary": {k: self.summary[k] for k in sorted(self.summary)},
            "outcomes": self.outcomes[:MAX_OUTCOMES],
            "errors": {"count": self.errors, "last": self.last_errors},
        }


def _watched(rule: Rule) -> tuple[str, ...] | None:
    """The attributes the replay needs (None: all of them)."""
    names = set(rule.attributes)
    if rule.kind == "threshold":
        names.add(rule.trigger["attribute"])
    if rule.kind == "zone":
        names.add("location")
    needs = rule.needs
    if needs is None:
        return None
    names.update(needs)
    if rule.condition is not None:
        if rule.condition.entity_attrs is None or rule.condition.change_attrs is None:
            return None
        names.update(rule.condition.entity_attrs, rule.condition.change_attrs)
    if rule.kind in ("silent", "change") and not rule.attributes:
        return None
    return tuple(sorted(names)) or None


async def dry_run(
    store: Any, rule: Rule, start: float, end: float, entity_ids: list[str] | None = None
) -> DryRun:
    """Replay ``[start, end)`` through ``rule``; BadRequestData for a span or a selection
    too large to replay."""
    if not start < end:
        raise BadRequestData("to must come after from", "to")
    if end - start > MAX_SPAN_S:
        raise BadRequestData("a dry run replays at most 31 days", "to")
    result = DryRun()
    trigger = Trigger(rule)
    trigger.floor = start
    if rule.kind == "cron":
        _replay_cron(rule, start, end, result)
        return result
    ids = entity_ids
    if ids is None:
        found, _ = await store.query_entities(
            EntityQuery(types=(rule.type,), limit=MAX_ENTITIES + 1)
        )
        ids = [e.id for e in found]
    if len(ids) > MAX_ENTITIES:
        raise BadRequestData(
            f"{rule.type} has more than {MAX_ENTITIES} entities: name some in entities",
            "entities",
        )
    result.entities = len(ids)
    attrs = _watched(rule)
    states: dict[str, dict[str, Any]] = {i: {"id": i, "type": rule.type} for i in ids}
    reports: dict[tuple[float, str], dict[str, Any]] = {}
    budget = MAX_INSTANCES
    for k in range(0, len(ids), CHUNK):
        chunk = tuple(ids[k : k + CHUNK])
        before = await store.temporal(
            TemporalQuery(chunk, attrs, None, start, last_n=1, datasets=DEVICE)
        )
        for entity_id, series in before.items():
            for name, by_dataset in series.items():
                points = by_dataset[DEFAULT_DATASET]
                if points:
                    states[entity_id][name] = points[-1][1]  # type: ignore[index]
        rows = await store.temporal(
            TemporalQuery(chunk, attrs, start, end, limit=budget, datasets=DEVICE)
        )
        for entity_id, series in rows.items():
            for name, by_dataset in series.items():
                points = by_dataset[DEFAULT_DATASET]
                if len(points) > budget:
                    result.truncated = True
                for at, value in points[:budget]:  # type: ignore[misc]
                    report = reports.get((at, entity_id))
                    if report is None:
                        report = reports[(at, entity_id)] = {
                            "id": entity_id,
                            "type": rule.type,
                            "attrs": {},
                            "observedAtS": at,
                            "lon": None,
                            "lat": None,
                        }
                    report["attrs"][name] = value
                    if name == "location" and isinstance(value, dict):
                        coords = value.get("coordinates") or [None, None]
                        report["lon"], report["lat"] = coords[0], coords[1]
                budget -= min(len(points), budget)
    ordered = [reports[key] for key in sorted(reports)]
    result.reports = len(ordered)
    for report in ordered:
        _step_time(trigger, rule, report["observedAtS"], result)
        state = states[report["id"]]
        state.update(report["attrs"])
        try:
            firing = trigger.on_change(report, state, report["observedAtS"])
        except EvaluationError as exc:
            _error(result, report["id"], report["observedAtS"], str(exc))
            continue
        if firing is not None:
            _record(rule, firing, result)
    _step_time(trigger, rule, end, result)
    return result


def _step_time(trigger: Trigger, rule: Rule, until: float, result: DryRun) -> None:
    """Fire what the passing of time made due up to ``until``, at the instant it fell due."""
    while True:
        due = trigger.next_due()
        if due is None or due > until:
            return
        for firing in trigger.on_time(due):
            _record(rule, firing, result)


def _replay_cron(rule: Rule, start: float, end: float, result: DryRun) -> None:
    from datetime import UTC, datetime

    from croniter import croniter

    times = croniter(rule.trigger["schedule"], datetime.fromtimestamp(start, UTC))
    for _ in range(MAX_CRON_TIMES):
        at = times.get_next(float)
        if at >= end:
            return
        _record(rule, Firing(rule.id, None, FIRE, None, at), result)
    result.truncated = True


def _record(rule: Rule, firing: Firing, result: DryRun) -> None:
    for action in rule.actions:
        if not applies(action, firing):
            continue
        outcome = describe(rule, action, firing)
        result.summary[outcome["action"]] += 1
        if len(result.outcomes) < MAX_OUTCOMES:
            result.outcomes.append(outcome)
        else:
            result.truncated = True


def _error(result: DryRun, entity: str, at: float, reason: str) -> None:
    result.errors += 1
    if len(result.last_errors) < MAX_ERRORS:
        result.last_errors.append({"at": format_instant(at), "entity": entity, "reason": reason})
