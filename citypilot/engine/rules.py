"""The rules engine: rules as data, evaluated on every change, acting through the services.

Rules come from YAML files read at start (``rules_dirs``; a file's rule is added
to the store when no rule of its id is there yet) and from ``/api/v1/rules``; each
is kept as an entity of type ``Rule`` (both stores; it survives a restart). Rules
are indexed by entity type and attribute, so a change is tried only against the
rules that watch its type and one of its attributes.

Evaluation runs on the bus's path (``entities.changed``) and is quick; the
actions of a firing are queued and carried out in order by one task
(``engine/rule_actions.py``). Nothing fails invisibly: every evaluation or action
error is counted on its rule and kept (the newest 50) with the entity and the
reason. The loop guard stops a rule that fires more than ``loopGuard.max`` times
within ``loopGuard.within`` seconds (of the reports' ``observedAt``) on one entity (a
rule triggering itself); it
stays stopped, visibly, until it is enabled again or replaced.

City modes call :meth:`RuleEngine.enable` and :meth:`RuleEngine.disable`, and
install their hook for the ``mode`` action with :meth:`RuleEngine.set_mode_hook`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citypilot.broker import CHANGED, Broker
from citypilot.engine.commands import COMMANDS_CHANGED
from citypilot.engine.rule_actions import (
    ActionFailed,
    ActionRunner,
    ModeHook,
    applies,
    modes_not_available,
)
from citypilot.engine.rule_eval import EvaluationError, Firing, Trigger
from citypilot.engine.rule_model import Rule, RuleError, compile_rule
from citypilot.engine.timers import start_ticker, stop_ticker
from citypilot.model.errors import AlreadyExists, CityPilotError, ResourceNotFound
from citypilot.model.ids import entity_id
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.store.base import EntityQuery

log = logging.getLogger(__name__)

RULE_TYPE = "Rule"
MAX_ERRORS_KEPT = 50
MAX_RULES = 10_000


@dataclass
class RuleStats:
    """What a rule did since the server started: counts, its last errors, the loop guard."""

    evaluations: int = 0
    firings: int = 0
    errors: int = 0
    last_errors: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_ERRORS_KEPT)
    )
    stopped: dict[str, Any] | None = None
    recent: dict[str | None, deque[float]] = field(default_factory=dict)
    updated_by: str = ""
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The counts as the API shows them."""
        return {
            "evaluations": self.evaluations,
            "firings": self.firings,
            "errors": self.errors,
            "lastErrors": list(self.last_errors),
            "stopped": self.stopped,
        }


