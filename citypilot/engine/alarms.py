"""The alarm service: raise, clear, acknowledge, shelve, comment and suppress alarms.

Rules (``engine/rules.py``), devices' own reported states and operators call it.
There is at most one open alarm per (rule, entity): raising it again counts a
repeat. Each alarm is an entity of type ``Alarm`` written through the broker (so
both stores keep it, it survives a restart, lies under the scopes of its source's
municipality and department, and is in history), and every change is also
published on the bus as ``alarms.changed`` (``{"alarms": [Alarm.to_json(), ...]}``).

Open alarms are held in memory (read back from the store at start); closed ones
are read from the store. Time is read from ``clock``; shelving ends in
:meth:`AlarmService.tick`, which a background task calls every ``tick_s`` (tests
call it themselves). City modes suppress alarms by design with
:meth:`AlarmService.suppress` and lift that with :meth:`AlarmService.unsuppress`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from citypilot.broker import Broker
from citypilot.engine.alarm_figures import Annunciation, alarm_figures
from citypilot.engine.alarm_model import (
    ACTIVE_ACK,
    ACTIVE_STATES,
    ACTIVE_UNACK,
    ALARM_TYPE,
    CLEARED,
    CLEARED_UNACK,
    MAX_COMMENTS,
    MAX_MESSAGE,
    SEVERITIES,
    STATES,
    Alarm,
    alarm_from_entity,
)
from citypilot.engine.timers import start_ticker, stop_ticker
from citypilot.model.errors import BadRequestData, Conflict, ResourceNotFound
from citypilot.model.geometry import validate_geometry
from citypilot.model.ids import entity_id
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.security.scopes import Visibility
from citypilot.store.base import EntityQuery, EntityScope
from citypilot.store.query import And, QueryNode, Term

log = logging.getLogger(__name__)

ALARMS_CHANGED = "alarms.changed"
MAX_SHELVE_S = 7 * 86400.0
MAX_COMMENT_CHARS = 2000
FIGURES_WINDOW_S = 86400.0


@dataclass(frozen=True)
class AlarmScope:
    """Which alarms a suppression covers: every condition given must hold.

    ``municipality``: the source's municipality id; ``types``: source entity types;
    ``rules``: rule ids; ``area``: a GeoJSON Polygon or MultiPolygon the source's
    location lies in. An empty scope covers every alarm (the whole metropole).
    """

    municipality: str | None = None
    types: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    area: dict[str, Any] | None = None

    def covers(self, alarm: Alarm) -> bool:
        """Whether ``alarm`` lies in this scope."""
        if self.municipality is not None and alarm.municipality != self.municipality:
            return False
        if self.types and alarm.source_type not in self.types:
            return False
        if self.rules and alarm.rule not in self.rules:
            return False
        if self.area is not None:
            point = (alarm.location or {}).get("coordinates")
            if alarm.location is None or alarm.location.get("type") != "Point" or not point:
                return False
            return _shape(self.area).covers(_point(point[0], point[1]))
        return True


def _shape(geometry: dict[str, Any]) -> Any:
    from shapely.geometry import shape

    return shape(geometry)


def _point(lon: float, lat: float) -> Any:
    from shapely.geometry import Point

    return Point(lon, lat)


def check_scope_area(area: Any, where: str = "area") -> dict[str, Any]:
    """A suppression area: a GeoJSON Polygon or MultiPolygon (BadRequestData otherwise)."""
    if not isinstance(area, dict) or area.get("type") not in ("Polygon", "MultiPolygon"):
        raise BadRequestData(f"{where} must be a GeoJSON Polygon or MultiPolygon", where)
    validate_geometry(area, where)
    return area


class AlarmService:
    """Keeps the open alarms, writes every change through the broker, and publishes it."""

    def __init__(
        self,
        broker: Broker,
        *,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.tick_s = tick_s
        self._open: dict[str, Alarm] = {}  # alarm id -> open alarm
        self._by_key: dict[tuple[str, str], str] = {}  # (rule, entity) -> open alarm id
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._suppressions: dict[str, tuple[AlarmScope, str, float]] = {}
        self._annunciations: deque[Annunciation] = deque()
        # (at, alarm id, scope of its source): raises and clears
        self._transitions: deque[tuple[float, str, EntityScope]] = deque()
        self._ticker: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------
    async def start(self, *, run_timers: bool = True) -> None:
        """Read back the open alarms (and the last day's, for the figures); start timers."""
        since = self.clock() - FIGURES_WINDOW_S
        offset = 0
        while True:
            page, _ = await self.broker.store.query_entities(
                EntityQuery(types=(ALARM_TYPE,), limit=1000, offset=offset)
            )
            for entity in page:
                alarm = alarm_from_entity(entity)
                if alarm.is_open:
                    self._hold(alarm)
                if alarm.last_raised_at >= since:
                    self._remember_log(alarm, since)
            offset += len(page)
            if len(page) < 1000:
                break
        if run_timers:
            self._ticker = start_ticker(self.tick_s, self.tick, "alarm-timers")
        await self.tick()

    async def stop(self) -> None:
        """Stop the timers."""
        await stop_ticker(self._ticker)

    async def tick(self) -> None:
        """Return the alarms whose shelving has ended."""
        now = self.clock()
        for alarm in list(self._open.values()):
            until = alarm.shelved_until()
            if until is not None and until <= now:
                async with self._lock(alarm.key):
                    if alarm.shelved is not None and (alarm.shelved_until() or 0) <= now:
                        alarm.shelved = None
                        alarm.note(now, "platform", "unshelved", reason="shelving expired")
                        await self._save(alarm)

    # -- raise and clear (rules, devices) ---------------------------------------------
    async def raise_alarm(
        self,
        rule: str,
        source: str,
        severity: str,
        message: str,
        *,
        value: Any = None,
        observed_at: float | None = None,
        by: str | None = None,
    ) -> Alarm:
        """Raise the alarm of (rule, source), or count a repeat of the open one.

        A repeat updates the message, value and severity; an alarm raised again after
        it cleared but before anyone acknowledged it becomes active again.
        """
        if severity not in SEVERITIES:
            raise BadRequestData(f"severity must be one of {', '.join(SEVERITIES)}", "severity")
        now = self.clock()
        actor = by or f"rule:{rule}"
        reading: dict[str, Any] = {"value": value}
        if observed_at is not None:
            reading["observedAt"] = format_instant(observed_at)
        async with self._lock((rule, source)):
            alarm = self._open.get(self._by_key.get((rule, source), ""))
            if alarm is not None:
                alarm.count += 1
                alarm.last_raised_at = now
                alarm.severity, alarm.message = severity, message[:MAX_MESSAGE]
                alarm.reading = reading
                if alarm.state == CLEARED_UNACK:
                    alarm.state, alarm.cleared_at = ACTIVE_UNACK, None
                    alarm.note(now, actor, "raised again", count=alarm.count)
                    self._annunciate(alarm, now)
                else:
                    alarm.note(now, actor, "repeated", count=alarm.count)
                await self._save(alarm)
                return alarm
            alarm = await self._new(rule, source, severity, message[:MAX_MESSAGE], reading, now)
            alarm.note(now, actor, "raised", severity=severity)
            suppression = self._suppression_of(alarm)
            if suppression is not None:
                alarm.suppressed = suppression
            self._annunciate(alarm, now)
            await self._save(alarm, create=True)
            self._hold(alarm)
            return alarm

    async def clear_alarm(self, rule: str, source: str, *, by: str | None = None) -> Alarm | None:
        """Clear the open alarm of (rule, source); None when there is none active."""
        now = self.clock()
        async with self._lock((rule, source)):
            alarm = self._open.get(self._by_key.get((rule, source), ""))
            if alarm is None or alarm.state not in ACTIVE_STATES:
                return None
            alarm.cleared_at = now
            alarm.state = CLEARED if alarm.state == ACTIVE_ACK else CLEARED_UNACK
            alarm.note(now, by or f"rule:{rule}", "cleared")
            self._transitions.append((now, alarm.id, _scope(alarm)))
            await self._close_if_done(alarm)
            await self._save(alarm)
            return alarm

    # -- operators --------------------------------------------------------------------
    async def acknowledge(self, alarm_id: str, by: str, note: str = "") -> Alarm:
        """Acknowledge an alarm; acknowledging it again changes nothing (idempotent)."""
        alarm = await self.get(alarm_id)
        async with self._lock(alarm.key):
            alarm = await self.get(alarm_id)
            if alarm.state not in (ACTIVE_UNACK, CLEARED_UNACK):
                return alarm
            now = self.clock()
            alarm.acknowledged = {"by": by, "at": format_instant(now)}
            if note:
                alarm.acknowledged["note"] = _text(note, "note")
            alarm.state = ACTIVE_ACK if alarm.state == ACTIVE_UNACK else CLEARED
            alarm.note(now, by, "acknowledged")
            await self._close_if_done(alarm)
            await self._save(alarm)
            return alarm

    async def shelve(self, alarm_id: str, by: str, duration_s: float, reason: str) -> Alarm:
        """Shelve an open alarm for ``duration_s``: it returns by itself afterwards."""
        if not 0 < duration_s <= MAX_SHELVE_S:
            raise BadRequestData(
                f"duration must lie between 1 s and {MAX_SHELVE_S:.0f} s (7 days)", "duration"
            )
        alarm = await self.get(alarm_id)
        async with self._lock(alarm.key):
            alarm = await self.get(alarm_id)
            if not alarm.is_open:
                raise Conflict(f"alarm {alarm.id} is cleared: there is nothing to shelve", "id")
            now = self.clock()
            until = format_instant(now + duration_s)
            alarm.shelved = {
                "by": by,
                "at": format_instant(now),
                "until": until,
                "reason": _text(reason, "reason"),
            }
            alarm.note(now, by, "shelved", until=until)
            await self._save(alarm)
            return alarm

    async def unshelve(self, alarm_id: str, by: str) -> Alarm:
        """End an alarm's shelving before its time (nothing happens if it is not shelved)."""
        alarm = await self.get(alarm_id)
        async with self._lock(alarm.key):
            alarm = await self.get(alarm_id)
            if alarm.shelved is not None:
                alarm.shelved = None
                alarm.note(self.clock(), by, "unshelved")
                await self._save(alarm)
            return alarm

    async def comment(self, alarm_id: str, by: str, text: str) -> Alarm:
        """Add an operator's comment to an alarm (open or closed)."""
        body = _text(text, "text")
        if not body:
            raise BadRequestData("text must not be empty", "text")
        alarm = await self.get(alarm_id)
        async with self._lock(alarm.key):
            alarm = await self.get(alarm_id)
            if len(alarm.comments) >= MAX_COMMENTS:
                raise Conflict(f"alarm {alarm.id} has {MAX_COMMENTS} comments already", "text")
            now = self.clock()
            alarm.comments = [*alarm.comments, {"by": by, "at": format_instant(now), "text": body}]
            alarm.note(now, by, "commented")
            await self._save(alarm)
            return alarm

    # -- suppression by design (city modes) -----------------------------------------------
    async def suppress(self, key: str, scope: AlarmScope, by: str) -> int:
        """Suppress the open alarms in ``scope``, and those raised there later, until
        :meth:`unsuppress` with the same ``key`` (a mode's name). Returns how many
        open alarms it covered."""
        now = self.clock()
        self._suppressions[key] = (scope, by, now)
        covered = 0
        for alarm in list(self._open.values()):
            if alarm.suppressed is None and scope.covers(alarm):
                async with self._lock(alarm.key):
                    alarm.suppressed = {"by": by, "key": key, "since": format_instant(now)}
                    alarm.note(now, by, "suppressed", key=key)
                    await self._save(alarm)
                covered += 1
        return covered

    async def unsuppress(self, key: str, by: str) -> int:
        """Lift the suppression ``key``; returns how many open alarms it released."""
        self._suppressions.pop(key, None)
        now = self.clock()
        released = 0
        for alarm in list(self._open.values()):
            if alarm.suppressed is not None and alarm.suppressed.get("key") == key:
                async with self._lock(alarm.key):
                    alarm.suppressed = self._suppression_of(alarm)
                    alarm.note(now, by, "unsuppressed", key=key)
                    await self._save(alarm)
                released += 1
        return released

    def suppressions(self) -> dict[str, dict[str, Any]]:
        """The suppressions in force, by key: who set them and since when."""
        return {
            k: {"by": by, "since": format_instant(at)}
            for k, (_, by, at) in self._suppressions.items()
        }

    def _suppression_of(self, alarm: Alarm) -> dict[str, Any] | None:
        for key, (scope, by, at) in self._suppressions.items():
            if scope.covers(alarm):
                return {"by": by, "key": key, "since": format_instant(at)}
        return None

    # -- reading ------------------------------------------------------------------------
    async def get(self, alarm_id: str) -> Alarm:
        """One alarm by its entity id or local id; ResourceNotFound otherwise."""
        full = alarm_id if alarm_id.startswith("urn:") else entity_id(ALARM_TYPE, alarm_id)
        held = self._open.get(full)
        if held is not None:
            return held
        if len(full) <= 256:
            entity = await self.broker.store.get_entity(full)
            if entity is not None and entity.type == ALARM_TYPE:
                return alarm_from_entity(entity)
        raise ResourceNotFound(f"there is no alarm {alarm_id[:80]!r}", "id")

    def open_alarm(self, rule: str, source: str) -> Alarm | None:
        """The open alarm of (rule, entity), or None."""
        return self._open.get(self._by_key.get((rule, source), ""))

    def open_alarms(self) -> list[Alarm]:
        """Every open alarm, newest first."""
        return sorted(self._open.values(), key=lambda a: (a.raised_at, a.id), reverse=True)

    async def search(
        self,
        *,
        states: Collection[str] = (),
        severities: Collection[str] = (),
        rule: str | None = None,
        entity: str | None = None,
        shelved: bool | None = None,
        suppressed: bool | None = None,
        visible: Visibility | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Alarm], int]:
        """A page of alarms, newest first, and how many match.

        Without ``states`` the open alarms; ``shelved`` and ``suppressed`` filter open
        alarms only (a closed alarm is neither).
        """
        for name, values, allowed in (
            ("state", states, STATES),
            ("severity", severities, SEVERITIES),
        ):
            bad = [v for v in values if v not in allowed]
            if bad:
                raise BadRequestData(
                    f"{name} {bad[0][:40]!r} is not one of {', '.join(allowed)}", name
                )
        if CLEARED not in states:
            found = [
                a
                for a in self.open_alarms()
                if (not states or a.state in states)
                and (not severities or a.severity in severities)
                and (rule is None or a.rule == rule)
                and (entity is None or a.source == entity)
                and (shelved is None or (a.shelved is not None) == shelved)
                and (suppressed is None or (a.suppressed is not None) == suppressed)
                and _visible(visible, a)
            ]
            return found[offset : offset + limit], len(found)
        if shelved or suppressed:
            what = "shelved" if shelved else "suppressed"
            raise BadRequestData(f"{what}=true finds open alarms only, not cleared ones", what)
        return await self._stored(states, severities, rule, entity, visible, limit, offset)

    async def _stored(
        self,
        states: Collection[str],
        severities: Collection[str],
        rule: str | None,
        entity: str | None,
        visible: Visibility | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Alarm], int]:
        terms: list[QueryNode] = [Term("state", "==", tuple(states))]
        if severities:
            terms.append(Term("severity", "==", tuple(severities)))
        if rule is not None:
            terms.append(Term("rule", "==", (rule,)))
        if entity is not None:
            terms.append(Term("alarmSource", "==", (entity,)))
        query = EntityQuery(types=(ALARM_TYPE,), q=And(tuple(terms)), limit=1, count=True)
        _, total = await self.broker.store.query_entities(query)
        total = total or 0
        # the store orders by creation: newest first is the end of its order
        start = max(0, total - offset - limit)
        stop = max(0, total - offset)
        if stop <= start:
            return [], total
        page, _ = await self.broker.store.query_entities(
            EntityQuery(types=(ALARM_TYPE,), q=And(tuple(terms)), limit=stop - start, offset=start)
        )
        alarms = [alarm_from_entity(e) for e in reversed(page)]
        return [a for a in alarms if _visible(visible, a)], total

    def figures(
        self,
        operators: int = 1,
        window_s: float = FIGURES_WINDOW_S,
        visible: Visibility | None = None,
    ) -> dict[str, Any]:
        """The ISA-18.2 alarm-management figures over the last ``window_s`` (see
        ``engine/alarm_figures.py``), of the alarms ``visible`` covers (None: all)."""
        now = self.clock()
        self._forget(now - max(window_s, FIGURES_WINDOW_S))
        since = now - window_s

        def shown(scope: EntityScope) -> bool:
            return visible is None or visible.covers(*scope)

        return alarm_figures(
            [a for a in self._annunciations if a.at >= since and shown(a.scope)],
            [(at, i) for at, i, scope in self._transitions if at >= since and shown(scope)],
            [a for a in self._open.values() if a.state in ACTIVE_STATES and _visible(visible, a)],
            now=now,
            window_s=window_s,
            operators=operators,
        )

    # -- bookkeeping ----------------------------------------------------------------------
    async def _new(
        self,
        rule: str,
        source: str,
        severity: str,
        message: str,
        reading: dict[str, Any],
        now: float,
    ) -> Alarm:
        source_type = source.split(":")[2] if source.count(":") >= 3 else ""
        found = await self.broker.store.get_entity(source) if len(source) <= 256 else None
        location = municipality = department = None
        if found is not None:
            source_type = found.type
            loc = found.attrs.get("location")
            if loc is not None and isinstance(loc.value, dict) and loc.value.get("type") == "Point":
                location = loc.value
            ref = found.attrs.get("refMunicipality")
            municipality = None if ref is None else ref.value
            dep = found.attrs.get("department")
            department = None if dep is None else dep.value
        if department is None and source_type in self.broker.registry:
            department = self.broker.registry.get(source_type).department
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
        return Alarm(
            id=entity_id(ALARM_TYPE, f"{stamp}-{secrets.token_hex(4)}"),
            rule=rule,
            source=source,
            source_type=source_type,
            severity=severity,
            message=message,
            reading=reading,
            raised_at=now,
            last_raised_at=now,
            location=location,
            municipality=municipality,
            department=department,
        )

    async def _close_if_done(self, alarm: Alarm) -> None:
        if alarm.state == CLEARED:
            alarm.shelved = alarm.suppressed = None
            self._release(alarm)

    def _hold(self, alarm: Alarm) -> None:
        self._open[alarm.id] = alarm
        self._by_key[alarm.key] = alarm.id

    def _release(self, alarm: Alarm) -> None:
        self._open.pop(alarm.id, None)
        if self._by_key.get(alarm.key) == alarm.id:
            del self._by_key[alarm.key]
            self._locks.pop(alarm.key, None)

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _annunciate(self, alarm: Alarm, now: float) -> None:
        scope = _scope(alarm)
        self._annunciations.append(
            Annunciation(now, alarm.rule, alarm.source, alarm.severity, scope)
        )
        self._transitions.append((now, alarm.id, scope))

    def _remember_log(self, alarm: Alarm, since: float) -> None:
        """Feed the figures with a stored alarm's raises and clears since ``since``."""
        scope = _scope(alarm)
        for entry in alarm.log:
            at = parse_instant(entry["at"], "at", bounded=False)
            if at < since:
                continue
            if entry["action"] in ("raised", "raised again"):
                self._annunciations.append(
                    Annunciation(at, alarm.rule, alarm.source, alarm.severity, scope)
                )
            if entry["action"] in ("raised", "raised again", "cleared"):
                self._transitions.append((at, alarm.id, scope))

    def _forget(self, before: float) -> None:
        while self._annunciations and self._annunciations[0].at < before:
            self._annunciations.popleft()
        while self._transitions and self._transitions[0][0] < before:
            self._transitions.popleft()

    async def _save(self, alarm: Alarm, create: bool = False) -> None:
        """Write the alarm through the broker and publish it on ``alarms.changed``."""
        doc = alarm.attributes()
        if create:
            await self.broker.create_entity({"id": alarm.id, "type": ALARM_TYPE, **doc})
        else:
            attrs = await self.broker.parse_fragment(alarm.id, doc)
            await self.broker.write_attrs(alarm.id, attrs, "append")
        await self.broker.bus.publish(ALARMS_CHANGED, {"alarms": [alarm.to_json()]})


def _scope(alarm: Alarm) -> EntityScope:
    """What decides who sees an alarm: its source's type, municipality and department."""
    return (alarm.source_type or ALARM_TYPE, alarm.municipality, alarm.department)


def _visible(visible: Visibility | None, alarm: Alarm) -> bool:
    """Whether the caller may see the alarm (None: no restriction)."""
    return visible is None or visible.covers(*_scope(alarm))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequestData(f"{where} must be a string", where)
    if len(value) > MAX_COMMENT_CHARS:
        raise BadRequestData(f"{where} is longer than {MAX_COMMENT_CHARS} characters", where)
    return value.strip()
