"""The mode service: switch the city into a mode for a scope, and back.

Entering (:meth:`ModeService.enter`) resolves every step of the mode in the scope
first — selections, arguments, roads — and refuses (nothing done) when the mode is
unknown (404), on already (409), or the scope matches nothing it acts on (400). It
then keeps the activation (state ``entering``), sends every command through the
command service (one idempotency key per device, so a restart resumes without
doubles), closes roads, switches rules and alarm suppression, and moves to
``active``. Each command's ``before`` (what the device reported when it was made)
is kept beside it. While the mode is active, a step with ``renewEvery`` sends its
command again that often (:meth:`ModeService.renew`): a signal priority request lapses
by itself, the mode must not. The newest request is the one leaving cancels.

Leaving (:meth:`ModeService.leave`) restores each device to its state before the
mode, device by device:

* its mode command is still under way → the restore command is sent (it supersedes it);
* someone else commanded the same property while the mode was on (an operator, a
  rule) → the device is **kept** as it is now: their later decision wins;
* the device already reports its state before → ``unchanged`` (nothing sent);
* it still reports what the mode set → the restore command is sent;
* it reports something else (changed outside CityPilot) → **kept**, with the values.

Roads the mode closed reopen; rules and suppressions go back. Every enter and leave
is in the audit log; every change is published on the bus as ``modes.changed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from citypilot.broker import Broker
from citypilot.engine.command_model import (
    ACTIVE_STATES,
    CONFIRMED,
    check_args,
    command_spec,
    expected_values,
    shows,
)
from citypilot.engine.commands import COMMANDS_CHANGED, CommandService
from citypilot.engine.mode_model import LEVELS, ModeDefinition, Step
from citypilot.engine.mode_select import Scope, Selector, Target, edges_in, parse_scope
from citypilot.engine.timers import start_ticker, stop_ticker
from citypilot.model.errors import BadRequestData, CityPilotError, Conflict, ResourceNotFound
from citypilot.model.timeutil import format_instant
from citypilot.security import audit
from citypilot.store.base import EntityQuery
from citypilot.store.modes import ActivationRow, ModeLog

log = logging.getLogger(__name__)

MODES_CHANGED = "modes.changed"
SUBMIT_BATCH = 500
#: Seconds between looks for mode commands due to be sent again (``renewEvery``).
RENEW_TICK_S = 10.0
CLOSURE_DAYS = 7  # a mode's road closures end by themselves after this, if it never leaves
MAX_REASON = 500
FAILED_STATES = ("rejected", "failed", "timed_out", "expired", "superseded")


class RuleSwitch(Protocol):
    """What the rules engine offers a mode (wired when the server has one)."""

    async def set_rule_enabled(self, rule_id: str, enabled: bool, by: str) -> bool:
        """Enable or disable a rule; returns whether it was enabled before."""


@dataclass
class _Planned:
    """A device command the mode will send: which step, which entity, which arguments."""

    step: Step
    target: Target
    args: dict[str, Any]


class ModeService:
    """Enters and leaves city modes, keeps them in the store, reports their progress."""

    def __init__(
        self,
        broker: Broker,
        commands: CommandService,
        log_: ModeLog,
        definitions: dict[str, ModeDefinition],
        *,
        layers: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.commands = commands
        self.log = log_
        self.definitions = definitions
        self.selector = Selector(broker.store, layers)
        self.clock = clock
        #: the road closures (ops/closures.ClosureBook), when the server has a road graph
        self.closures: Any = None
        #: the alarm service (engine/alarms.py): suppression by design while a mode is on
        self.alarms: Any = None
        #: the rules engine (RuleSwitch), when the server has one
        self.rules: RuleSwitch | None = None
        self._open: dict[str, dict[str, Any]] = {}  # mode name -> activation document
        self._states: dict[str, str] = {}  # command id -> state, for every mode command
        self._lock = asyncio.Lock()
        self._unlisten: Callable[[], None] | None = None
        self._ticker: asyncio.Task | None = None

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Create the table, take up the activations that were open, follow commands.

        An activation caught ``entering`` or ``leaving`` by a stop is carried on: the
        commands it had not sent yet are sent (their idempotency keys make the ones
        already sent come back as they are).
        """
        await self.log.open()
        self._unlisten = self.broker.bus.listen(COMMANDS_CHANGED, self._on_commands)
        for row in await self.log.open_activations():
            self._open[row.name] = row.doc
            for cmd_id in _command_ids(row.doc):
                try:
                    self._states[cmd_id] = (await self.commands.get(cmd_id)).state
                except ResourceNotFound:
                    self._states[cmd_id] = "failed"
        for doc in list(self._open.values()):
            if doc["state"] == "active" and self.definition(doc["name"]).suppress:
                # suppressions live in the alarm service's memory: set them again
                suppressed = self.definition(doc["name"]).suppress
                doc["policies"]["suppression"] = await self._suppress(
                    doc, suppressed, True, doc["enteredBy"]
                )
            if doc["state"] == "entering":
                await self._apply(doc)
            elif doc["state"] == "leaving":
                await self._restore(doc)
        self._ticker = start_ticker(RENEW_TICK_S, self.renew, "mode-renewals")

    async def stop(self) -> None:
        """Stop following commands and renewing them."""
        if self._unlisten is not None:
            self._unlisten()
        await stop_ticker(self._ticker)
        self._ticker = None

    async def renew(self) -> int:
        """Send again the commands of active modes' steps whose ``renewEvery`` has passed
        since they were last sent (a signal priority request lapses by itself, the mode
        does not); how many were sent. A background task calls it every few seconds."""
        now = self.clock()
        sent = 0
        async with self._lock:
            for doc in list(self._open.values()):
                if doc["state"] == "active":
                    sent += await self._renew_due(doc, now)
        return sent

    async def _renew_due(self, doc: dict[str, Any], now: float) -> int:
        steps = {s.id: s for s in self.definition(doc["name"]).steps}

        def due(d: dict[str, Any]) -> bool:
            every = steps[d["step"]].renew_s
            last = d.get("renewedEpoch", doc["enteredEpoch"])
            return every is not None and "command" in d and now - last >= every

        todo = [d for d in doc["devices"] if "restore" not in d and due(d)]
        reason = f"mode {doc['name']}: {doc['reason']} (renewed)"
        sent = 0
        for k in range(0, len(todo), SUBMIT_BATCH):
            batch = todo[k : k + SUBMIT_BATCH]
            done = await asyncio.gather(
                *(
                    self._submit(doc, d, d["args"], reason, f"mode:{doc['name']}", _renewal(d))
                    for d in batch
                ),
                return_exceptions=True,
            )
            for d, result in zip(batch, done, strict=True):
                d["renewedEpoch"] = now
                if isinstance(result, BaseException):
                    d["renewError"] = _error_text(result)
                else:
                    d["command"] = result.id  # the one to cancel on leaving
                    d["renewals"] = d.get("renewals", 0) + 1
                    sent += 1
        if todo:
            await self._save(doc)
        return sent

    def _on_commands(self, subject: str, payload: dict[str, Any]) -> None:
        states = self._states
        for cmd in payload["commands"]:
            if cmd["id"] in states:
                states[cmd["id"]] = cmd["state"]

    # -- reading -----------------------------------------------------------------------
    def level(self) -> int:
        """The city's operational level: the highest of the active modes', else 1."""
        return max((d["level"] for d in self._open.values()), default=1)

    def definition(self, name: str) -> ModeDefinition:
        """The mode called ``name``; ResourceNotFound otherwise."""
        mode = self.definitions.get(name)
        if mode is None:
            known = ", ".join(sorted(self.definitions))
            raise ResourceNotFound(f"there is no mode {name[:60]!r} (modes: {known})", "name")
        return mode

    def scope_of(self, name: str) -> dict[str, Any] | None:
        """The scope the mode is on for (None when it is not on)."""
        doc = self._open.get(name)
        return None if doc is None else doc["scope"]

    def active(self) -> list[dict[str, Any]]:
        """The activations holding the city now, as the API shows them, oldest first."""
        docs = sorted(self._open.values(), key=lambda d: d["enteredAt"])
        return [self.view(d) for d in docs]

    async def last(self, name: str) -> dict[str, Any] | None:
        """The mode's open activation, else its latest one (with every device), or None."""
        self.definition(name)
        doc = self._open.get(name)
        if doc is None:
            for row in await self.log.recent(200):
                if row.name == name:
                    doc = row.doc
                    break
        return None if doc is None else self.view(doc, devices=True)

    async def history(self, limit: int) -> list[dict[str, Any]]:
        """The latest activations, newest first (without their devices)."""
        return [self.view(r.doc) for r in await self.log.recent(limit)]

    def view(self, doc: dict[str, Any], devices: bool = False) -> dict[str, Any]:
        """An activation with the progress of its commands."""
        out = {k: v for k, v in doc.items() if k not in ("devices", "enteredEpoch")}
        out["levelName"] = LEVELS[doc["level"]]
        out["progress"] = self._progress(d.get("command") for d in doc["devices"])
        by_step: dict[str, list[str | None]] = {}
        for d in doc["devices"]:
            by_step.setdefault(d["step"], []).append(d.get("command"))
        out["steps"] = [
            {**s, "progress": self._progress(by_step.get(s["id"], []))} for s in doc["steps"]
        ]
        restores = [d["restore"] for d in doc["devices"] if "restore" in d]
        if restores:
            outcomes: dict[str, int] = {}
            for r in restores:
                outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
            out["restore"] = {
                "outcomes": outcomes,
                "progress": self._progress(r.get("command") for r in restores),
            }
        if devices:
            out["devices"] = [
                {
                    **d,
                    "state": self._states.get(d.get("command") or "", d.get("error") and "failed"),
                }
                for d in doc["devices"]
            ]
        return out

    def _progress(self, command_ids: Any) -> dict[str, int]:
        counts = {"total": 0, "confirmed": 0, "underWay": 0, "failed": 0}
        for cmd_id in command_ids:
            if cmd_id is None:
                continue
            counts["total"] += 1
            state = self._states.get(cmd_id)
            if state is None:  # a mode left before the last restart: not followed since
                counts["unknown"] = counts.get("unknown", 0) + 1
            elif state == CONFIRMED:
                counts["confirmed"] += 1
            elif state in ACTIVE_STATES:
                counts["underWay"] += 1
            else:
                counts["failed"] += 1
        return counts

    # -- entering ----------------------------------------------------------------------
    async def enter(
        self, name: str, scope_doc: Any, reason: Any, by: str, client: str | None = None
    ) -> dict[str, Any]:
        """Enter the mode for a scope; the activation as :meth:`view` shows it.

        Refused, with nothing done: an unknown mode (ResourceNotFound), one already on
        (Conflict), a bad or empty scope or reason (BadRequestData naming the field).
        """
        mode = self.definition(name)
        text = _reason(reason)
        async with self._lock:
            if name in self._open:
                on = self._open[name]
                raise Conflict(
                    f"mode {name} is active already, since {on['enteredAt']} by {on['enteredBy']}",
                    "name",
                )
            scope = await parse_scope(scope_doc, self.broker.store)
            planned, roads = await self._plan(mode, scope)
            if not planned and not any(roads.values()):
                raise BadRequestData(
                    f"the scope matches nothing mode {name} acts on "
                    f"(no {', '.join(sorted({s.select.type for s in mode.steps if s.select}))}"
                    " selected, no roads to close)",
                    "scope",
                )
            now = self.clock()
            activation = f"mode-{uuid.uuid4().hex[:12]}"
            doc: dict[str, Any] = {
                "id": activation,
                "name": name,
                "title": mode.title,
                "level": mode.level,
                "state": "entering",
                "scope": scope.to_json(),
                "reason": text,
                "enteredBy": by,
                "enteredAt": format_instant(now),
                "enteredEpoch": now,
                "steps": [
                    {
                        "id": s.id,
                        "action": s.action,
                        "description": s.description,
                        "targets": sum(1 for p in planned if p.step is s)
                        if s.action == "command"
                        else len(roads.get(s.id, [])),
                    }
                    for s in mode.steps
                ],
                "devices": [
                    {"step": p.step.id, "entity": p.target.entity_id, "args": p.args, **_refs(p)}
                    for p in planned
                ],
                "roads": {k: v for k, v in roads.items()},
                "closures": [],
                "policies": {},
            }
            await self._save(doc)
            self._open[name] = doc
            await audit.record(
                self.broker.store,
                by,
                "mode.enter",
                target=name,
                client=client,
                detail={
                    "activation": activation,
                    "scope": scope.to_json(),
                    "reason": text,
                    "commands": len(planned),
                },
            )
            await self._apply(doc)
            return self.view(doc)

    async def _plan(
        self, mode: ModeDefinition, scope: Scope
    ) -> tuple[list[_Planned], dict[str, list[int]]]:
        """Every command the mode sends in the scope, its arguments checked, and the
        street segments each road step closes."""
        planned: list[_Planned] = []
        roads: dict[str, list[int]] = {}
        selected: dict[str, list[Target]] = {}  # steps with the same selection share it
        for step in mode.steps:
            if step.action == "closeRoads":
                network = getattr(getattr(self.closures, "routing", None), "network", None)
                area = await self.selector.zones(step.zones, scope) if network else None
                roads[step.id] = [] if area is None else edges_in(network, area)
                continue
            assert step.select is not None and step.command is not None
            spec = command_spec(self.broker.registry.get(step.select.type), step.command)
            key = orjson.dumps(step.select.to_json(), option=orjson.OPT_SORT_KEYS).decode()
            if key not in selected:
                selected[key] = await self.selector.select(step.select, scope)
            for target in selected[key]:
                args = _fill(step.args, target.refs, {}, None)
                planned.append(_Planned(step, target, check_args(spec, args)))
        return planned, roads

    async def _apply(self, doc: dict[str, Any]) -> None:
        """Send the activation's commands not sent yet, close its roads, switch policies."""
        name, by = doc["name"], f"mode:{doc['name']}"
        todo = [d for d in doc["devices"] if "command" not in d and "error" not in d]
        reason = f"mode {name}: {doc['reason']}"
        for k in range(0, len(todo), SUBMIT_BATCH):
            batch = todo[k : k + SUBMIT_BATCH]
            sent = await asyncio.gather(
                *(self._submit(doc, d, d["args"], reason, by, "enter") for d in batch),
                return_exceptions=True,
            )
            for device, result in zip(batch, sent, strict=True):
                if isinstance(result, BaseException):
                    device["error"] = _error_text(result)
                else:
                    device["command"] = result.id
                    device["before"] = result.before
                    device["expected"] = {a: v["value"] for a, v in result.expected.items()}
        await self._close_roads(doc)
        await self._switch_policies(doc, on=True)
        doc["state"] = "active"
        await self._save(doc)

    async def _submit(
        self,
        doc: dict[str, Any],
        device: dict[str, Any],
        args: dict[str, Any],
        reason: str,
        by: str,
        phase: str,
    ) -> Any:
        step = next(s for s in self.definition(doc["name"]).steps if s.id == device["step"])
        command = step.restore.command if phase == "leave" else step.command  # type: ignore[union-attr]
        cmd = await self.commands.submit(
            device["entity"],
            command,  # type: ignore[arg-type]
            args,
            reason=reason,
            requested_by=by,
            idempotency_key=f"{doc['id']}:{phase}:{device['step']}:{device['entity']}",
        )
        self._states[cmd.id] = cmd.state
        return cmd

    async def _close_roads(self, doc: dict[str, Any]) -> None:
        from citypilot.ops.closures import MAX_EDGES

        if doc["closures"] or not any(doc["roads"].values()):
            return
        ends = self.clock() + CLOSURE_DAYS * 86400
        for step_id, edges in doc["roads"].items():
            for k in range(0, len(edges), MAX_EDGES):
                try:
                    closure = await self.closures.close(
                        edges[k : k + MAX_EDGES],
                        ends,
                        f"mode {doc['name']}: {doc['reason']}",
                        f"mode:{doc['name']}",
                    )
                except CityPilotError as exc:
                    doc["closures"].append({"step": step_id, "error": exc.detail})
                    continue
                doc["closures"].append(
                    {"step": step_id, "id": closure.id, "edges": len(edges[k : k + MAX_EDGES])}
                )

    async def _switch_policies(self, doc: dict[str, Any], on: bool) -> None:
        """The rules the mode enables or disables, and the alarms it suppresses."""
        mode = self.definition(doc["name"])
        policies, by = doc["policies"], f"mode:{doc['name']}"
        wanted = [(r, True) for r in mode.rules_enable] + [(r, False) for r in mode.rules_disable]
        if wanted:
            policies["rules"] = await self._switch_rules(policies.get("rules", {}), wanted, on, by)
        if mode.suppress:
            policies["suppression"] = await self._suppress(doc, mode.suppress, on, by)

    async def _switch_rules(
        self, done: dict[str, Any], wanted: list[tuple[str, bool]], on: bool, by: str
    ) -> dict[str, Any]:
        if self.rules is None:  # kept, visibly, until the server has a rules engine
            return {
                "state": "pending" if on else "not applied",
                "reason": "this server has no rules engine: the mode's rules wait for it",
                "enable": [r for r, e in wanted if e],
                "disable": [r for r, e in wanted if not e],
            }
        switched = done.get("switched", {})
        for rule_id, enabled in wanted:
            try:  # a rule the engine does not have is kept visibly, not fatal to the mode
                if on:
                    was = await self.rules.set_rule_enabled(rule_id, enabled, by)
                    switched[rule_id] = {"set": enabled, "before": was}
                elif "before" in switched.get(rule_id, {}):
                    await self.rules.set_rule_enabled(rule_id, switched[rule_id]["before"], by)
            except CityPilotError as exc:
                switched[rule_id] = {"set": enabled, "error": exc.detail}
        failed = any("error" in v for v in switched.values())
        state = ("applied" if on else "restored") if not failed else "partly applied"
        return {"state": state, "switched": switched}

    async def _suppress(
        self, doc: dict[str, Any], rules: tuple[str, ...], on: bool, by: str
    ) -> dict[str, Any]:
        """Alarms of the mode's rules in its scope, suppressed by design while it is on
        (the suppression's key is the mode's name)."""
        from citypilot.engine.alarms import AlarmScope

        if self.alarms is None:
            return {"state": "not applied", "reason": "this server has no alarm service"}
        scope = doc["scope"]
        if on:
            covered = await self.alarms.suppress(
                doc["name"],
                AlarmScope(
                    municipality=scope.get("municipality"),
                    rules=rules,
                    area=scope.get("geometry"),
                ),
                by,
            )
            return {
                "state": "applied",
                "key": doc["name"],
                "rules": list(rules),
                "covered": covered,
            }
        released = await self.alarms.unsuppress(doc["name"], by)
        return {"state": "lifted", "key": doc["name"], "rules": list(rules), "released": released}

    # -- leaving -----------------------------------------------------------------------
    async def leave(
        self, name: str, reason: Any, by: str, client: str | None = None
    ) -> dict[str, Any]:
        """Leave the mode, restoring each device to its state before it (module docs)."""
        self.definition(name)
        text = _reason(reason)
        async with self._lock:
            doc = self._open.get(name)
            if doc is None or doc["state"] == "leaving":
                raise Conflict(f"mode {name} is not active", "name")
            doc.update(
                state="leaving", leftBy=by, leaveReason=text, leftAt=format_instant(self.clock())
            )
            await self._save(doc)
            await audit.record(
                self.broker.store,
                by,
                "mode.leave",
                target=name,
                client=client,
                detail={"activation": doc["id"], "reason": text},
            )
            await self._restore(doc)
            return self.view(doc)

    async def _restore(self, doc: dict[str, Any]) -> None:
        name, actor = doc["name"], f"mode:{doc['name']}"
        mode = self.definition(name)
        steps = {s.id: s for s in mode.steps}
        devices = [d for d in doc["devices"] if "command" in d and "restore" not in d]
        others = await self._commanded_by_others(doc, {d["entity"] for d in devices}, actor)
        now_state = await self._reported({d["entity"] for d in devices})
        sends: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for d in devices:
            step = steps[d["step"]]
            outcome = self._decide(d, step, others, now_state.get(d["entity"], {}))
            if outcome.get("outcome") == "restored":
                sends.append((d, outcome.pop("args")))
            d["restore"] = outcome
        reason = f"leaving mode {name}: {doc['leaveReason']}"
        for k in range(0, len(sends), SUBMIT_BATCH):
            batch = sends[k : k + SUBMIT_BATCH]
            done = await asyncio.gather(
                *(self._submit(doc, d, args, reason, actor, "leave") for d, args in batch),
                return_exceptions=True,
            )
            for (d, _), result in zip(batch, done, strict=True):
                if isinstance(result, BaseException):
                    d["restore"] = {"outcome": "failed", "reason": _error_text(result)}
                else:
                    d["restore"]["command"] = result.id
        for closure in doc["closures"]:
            if "id" in closure and "reopened" not in closure and self.closures is not None:
                try:
                    await self.closures.end(closure["id"], actor)
                    closure["reopened"] = True
                except CityPilotError as exc:
                    closure["reopened"] = False
                    closure["note"] = exc.detail
        await self._switch_policies(doc, on=False)
        doc["state"] = "left"
        await self._save(doc)
        self._open.pop(name, None)

    def _decide(
        self,
        device: dict[str, Any],
        step: Step,
        others: dict[str, list[tuple[set[str], str]]],
        current: dict[str, Any],
    ) -> dict[str, Any]:
        """What leaving does to one device (see the module docs)."""
        assert step.restore is not None
        before = device.get("before", {})
        args = _fill(
            step.restore.args,
            device.get("refs", {}),
            before,
            device["command"],
            step.restore.when_unknown,
        )
        if args is None:
            return {"outcome": "kept", "reason": "its state before the mode is not known"}
        entity_type = self.broker.registry.get(step.select.type)  # type: ignore[union-attr]
        spec = command_spec(entity_type, step.restore.command)
        try:
            args = check_args(spec, args)
        except BadRequestData as exc:
            return {"outcome": "kept", "reason": f"cannot restore: {exc.detail}"}
        attrs = set(device.get("expected", {}))
        for changed, who in others.get(device["entity"], []):
            if changed & attrs:
                return {"outcome": "kept", "reason": f"commanded by {who} while the mode was on"}
        mode_set = device.get("expected", {})
        if mode_set and all(a in before and _same(v, before[a]) for a, v in mode_set.items()):
            return {"outcome": "unchanged", "reason": "it was in the mode's state already"}
        restore_to = expected_values(spec, args)
        if any(a in before and not shows(w, before[a]) for a, w in restore_to.items()):
            return {"outcome": "kept", "reason": f"no restore command leads back to {before}"}
        if self._states.get(device["command"]) in ACTIVE_STATES:
            return {"outcome": "restored", "args": args}  # supersedes the mode's command
        if all(a not in current or shows(w, current[a]) for a, w in restore_to.items()):
            return {"outcome": "unchanged"}
        if all(a in current and _same(v, current[a]) for a, v in mode_set.items()):
            return {"outcome": "restored", "args": args}
        seen = {a: current.get(a) for a in mode_set}
        return {
            "outcome": "kept",
            "reason": f"reports {seen}, neither the mode's state nor the one before",
        }

    async def _commanded_by_others(
        self, doc: dict[str, Any], entities: set[str], actor: str
    ) -> dict[str, list[tuple[set[str], str]]]:
        """Commands made since the mode was entered, by anyone else, per entity."""
        since = doc["enteredEpoch"]
        out: dict[str, list[tuple[set[str], str]]] = {}
        offset = 0
        while True:
            page, total = await self.commands.list(None, None, since, 1000, offset)
            for cmd in page:
                if (
                    cmd.entity_id in entities
                    and cmd.requested_by != actor
                    and cmd.created_at >= since
                ):
                    out.setdefault(cmd.entity_id, []).append((set(cmd.expected), cmd.requested_by))
            offset += len(page)
            if not page or offset >= total:
                return out

    async def _reported(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        ordered = sorted(ids)
        for k in range(0, len(ordered), 1000):
            found, _ = await self.broker.store.query_entities(
                EntityQuery(ids=tuple(ordered[k : k + 1000]), limit=1000)
            )
            for e in found:
                out[e.id] = {a: v.value for a, v in e.attrs.items()}
        return out

    async def _save(self, doc: dict[str, Any]) -> None:
        now = self.clock()
        await self.log.save(
            ActivationRow(doc["id"], doc["name"], doc["state"], doc["enteredEpoch"], now, doc)
        )
        await self.broker.bus.publish(
            MODES_CHANGED,
            {"level": self.level(), "mode": {k: doc[k] for k in ("id", "name", "state")}},
        )


def _same(value: Any, reported: Any) -> bool:
    return shows({"value": value, "tolerance": 1e-6}, reported)


def _refs(p: _Planned) -> dict[str, Any]:
    return {"refs": p.target.refs} if p.target.refs else {}


def _command_ids(doc: dict[str, Any]) -> list[str]:
    ids = [d["command"] for d in doc["devices"] if "command" in d]
    ids += [d["restore"]["command"] for d in doc["devices"] if "command" in d.get("restore", {})]
    return ids


def _fill(
    templates: Any,
    refs: dict[str, Any],
    before: dict[str, Any],
    command_id: str | None,
    when_unknown: Any = None,
) -> dict[str, Any] | None:
    """Arguments from templates: ``{ref = "approach" | "command"}``, ``{before = attr}``
    (the device's value before the mode, else ``when_unknown``); None when unknown."""
    out: dict[str, Any] = {}
    for name, value in templates.items():
        if not isinstance(value, dict):
            out[name] = value
        elif value.get("ref") == "command":
            out[name] = command_id
        elif "ref" in value:
            out[name] = refs.get(value["ref"])
        elif value["before"] in before:
            out[name] = before[value["before"]]
        elif when_unknown and name in when_unknown:
            out[name] = when_unknown[name]
        else:
            return None
    return out


def _renewal(device: dict[str, Any]) -> str:
    """The phase of a device's next renewal, for its command's idempotency key."""
    return f"renew-{device.get('renewals', 0) + 1}"


def _reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise BadRequestData(
            f"reason must be a non-empty text of at most {MAX_REASON} characters", "reason"
        )
    return reason.strip()


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, CityPilotError):
        return exc.detail
    log.error("mode command failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"
