"""The command service: device commands that are confirmed, not just sent.

Operators (``POST /api/v1/entities/{id}/commands``), rules and city modes call
:meth:`CommandService.submit`. The service checks the command against the entity's
type, keeps it (``store/commands.py``), hands it to the first channel that reaches
the device (an HTTP callback, the in-process simulator, MQTT — or, on several
processes, the NATS bus to the ingest workers' MQTT, which reports the send later — see
:class:`CommandChannel`), resends it when no acknowledgement comes, and watches the
device's reports on the bus (``entities.changed``) until one, not older than the
acknowledgement, shows the commanded state. Every transition is kept with who or
what caused it and published on the bus as ``commands.changed``
(``{"commands": [Command.to_json(), ...]}``).

Time is read from ``clock`` and timers run in :meth:`CommandService.tick`, which a
background task calls every ``tick_s``; tests drive both themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from citypilot.broker import CHANGED, Broker
from citypilot.engine.command_model import (
    ACKNOWLEDGED,
    ACTIVE_STATES,
    CONFIRMED,
    DESIRED_STATES,
    EXPIRED,
    FAILED,
    PENDING,
    REJECTED,
    SENT,
    STATES,
    SUPERSEDED,
    TIMED_OUT,
    Command,
    check_args,
    command_spec,
    expected_values,
    shows,
)
from citypilot.engine.timers import start_ticker, stop_ticker
from citypilot.model.errors import BadRequestData, ResourceNotFound
from citypilot.model.ids import check_entity_id
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.security.scopes import Visibility
from citypilot.store.base import DeadLetter, HistoryQuery
from citypilot.store.commands import CommandLog, CommandRow, TransitionRow

log = logging.getLogger(__name__)

COMMANDS_CHANGED = "commands.changed"
DEFAULT_DEADLINE_S = 600.0
MAX_DEADLINE_S = 7 * 86400.0
MAX_REASON_CHARS = 500
MAX_KEY_CHARS = 200
LOOKBACK_S = 86400.0  # how far back reported_state(at=...) looks for a value


_NO_LOCK = contextlib.nullcontext()


class DeliveryError(Exception):
    """A channel could not hand the command over (it is retried, then ``failed``)."""


@dataclass(frozen=True)
class DeviceAnswer:
    """A device's acknowledgement: accepted or rejected, why, and its own instant."""

    accepted: bool
    reason: str | None = None
    at: float | None = None


def read_answer(doc: Any, where: str = "body") -> tuple[str | None, DeviceAnswer]:
    """(command id or None, answer) from ``{"id", "status", "reason", "at"}``.

    ``status`` is ``accepted`` or ``rejected``; ``at`` the device's instant (ISO 8601).
    BadRequestData names the field at fault.
    """
    if not isinstance(doc, dict):
        raise BadRequestData(f'{where} must be a JSON object {{"status", ...}}', where)
    command_id = doc.get("id")
    if command_id is not None and (not isinstance(command_id, str) or not command_id):
        raise BadRequestData(f"{where}.id must name the command", f"{where}.id")
    status = doc.get("status")
    if status not in ("accepted", "rejected"):
        raise BadRequestData(f"{where}.status must be 'accepted' or 'rejected'", f"{where}.status")
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequestData(f"{where}.reason must be a string", f"{where}.reason")
    at = doc.get("at")
    instant = None if at is None else parse_instant(at, f"{where}.at")
    return command_id, DeviceAnswer(status == "accepted", reason[:500] if reason else None, instant)


class Queued:
    """What a channel's ``deliver`` returns when it queued the command for a relay that
    sends it later (the NATS bus to the ingest workers' MQTT): the command stays
    ``pending`` until the relay reports the send through :meth:`CommandService.sent`."""


QUEUED = Queued()


class CommandChannel(Protocol):
    """One way to reach devices (MQTT, an HTTP callback, the in-process simulator)."""

    name: str

    def reaches(self, command: Command) -> bool:
        """Whether this channel can deliver to the command's device."""

    async def deliver(self, command: Command) -> DeviceAnswer | Queued | None:
        """Hand the command over; the device's answer if it came at once (else it comes
        later through :meth:`CommandService.acknowledge`), or :data:`QUEUED` when a relay
        sends it later. Raises DeliveryError."""

    async def close(self) -> None:
        """Release connections (at shutdown)."""