class RuleEngine:
    """Holds the rules, evaluates them on changes and as time passes, runs their actions."""

    def __init__(
        self,
        broker: Broker,
        *,
        alarms: Any = None,
        commands: Any = None,
        incidents: Any = None,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
        rule_dirs: Iterable[Path] = (),
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.tick_s = tick_s
        self.rule_dirs = tuple(rule_dirs)
        self.actions = ActionRunner(broker, alarms, commands, incidents)
        self.rules: dict[str, Rule] = {}
        self.stats: dict[str, RuleStats] = {}
        self.load_errors: list[dict[str, Any]] = []
        self._triggers: dict[str, Trigger] = {}
        self._index: dict[str, dict[str, list[Trigger]]] = {}
        self._command_triggers: list[Trigger] = []
        self._cron: dict[str, float] = {}  # rule id -> next time
        self._state: dict[str, dict[str, Any]] = {}  # entity id -> current values
        self._loaded: set[str] = set()
        self._instants: dict[str, float] = {}
        self._queue: deque[Firing] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._unlisten_all: list[Callable[[], None]] = []
        self._started = float("-inf")

    # -- life cycle ------------------------------------------------------------------
    async def start(self, *, run_timers: bool = True) -> None:
        """Read the stored rules and the rule files, listen to changes, start timers."""
        offset = 0
        while True:
            page, _ = await self.broker.store.query_entities(
                EntityQuery(types=(RULE_TYPE,), limit=1000, offset=offset)
            )
            for stored in page:
                doc = stored.attrs["definition"].value if "definition" in stored.attrs else {}
                try:
                    self._install(compile_rule(doc, self.broker.registry))
                except CityPilotError as exc:
                    self._load_error(f"store:{stored.id}", exc)
            offset += len(page)
            if len(page) < 1000:
                break
        for directory in self.rule_dirs:
            await self._load_dir(directory)
        await self._load_silent_entities()
        self._started = self.clock()
        for trigger in self._triggers.values():
            trigger.floor = self._started
        self.listen()
        self._worker = asyncio.create_task(self._run_actions(), name="rule-actions")
        if run_timers:
            self._ticker = start_ticker(self.tick_s, self.tick, "rule-timers")

    def listen(self) -> None:
        """Evaluate the changes and command transitions published on the bus."""
        self.stop_listening()
        self._unlisten_all = [
            self.broker.bus.listen(CHANGED, self._on_changed),
            self.broker.bus.listen(COMMANDS_CHANGED, self._on_commands),
        ]

    def stop_listening(self) -> None:
        """Stop evaluating what the bus publishes (the timers go on)."""
        for unlisten in self._unlisten_all:
            unlisten()
        self._unlisten_all = []

    async def stop(self) -> None:
        """Stop listening, finish the actions queued, stop the timers."""
        self.stop_listening()
        await stop_ticker(self._ticker)
        await self.settle()
        await stop_ticker(self._worker)
        await self.actions.close()

    async def settle(self) -> None:
        """Wait until every queued action has run."""
        while self._queue or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    async def _load_dir(self, directory: Path) -> None:
        import yaml

        for path in sorted(directory.glob("*.y*ml")):
            where = f"file:{path.name}"
            try:
                docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                self.load_errors.append(
                    {
                        "source": where,
                        "detail": str(getattr(exc, "problem", exc)),
                        "position": None
                        if mark is None
                        else {"line": mark.line + 1, "column": mark.column + 1},
                    }
                )
                continue
            for doc in docs:
                for item in doc if isinstance(doc, list) else [doc]:
                    try:
                        rule = compile_rule(item, self.broker.registry)
                        if rule.id not in self.rules:
                            await self._persist(rule, where)
                            self._install(rule, where)
                    except CityPilotError as exc:
                        self._load_error(where, exc)

    def _load_error(self, source: str, exc: CityPilotError) -> None:
        entry = {"source": source, "detail": exc.detail, "field": exc.field, **exc.extra}
        self.load_errors.append(entry)
        log.warning("rule not loaded from %s: %s", source, exc.detail)

    async def _load_silent_entities(self) -> None:
        """Silent triggers start from what the store last heard of each entity."""
        for rule_id, trigger in self._triggers.items():
            if trigger.kind == "silent" and not trigger.states:
                await self._seed_silent(self.rules[rule_id], trigger)

    async def _seed_silent(self, rule: Rule, trigger: Trigger) -> None:
        offset = 0
        while True:
            page, _ = await self.broker.store.query_entities(
                EntityQuery(types=(rule.type,), limit=1000, offset=offset)  # type: ignore[arg-type]
            )
            for entity in page:
                heard = [a.observed_at for a in entity.attrs.values() if a.observed_at is not None]
                last = max(heard) if heard else entity.modified_at
                if last is not None:
                    trigger._state(entity.id).since = last
            offset += len(page)
            if len(page) < 1000 or offset >= 100_000:
                break

    # -- the rules themselves ------------------------------------------------------------
    def _install(self, rule: Rule, by: str = "") -> None:
        self.rules[rule.id] = rule
        stats = self.stats.setdefault(rule.id, RuleStats())
        stats.stopped = None
        stats.recent.clear()
        if by:
            stats.updated_by, stats.updated_at = by, self.clock()
        trigger = self._triggers[rule.id] = Trigger(rule)
        trigger.floor = self._started
        trigger.stats = stats
        self._cron.pop(rule.id, None)
        if rule.kind == "cron":
            self._cron[rule.id] = _next_cron(rule.trigger["schedule"], self.clock())
        self._reindex()

    def _on_commands(self, subject: str, payload: dict[str, Any]) -> None:
        """Command transitions, for the rules with a ``command`` trigger."""
        now = self.clock()
        for trigger in self._command_triggers:
            stats = self.stats[trigger.rule.id]
            if stats.stopped is not None:
                continue
            for command in payload["commands"]:
                if command.get("entityType") != trigger.rule.type:
                    continue
                stats.evaluations += 1
                firing = trigger.on_command(command, now)
                if firing is not None:
                    self._fired(firing)

    def _reindex(self) -> None:
        index: dict[str, dict[str, list[Trigger]]] = {}
        for rule_id, trigger in self._triggers.items():
            rule = self.rules[rule_id]
            if rule.type is None or not rule.enabled or rule.kind == "command":
                continue
            by_attr = index.setdefault(rule.type, {})
            keys = rule.attributes or ("*",)
            if rule.kind == "zone":
                keys = ("location",)
            elif rule.kind == "silent":
                keys = ("*",)
            for key in keys:
                by_attr.setdefault(key, []).append(trigger)
        self._index = index
        self._command_triggers = [
            t for t in self._triggers.values() if t.kind == "command" and t.rule.enabled
        ]

    async def _persist(self, rule: Rule, by: str) -> None:
        now = self.clock()
        doc = {
            "definition": {"type": "Property", "value": rule.doc},
            "version": {"type": "Property", "value": rule.version},
            "enabled": {"type": "Property", "value": rule.enabled},
            "owner": {"type": "Property", "value": rule.owner},
            "department": {"type": "Property", "value": rule.owner},
            "updatedBy": {"type": "Property", "value": by},
            "updatedAt": {"type": "Property", "value": format_instant(now)},
        }
        full = entity_id(RULE_TYPE, rule.id)
        if await self.broker.store.get_entity(full) is None:
            await self.broker.create_entity({"id": full, "type": RULE_TYPE, **doc})
        else:
            attrs = await self.broker.parse_fragment(full, doc)
            await self.broker.write_attrs(full, attrs, "append")

    def get(self, rule_id: str) -> Rule:
        """One rule; ResourceNotFound otherwise."""
        rule = self.rules.get(rule_id)
        if rule is None:
            raise ResourceNotFound(f"there is no rule {rule_id[:80]!r}", "id")
        return rule

    async def create(self, doc: Any, by: str) -> Rule:
        """Add a rule (version 1); AlreadyExists when its id is taken, RuleError when it
        does not compile."""
        rule = compile_rule(_with(doc, version=1), self.broker.registry)
        if rule.id in self.rules:
            raise AlreadyExists(
                f"rule {rule.id} exists; PUT /api/v1/rules/{rule.id} replaces it", "id"
            )
        if len(self.rules) >= MAX_RULES:
            raise RuleError(f"the engine holds {MAX_RULES} rules already", "id")
        await self._persist(rule, by)
        self._install(rule, by)
        return rule

    async def replace(self, rule_id: str, doc: Any, by: str) -> Rule:
        """Replace a rule's definition (its version goes up by one; its state starts anew)."""
        old = self.get(rule_id)
        if isinstance(doc, dict) and doc.get("id", rule_id) != rule_id:
            raise RuleError(
                f"id {str(doc.get('id'))[:60]!r} differs from the rule's {rule_id!r}", "id"
            )
        rule = compile_rule(_with(doc, id=rule_id, version=old.version + 1), self.broker.registry)
        await self._persist(rule, by)
        self._install(rule, by)
        return rule

    async def delete(self, rule_id: str, by: str) -> None:
        """Remove a rule (its open alarms stay, for operators to close)."""
        self.get(rule_id)
        await self.broker.delete_entity(entity_id(RULE_TYPE, rule_id))
        for table in (self.rules, self._triggers, self.stats, self._cron):
            table.pop(rule_id, None)  # type: ignore[attr-defined]
        self._reindex()

    async def enable(self, rule_id: str, by: str) -> Rule:
        """Enable a rule (and lift a loop-guard stop). Stable: city modes call it."""
        return await self._set_enabled(rule_id, True, by)

    async def disable(self, rule_id: str, by: str) -> Rule:
        """Disable a rule: it is no longer evaluated. Stable: city modes call it."""
        return await self._set_enabled(rule_id, False, by)

    async def set_rule_enabled(self, rule_id: str, enabled: bool, by: str) -> bool:
        """Enable or disable a rule; whether it was enabled before (the modes' RuleSwitch)."""
        was = self.get(rule_id).enabled
        await self._set_enabled(rule_id, enabled, by)
        return was

    async def _set_enabled(self, rule_id: str, enabled: bool, by: str) -> Rule:
        rule = self.get(rule_id)
        stats = self.stats[rule_id]
        if rule.enabled == enabled and stats.stopped is None:
            return rule
        rule.enabled = enabled
        rule.doc = {**rule.doc, "enabled": enabled}
        await self._persist(rule, by)
        stats.stopped = None
        stats.recent.clear()
        stats.updated_by, stats.updated_at = by, self.clock()
        self._reindex()
        return rule

    def set_mode_hook(self, hook: ModeHook | None) -> None:
        """Install the city modes' hook for ``mode`` actions (None: back to "modes not
        available"). Stable: the modes module calls it at start-up."""
        self.actions.mode_hook = hook or modes_not_available

    def listing(self) -> dict[str, Any]:
        """Every rule as :meth:`view` shows it, by id, and ``loadErrors``: the rule files
        or stored rules that did not compile."""
        return {
            "rules": [self.view(r) for _, r in sorted(self.rules.items())],
            "loadErrors": self.load_errors,
        }

    def view(self, rule: Rule) -> dict[str, Any]:
        """A rule as the API shows it: definition, version, what it did, its errors."""
        stats = self.stats.get(rule.id, RuleStats())
        trigger = self._triggers.get(rule.id)
        active = 0 if trigger is None else sum(1 for s in trigger.states.values() if s.active)
        return {
            "id": rule.id,
            "version": rule.version,
            "owner": rule.owner,
            "enabled": rule.enabled,
            "definition": rule.doc,
            "status": {
                **stats.to_json(),
                "activeEntities": active,
                "updatedBy": stats.updated_by,
                "updatedAt": format_instant(stats.updated_at) if stats.updated_at else None,
            },
        }

    # -- evaluation -------------------------------------------------------------------
    def _instant(self, text: str) -> float:
        value = self._instants.get(text)
        if value is None:
            if len(self._instants) > 10_000:
                self._instants.clear()
            value = self._instants[text] = parse_instant(text, "observedAt", bounded=False)
        return value

    async def _on_changed(self, subject: str, payload: dict[str, Any]) -> None:
        index = self._index
        now = self.clock()
        for change in payload["changes"]:
            by_attr = index.get(change["type"])
            if by_attr is None:
                continue
            attrs = change["attrs"]
            triggers: list[Trigger] = []
            for name in attrs:
                found = by_attr.get(name)
                if found:
                    triggers.extend(found)
            found = by_attr.get("*")
            if found:
                triggers.extend(found)
            if not triggers:
                continue
            state = self._state.get(change["id"])
            if state is None:
                state = self._state[change["id"]] = {"id": change["id"], "type": change["type"]}
            state.update(attrs)
            change["observedAtS"] = self._instant(change["observedAt"])
            shared: dict[str, Any] = {}  # one CEL context for the rules of this change
            for trigger in dict.fromkeys(triggers):  # a rule once, even on two attributes
                needs = trigger.rule.needs
                if (
                    needs != ()
                    and change["id"] not in self._loaded
                    and (needs is None or any(n not in state for n in needs))
                ):
                    await self._load_state(change["id"], state)
                self.evaluate(trigger, change, state, now, shared)

    async def _load_state(self, entity: str, state: dict[str, Any]) -> None:
        self._loaded.add(entity)
        found = await self.broker.store.get_entity(entity)
        if found is not None:
            for name, attr in found.attrs.items():
                state.setdefault(name, attr.value)

    def evaluate(
        self,
        trigger: Trigger,
        change: dict[str, Any],
        state: dict[str, Any],
        now: float,
        shared: dict[str, Any] | None = None,
    ) -> Firing | None:
        """Try one rule on one change; a firing is queued for its actions."""
        stats = trigger.stats
        if stats.stopped is not None:
            return None
        stats.evaluations += 1
        try:
            firing = trigger.on_change(change, state, now, shared)
        except EvaluationError as exc:
            self._error(trigger.rule.id, change["id"], str(exc))
            return None
        if firing is not None:
            self._fired(firing)
        return firing

    def _fired(self, firing: Firing) -> None:
        rule = self.rules.get(firing.rule)
        if rule is None:
            return
        stats = self.stats[rule.id]
        # measured on the reports' own instants: history arriving in a burst (a backfill,
        # a gateway catching up) is no loop, while a rule feeding itself makes new reports
        now = firing.observed_at
        recent = stats.recent.get(firing.entity)
        if recent is None:
            recent = stats.recent[firing.entity] = deque()
        recent.append(now)
        while recent and recent[0] < now - rule.guard_within_s:
            recent.popleft()
        if len(recent) > rule.guard_max:
            reason = (
                f"loop guard: {len(recent)} firings within {rule.guard_within_s:g} s on "
                f"{firing.entity}; the rule is stopped until it is enabled again"
            )
            stats.stopped = {"at": format_instant(self.clock()), "reason": reason}
            self._error(rule.id, firing.entity, reason)
            return
        stats.firings += 1
        self._queue.append(firing)
        self._idle.clear()
        self._wake.set()

    def _error(self, rule_id: str, entity: str | None, reason: str) -> None:
        stats = self.stats.get(rule_id)
        if stats is None:
            return
        stats.errors += 1
        stats.last_errors.append(
            {"at": format_instant(self.clock()), "entity": entity, "reason": reason}
        )

    async def tick(self) -> None:
        """Run what time makes due: held durations, silent devices, cron schedules."""
        now = self.clock()
        for rule_id, trigger in list(self._triggers.items()):
            rule = self.rules[rule_id]
            if not rule.enabled or self.stats[rule_id].stopped is not None:
                continue
            if trigger.kind in ("held", "silent"):
                for firing in trigger.on_time(now):
                    self._fired(firing)
            elif trigger.kind == "cron" and now >= self._cron.get(rule_id, float("inf")):
                self._cron[rule_id] = _next_cron(rule.trigger["schedule"], now)
                self._fired(Firing(rule_id, None, "fire", None, now))

    async def _run_actions(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            firing = self._queue.popleft()
            rule = self.rules.get(firing.rule)
            if rule is None:
                continue
            for action in rule.actions:
                if not applies(action, firing):
                    continue
                try:
                    await self.actions.run(rule, action, firing)
                except CityPilotError as exc:
                    self._error(rule.id, firing.entity, f"{action.kind}: {exc.detail}")
                except ActionFailed as exc:
                    self._error(rule.id, firing.entity, f"{action.kind}: {exc}")
                except Exception as exc:  # one failing action never stops the others
                    log.exception("rule %s: %s action failed", rule.id, action.kind)
                    self._error(
                        rule.id, firing.entity, f"{action.kind}: {type(exc).__name__}: {exc}"
                    )


def mode_hook_for(modes: Any) -> ModeHook:
    """The ``mode`` action's hook entering and leaving modes through the mode service."""

    async def hook(action: str, mode: str, scope: dict[str, Any], reason: str, by: str) -> Any:
        if action == "enter":
            done = await modes.enter(mode, scope, reason, by)
        else:
            done = await modes.leave(mode, reason, by)
        return {"mode": mode, "state": done.get("state")} if isinstance(done, dict) else None

    return hook


def _with(doc: Any, **values: Any) -> Any:
    return {**doc, **values} if isinstance(doc, dict) else doc


def _next_cron(schedule: str, after: float) -> float:
    from datetime import UTC, datetime

    from croniter import croniter

    return croniter(schedule, datetime.fromtimestamp(after, UTC)).get_next(float)