class CommandService:
    """Submits, delivers, retries, confirms and times out device commands.

    ``retry_s``: resend when no acknowledgement came for this long; ``max_attempts``:
    sends (or failed hand-overs) before giving up.
    """

    def __init__(
        self,
        broker: Broker,
        commands: CommandLog,
        *,
        clock: Callable[[], float] = time.time,
        retry_s: float = 10.0,
        max_attempts: int = 3,
        tick_s: float = 0.5,
    ) -> None:
        self.broker = broker
        self.log = commands
        self.clock = clock
        self.retry_s = retry_s
        self.max_attempts = max_attempts
        self.tick_s = tick_s
        self.channels: list[CommandChannel] = []
        self._active: dict[str, Command] = {}
        self._by_entity: dict[str, set[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self._queued: list[tuple[Sequence[CommandRow], Sequence[TransitionRow], Any]] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------
    async def start(self, *, run_timers: bool = True) -> None:
        """Create the tables, take up the commands still under way, watch reports.

        A pending or sent command whose deadline passed while the server was down
        expires; the others are sent again.
        """
        await self.log.open()
        offset = 0
        while True:
            rows, total = await self.log.query(None, ACTIVE_STATES, None, 1000, offset)
            for row in rows:
                self._track(Command.from_doc(row.doc))
            offset += len(rows)
            if not rows or offset >= total:
                break
        now = self.clock()
        for cmd in list(self._active.values()):
            # a command queued for a relay is kept by the bus: it is not queued twice
            if cmd.state == SENT or (cmd.state == PENDING and cmd.queued_at is None):
                cmd.next_attempt_at = now
        self._unlisten = self.broker.bus.listen(CHANGED, self._on_changed)
        if run_timers:
            self._ticker = start_ticker(self.tick_s, self.tick, "command-timers")
        await self.tick()

    async def stop(self) -> None:
        """Stop the timers and wait for deliveries under way."""
        if self._unlisten is not None:
            self._unlisten()
        await stop_ticker(self._ticker)
        await self.settle()

    async def settle(self) -> None:
        """Wait until every delivery and confirmation check started so far is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the API others call -----------------------------------------------------------
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
        """Check and record a command for one entity's device, and start delivering it.

        ``args`` are checked against the parameters the entity's type declares for
        ``command`` (BadRequestData naming ``command`` or ``args.<name>``; ResourceNotFound
        for an unknown entity). ``reason`` says why (kept and shown); ``requested_by``
        is the person, rule (``rule:<id>``) or mode (``mode:<name>``) asking.
        ``idempotency_key``: submitting the same key again returns the command made
        the first time instead of a new one. ``deadline`` (epoch seconds, default 10
        minutes from now): a command not delivered by then expires. Returns the
        command in state ``pending``; delivery goes on in the background, and a
        newer command for the same property supersedes any older one under way.
        Stable: the rules engine and city modes call it.
        """
        check_entity_id(entity_id, "entityId")
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise BadRequestData(
                f"reason must be a string of at most {MAX_REASON_CHARS} characters", "reason"
            )
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= MAX_KEY_CHARS
        ):
            raise BadRequestData(
                f"idempotencyKey must be a string of 1..{MAX_KEY_CHARS} characters",
                "idempotencyKey",
            )
        refs = await self.broker.store.lookup([entity_id])
        if entity_id not in refs:
            raise ResourceNotFound(f"entity {entity_id} does not exist", "entityId")
        entity_type = self.broker.registry.get(refs[entity_id].type)
        spec = command_spec(entity_type, command)
        checked = check_args(spec, args)
        now = self.clock()
        if deadline is None:
            deadline = now + DEFAULT_DEADLINE_S
        elif not now < deadline <= now + MAX_DEADLINE_S:
            raise BadRequestData("deadline must lie in the next 7 days", "deadline")
        expected = expected_values(spec, checked)
        before = await self._reported(entity_id, expected)
        # one submit per idempotency key at a time; submits without a key run freely
        key_lock = self._lock(f"key:{idempotency_key}") if idempotency_key else _NO_LOCK
        async with key_lock:
            if idempotency_key is not None:
                known = await self.log.by_key(idempotency_key)
                if known is not None:
                    return self._active.get(known.id) or Command.from_doc(known.doc)
            cmd = Command(
                id=f"cmd-{uuid.uuid4().hex}",
                entity_id=entity_id,
                entity_type=entity_type.name,
                command=spec.name,
                args=checked,
                reason=reason,
                requested_by=requested_by,
                created_at=now,
                updated_at=now,
                deadline=deadline,
                timeout_s=spec.timeout_s,
                expected=expected,
                idempotency_key=idempotency_key,
                before=before,
                next_attempt_at=now,
            )
            older = [
                self._active[i]
                for i in self._by_entity.get(entity_id, ())
                if set(self._active[i].expected) & set(expected)
            ]
            self._track(cmd)  # before the write: a concurrent submit sees it to supersede
            try:
                await self._save(cmd, PENDING, requested_by, {"reason": reason})
            except BaseException:
                self._untrack(cmd)
                raise
            if idempotency_key:
                self._locks.pop(f"key:{idempotency_key}", None)
        for old in older:
            async with self._lock(old.id):
                if old.state in ACTIVE_STATES:
                    old.superseded_by = cmd.id
                    await self._finish(old, SUPERSEDED, requested_by, {"by": cmd.id})
        self._spawn(self._attempt(cmd.id))
        return cmd

    async def acknowledge(
        self,
        command_id: Any,
        answer: DeviceAnswer,
        *,
        source: str,
        payload: Any = None,
        entity_id: str | None = None,
    ) -> Command | None:
        """Record a device's answer to a command it was sent.

        An answer naming a command the platform never sent (to ``entity_id``, when
        the channel knows who answers) becomes a dead letter with the reason, and
        None is returned; an answer to a command that is over already is kept in its
        history without changing its state.
        """
        cmd = self._active.get(command_id) if isinstance(command_id, str) else None
        if cmd is None:
            row = await self.log.get(command_id) if isinstance(command_id, str) else None
            if row is not None and entity_id is not None and row.entity_id != entity_id:
                row = None
            if row is None:
                to = "" if entity_id is None else f" to {entity_id}"
                await self.dead_letter(
                    source,
                    f"acknowledgement for command {str(command_id)[:80]!r}, "
                    f"which was never sent{to}",
                    "id",
                    payload,
                )
                return None
            await self._note(Command.from_doc(row.doc), "late answer", source, answer)
            return Command.from_doc(row.doc)
        if entity_id is not None and cmd.entity_id != entity_id:
            await self.dead_letter(
                source,
                f"{entity_id} acknowledged command {cmd.id}, which was sent to {cmd.entity_id}",
                "id",
                payload,
            )
            return None
        async with self._lock(cmd.id):
            if cmd.state not in (PENDING, SENT):
                await self._note(cmd, "repeated answer", source, answer)
                return cmd
            await self._answered(cmd, answer, source)
        return cmd

    async def get(self, command_id: str) -> Command:
        """One command (ResourceNotFound if there is none)."""
        cmd = self._active.get(command_id)
        if cmd is not None:
            return cmd
        row = await self.log.get(command_id)
        if row is None:
            raise ResourceNotFound(f"command {command_id[:80]} does not exist", "id")
        return Command.from_doc(row.doc)

    async def transitions(self, command_id: str) -> list[TransitionRow]:
        """Every state change of a command, oldest first (ResourceNotFound if none)."""
        await self.get(command_id)
        return await self.log.transitions(command_id)

    async def list(
        self,
        entity_id: str | None = None,
        states: Collection[str] | None = None,
        since: float | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: Visibility | None = None,
    ) -> tuple[list[Command], int]:
        """Commands newest first (changed at or after ``since``), and how many match;
        with ``scope``, only those of entities it covers."""
        for state in states or ():
            if state not in STATES:
                raise BadRequestData(
                    f"state {state[:40]!r} is not one of {', '.join(STATES)}", "state"
                )
        rows, total = await self.log.query(entity_id, states, since, limit, offset, scope)
        return [self._active.get(r.id) or Command.from_doc(r.doc) for r in rows], total

    async def desired(self, entity_id: str) -> dict[str, Any]:
        """What was commanded of an entity beside what its device reports.

        ``desired`` holds, per commanded attribute, the value of the newest command
        still standing (pending … confirmed, or timed out); ``reported`` what the
        device last reported for it; ``diverged`` the attributes whose report differs
        from what is desired after that command's timeout.
        """
        entity = await self.broker.get_entity(entity_id)
        rows, _ = await self.log.query(entity_id, DESIRED_STATES, None, 200, 0)
        desired: dict[str, Any] = {}
        for row in rows:  # newest first
            cmd = self._active.get(row.id) or Command.from_doc(row.doc)
            for attr, want in cmd.expected.items():
                desired.setdefault(
                    attr,
                    {
                        "value": want["value"],
                        "command": cmd.id,
                        "state": cmd.state,
                        "since": format_instant(cmd.created_at),
                        "expected": want,
                    },
                )
        reported: dict[str, Any] = {}
        diverged = []
        for attr, entry in desired.items():
            got = entity.attrs.get(attr)
            reported[attr] = (
                None
                if got is None
                else {
                    "value": got.value,
                    "observedAt": None
                    if got.observed_at is None
                    else format_instant(got.observed_at),
                }
            )
            if entry["state"] == TIMED_OUT and (
                got is None or not shows(entry["expected"], got.value)
            ):
                diverged.append(attr)
            del entry["expected"]
        return {
            "entityId": entity_id,
            "desired": desired,
            "reported": reported,
            "diverged": sorted(diverged),
        }

    async def reported_state(
        self, entity_id: str, attrs: Sequence[str], at: float | None = None
    ) -> dict[str, Any]:
        """What the device reported for ``attrs``: now, or as it stood at instant ``at``.

        For city modes restoring devices to their state before the mode (the values
        at ``at`` come from history, looking back at most a day). Attributes never
        reported are left out.
        """
        if at is None:
            entity = await self.broker.get_entity(entity_id)
            return {a: entity.attrs[a].value for a in attrs if a in entity.attrs}
        series = await self.broker.store.history(
            HistoryQuery(entity_id, tuple(attrs), at - LOOKBACK_S, at + 0.0005)
        )
        return {a: points[-1][1] for a, points in series.items() if points}

    # -- delivery ----------------------------------------------------------------------
    def _channel_for(self, cmd: Command) -> CommandChannel | None:
        return next((c for c in self.channels if c.reaches(cmd)), None)

    async def _attempt(self, command_id: str) -> None:
        cmd = self._active.get(command_id)
        if cmd is None:
            return
        async with self._lock(cmd.id):
            if cmd.state not in (PENDING, SENT) or cmd.next_attempt_at > self.clock():
                return
            now = self.clock()
            if now >= cmd.deadline:
                await self._finish(
                    cmd, EXPIRED, "platform", {"deadline": format_instant(cmd.deadline)}
                )
                return
            channel = self._channel_for(cmd)
            cmd.attempts += 1
            try:
                if channel is None:
                    raise DeliveryError(f"no adapter reaches {cmd.entity_id}")
                answer = await channel.deliver(cmd)
            except DeliveryError as exc:
                await self._undelivered(cmd, str(exc))
                return
            except Exception as exc:  # a broken channel is a delivery failure, visibly
                log.exception("channel %s failed on %s", getattr(channel, "name", "?"), cmd.id)
                await self._undelivered(cmd, f"{type(exc).__name__}: {exc}")
                return
            if isinstance(answer, Queued):
                await self._queued_for(cmd, channel.name)
                return
            await self._sent(cmd, channel.name, f"channel:{channel.name}")
            if answer is not None:
                await self._answered(cmd, answer, f"channel:{channel.name}")

    async def _sent(self, cmd: Command, channel: str, actor: str) -> None:
        now = self.clock()
        if cmd.sent_at is None:
            cmd.sent_at = now
        cmd.channel = channel
        cmd.next_attempt_at = now + self.retry_s
        await self._save(cmd, SENT, actor, {"attempt": cmd.attempts})

    async def _queued_for(self, cmd: Command, channel: str) -> None:
        """Kept by a relay: no resend before it reports the send (a pending command then
        expires at its deadline), and the next resend of a sent one after ``retry_s``."""
        now = self.clock()
        cmd.queued_at = cmd.updated_at = now
        cmd.next_attempt_at = cmd.deadline if cmd.state == PENDING else now + self.retry_s
        detail = {"queued": channel, "attempt": cmd.attempts}
        await self._write(
            [self._row(cmd)], [TransitionRow(cmd.id, now, cmd.state, "platform", detail)]
        )

    async def sent(self, command_id: str, *, channel: str, source: str) -> Command | None:
        """A relay published a queued command to its device: ``pending`` → ``sent`` (or,
        for a resend, a new attempt of the sent command). None for a command not under
        way; a report for one answered already is kept in its history only."""
        cmd = self._active.get(command_id)
        if cmd is None:
            log.info("%s sent command %s, which is no longer under way", source, command_id[:80])
            return None
        async with self._lock(cmd.id):
            if cmd.state in (PENDING, SENT):
                await self._sent(cmd, channel, source)
            else:
                detail = {"note": "sent after its answer", "channel": channel}
                transition = TransitionRow(cmd.id, self.clock(), cmd.state, source, detail)
                await self._write([], [transition])
        return cmd

    async def _undelivered(self, cmd: Command, reason: str) -> None:
        now = self.clock()
        if cmd.attempts >= self.max_attempts:
            await self._finish(cmd, FAILED, "platform", {"error": reason, "attempts": cmd.attempts})
            return
        cmd.next_attempt_at = now + self.retry_s * 2 ** (cmd.attempts - 1)
        cmd.updated_at = now
        await self._write(
            [self._row(cmd)],
            [
                TransitionRow(
                    cmd.id, now, cmd.state, "platform", {"retry": reason, "attempt": cmd.attempts}
                )
            ],
        )

    async def _answered(self, cmd: Command, answer: DeviceAnswer, source: str) -> None:
        detail: dict[str, Any] = {"accepted": answer.accepted}
        if answer.reason:
            detail["reason"] = answer.reason
        cmd.answer = answer.reason
        if not answer.accepted:
            await self._finish(cmd, REJECTED, source, detail)
            return
        now = self.clock()
        # instants travel with millisecond precision: compare at that precision
        cmd.ack_at = math.floor((answer.at if answer.at is not None else now) * 1000) / 1000
        if cmd.sent_at is None:
            cmd.sent_at = now
        detail["deviceAt"] = format_instant(cmd.ack_at)
        await self._save(cmd, ACKNOWLEDGED, source, detail)
        cmd.last_reported = {}  # only reports from the ack on count
        # a report that overtook the ack (they travel separately) is in the store
        entity = await self.broker.store.get_entity(cmd.entity_id) if cmd.early_report else None
        if entity is not None:
            for attr in cmd.expected:
                got = entity.attrs.get(attr)
                if (
                    got is not None
                    and got.observed_at is not None
                    and got.observed_at >= cmd.ack_at
                ):
                    cmd.last_reported[attr] = got.value
            await self._check_confirmed(cmd, "device")

    async def _check_confirmed(self, cmd: Command, source: str) -> None:
        if cmd.state != ACKNOWLEDGED:
            return
        if all(
            attr in cmd.last_reported and shows(want, cmd.last_reported[attr])
            for attr, want in cmd.expected.items()
        ):
            await self._finish(cmd, CONFIRMED, source, {"reported": dict(cmd.last_reported)})

    def _on_changed(self, subject: str, payload: dict[str, Any]) -> None:
        """Reports of devices with commands under way (called on the ingest path: quick)."""
        watched = self._by_entity
        if not watched:
            return
        for change in payload["changes"]:
            ids = watched.get(change["id"])
            if ids:
                self._spawn(self._on_report(list(ids), change))

    async def _on_report(self, command_ids: list[str], change: dict[str, Any]) -> None:
        observed = parse_instant(change["observedAt"], "observedAt")
        for command_id in command_ids:
            cmd = self._active.get(command_id)
            if cmd is None:
                continue
            async with self._lock(cmd.id):
                seen = {a: v for a, v in change["attrs"].items() if a in cmd.expected}
                if seen and cmd.state in (PENDING, SENT):
                    cmd.early_report = True
                if seen and cmd.state == ACKNOWLEDGED and observed >= (cmd.ack_at or 0.0):
                    cmd.last_reported.update(seen)
                    await self._check_confirmed(cmd, "device report")

    # -- timers ------------------------------------------------------------------------
    async def tick(self) -> None:
        """Run what is due now: resends, retries, expiries and time-outs."""
        now = self.clock()
        for cmd in list(self._active.values()):
            if cmd.state in (PENDING, SENT):
                if now >= cmd.deadline or (
                    cmd.state == SENT and cmd.timeout_at is not None and now >= cmd.timeout_at
                ):
                    async with self._lock(cmd.id):
                        await self._expire_or_time_out(cmd, now)
                elif now >= cmd.next_attempt_at:
                    if cmd.state == SENT and cmd.attempts >= self.max_attempts:
                        continue  # sent often enough: wait for the ack until the timeout
                    await self._attempt(cmd.id)
            elif cmd.state == ACKNOWLEDGED and cmd.timeout_at is not None and now >= cmd.timeout_at:
                async with self._lock(cmd.id):
                    if cmd.state == ACKNOWLEDGED:
                        await self._time_out(cmd)

    async def _expire_or_time_out(self, cmd: Command, now: float) -> None:
        if cmd.state not in (PENDING, SENT):
            return
        if cmd.state == SENT and cmd.timeout_at is not None and now >= cmd.timeout_at:
            await self._time_out(cmd)
        else:
            await self._finish(cmd, EXPIRED, "platform", {"deadline": format_instant(cmd.deadline)})

    async def _time_out(self, cmd: Command) -> None:
        """Out of time: keep what the device reports now; ``diverged`` if it differs."""
        cmd.last_reported = {**await self._reported(cmd.entity_id, cmd.expected)}
        cmd.diverged = any(
            a in cmd.last_reported and not shows(w, cmd.last_reported[a])
            for a, w in cmd.expected.items()
        )
        detail = {
            "acknowledged": cmd.ack_at is not None,
            "lastReported": dict(cmd.last_reported),
            "diverged": cmd.diverged,
        }
        await self._finish(cmd, TIMED_OUT, "platform", detail)

    # -- bookkeeping -------------------------------------------------------------------
    async def _write(
        self, rows: Sequence[CommandRow], transitions: Sequence[TransitionRow]
    ) -> None:
        """Keep rows and transitions; returns once they are committed.

        Writes made while a commit is under way share the next one (group commit), so
        a mode commanding hundreds of devices costs a few transactions, not thousands.
        """
        waiter = asyncio.get_running_loop().create_future()
        self._queued.append((rows, transitions, waiter))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await waiter

    async def _flush(self) -> None:
        while self._queued:
            await asyncio.sleep(0)  # let the writers of this turn of the loop join
            queued, self._queued = self._queued, []
            rows = {row.id: row for rows, _, _ in queued for row in rows}  # the newest wins
            transitions = [t for _, ts, _ in queued for t in ts]
            try:
                await self.log.save(list(rows.values()), transitions)
            except Exception as exc:
                for _, _, waiter in queued:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for _, _, waiter in queued:
                if not waiter.done():
                    waiter.set_result(None)

    def _lock(self, command_id: str) -> asyncio.Lock:
        lock = self._locks.get(command_id)
        if lock is None:
            lock = self._locks[command_id] = asyncio.Lock()
        return lock

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _track(self, cmd: Command) -> None:
        self._active[cmd.id] = cmd
        self._by_entity.setdefault(cmd.entity_id, set()).add(cmd.id)

    def _untrack(self, cmd: Command) -> None:
        self._active.pop(cmd.id, None)
        self._locks.pop(cmd.id, None)
        ids = self._by_entity.get(cmd.entity_id)
        if ids is not None:
            ids.discard(cmd.id)
            if not ids:
                del self._by_entity[cmd.entity_id]

    @staticmethod
    def _row(cmd: Command) -> CommandRow:
        return CommandRow(
            cmd.id,
            cmd.entity_id,
            cmd.state,
            cmd.created_at,
            cmd.updated_at,
            cmd.idempotency_key,
            cmd.to_doc(),
        )

    async def _save(self, cmd: Command, state: str, actor: str, detail: dict[str, Any]) -> None:
        """Move to ``state``, keep the transition, and publish it."""
        cmd.state = state
        cmd.updated_at = self.clock()
        await self._write(
            [self._row(cmd)], [TransitionRow(cmd.id, cmd.updated_at, state, actor, detail)]
        )
        await self.broker.bus.publish(COMMANDS_CHANGED, {"commands": [cmd.to_json()]})

    async def _finish(self, cmd: Command, state: str, actor: str, detail: dict[str, Any]) -> None:
        await self._save(cmd, state, actor, detail)
        self._untrack(cmd)

    async def _note(self, cmd: Command, what: str, source: str, answer: DeviceAnswer) -> None:
        """Keep an answer that changes nothing (late or repeated) in the command's history."""
        detail = {"note": what, "accepted": answer.accepted, "reason": answer.reason}
        await self._write([], [TransitionRow(cmd.id, self.clock(), cmd.state, source, detail)])

    async def _reported(self, entity_id: str, expected: dict[str, Any]) -> dict[str, Any]:
        entity = await self.broker.store.get_entity(entity_id)
        if entity is None:
            return {}
        return {a: entity.attrs[a].value for a in expected if a in entity.attrs}

    async def dead_letter(self, source: str, reason: str, where: str | None, payload: Any) -> None:
        """Keep a device message about commands that cannot be used, with the reason."""
        text = payload if isinstance(payload, str) else orjson.dumps(payload, default=str).decode()
        await self.broker.store.add_dead_letters(
            [DeadLetter(time.time(), source, reason, where, text[:65536])]
        )
