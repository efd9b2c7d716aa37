"""Notifications of NGSI-LD subscriptions, delivered at least once.

Each change event from the bus is matched against the subscriptions; every subscription
it concerns gets one notification holding all the entities of the event that meet its
``q`` and ``geoQ`` (so a batch of changes is one POST, not one per entity). Notifications
go to an outbox in the store before any delivery is tried; the delivery loop sends
what is due over pooled keep-alive connections (HTTP POST) or MQTT (QoS 1), removes
what an endpoint accepted (2xx, PUBACK) and puts the rest off with exponential
back-off. The outbox is the store's, so what was pending when the process died is
sent after it starts again.

A change committed just before a crash, whose event had not reached the notifier, is
not notified: the bus (NATS JetStream in production) is where that gap closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import httpx
import orjson

from citypilot.bus.base import EventBus
from citypilot.model.entity import CORE_CONTEXT, Entity
from citypilot.model.ids import type_of_id
from citypilot.model.ldcontext import link_header
from citypilot.model.timeutil import format_instant
from citypilot.notify.matching import meets_geo, meets_q, scopes_of
from citypilot.notify.subscription import (
    Compiled,
    definition,
    notification_body,
    receiver_headers,
    status_of,
    with_status_of,
)
from citypilot.store.base import EntityQuery, PendingNotification, Store
from citypilot.store.scope_query import meets_scope_q

log = logging.getLogger(__name__)
CHANGED = "entities.changed"
DELETED = "entities.deleted"
LINK = link_header(CORE_CONTEXT)
#: Renders the entities a subscription is notified of (visibility, masking, format,
#: linked entities); with ``deleted`` only their ids and types count.
Shaper = Callable[[Compiled, list[Entity], bool], Awaitable[list[dict[str, Any]]]]
#: Groups of change events whose entities are being read at once (their notifications
#: are still made and sent in the order of the changes).
READS_AHEAD = 4


@dataclass
class _Match:
    """A group of change events matched to the subscriptions, its entities to read."""

    events: list[dict[str, Any]]
    wanted: list[dict[str, list[str]]]  # per event: subscription id -> entity ids
    now: float
    read: list[str]  # the entities changed (not deleted) to read from the store
    names: frozenset[str] | None  # their attributes to read (None: all)


class _MqttLinks:
    """One connected MQTT client per broker, reconnected after a failure."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, int], aiomqtt.Client] = {}
        self._lock = asyncio.Lock()

    async def publish(self, host: str, port: int, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 (returns once the broker acknowledged)."""
        key = (host, port)
        async with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = aiomqtt.Client(host, port, timeout=5)
                await client.__aenter__()
                self._clients[key] = client
        try:
            await client.publish(topic, payload, qos=1, timeout=5)
        except Exception:
            self._clients.pop(key, None)
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            raise

    async def close(self) -> None:
        """Disconnect from every broker."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
        self._clients.clear()


class Notifier:
    """Matches changes to subscriptions, keeps notifications in the outbox, delivers them."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        shape: Shaper,
        *,
        retry_min_s: float = 1.0,
        retry_max_s: float = 300.0,
        batch: int = 1000,
        connections: int = 64,
        poll_s: float = 0.5,
        lease_s: float = 60.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``headers`` go with every notification (a tenant's ``NGSILD-Tenant``)."""
        self.store, self.bus, self.shape = store, bus, shape
        self.headers = dict(headers or {})
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.batch, self.poll_s = batch, poll_s
        #: how long a notification being sent is not taken by another sweep (a process
        #: that dies while sending leaves it to be sent again after that)
        self.lease_s = lease_s
        self.subs: dict[str, Compiled] = {}
        self._last_notified: dict[str, float] = {}
        self._next_interval: dict[str, float] = {}
        #: change events waiting to be matched (bounded: a full queue holds the publisher)
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        #: notifications being sent, and the outcomes waiting to be settled in the store
        self._inflight: set[int] = set()
        self._outcomes: list[tuple[PendingNotification, bool | None]] = []
        self._settle = asyncio.Event()
        self._slots = asyncio.Semaphore(connections)
        self._sending: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._unlisten: Callable[[], None] | None = None
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._http = httpx.AsyncClient(limits=limits, timeout=10.0)
        self._mqtt = _MqttLinks()

    # -- life ------------------------------------------------------------------
    async def start(self) -> None:
        """Load the subscriptions, listen to changes, start delivering."""
        for doc in await self.store.list_subscriptions():
            self.subs[doc["id"]] = Compiled.of(doc)
        self._listen_while_needed()
        self._tasks = [
            asyncio.create_task(self._match_forever()),
            asyncio.create_task(self._settle_forever()),
            asyncio.create_task(self._sweep_forever()),
            asyncio.create_task(self._intervals_forever()),
        ]

    async def stop(self) -> None:
        """Stop listening and delivering (what is pending stays in the outbox)."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for task in [*self._tasks, *self._sending]:
            task.cancel()
        for task in [*self._tasks, *self._sending]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.aclose()
        await self._mqtt.close()

    def _listen_while_needed(self) -> None:
        """Hear of changes from the first subscription on: a city without any pays
        nothing for notifications (no bus consumer). Once listening, go on when the
        last subscription goes (events are then dropped at once): a shared, durable
        consumer paused would hand the next subscription the changes made meanwhile."""
        if self.subs and self._unlisten is None:
            stops = [
                self.bus.listen(CHANGED, self._on_event, group="notifier"),
                # one durable consumer per subject: NATS binds a second subject given
                # the same group to the first one's consumer, whose filter misses it
                self.bus.listen(DELETED, self._on_event, group="notifier-deleted"),
            ]

            def unlisten() -> None:
                for stop in stops:
                    stop()

            self._unlisten = unlisten

    def contexts(self) -> list[str]:
        """The @contexts the subscriptions name for their notifications (``jsonldContext``)."""
        return [s.doc["jsonldContext"] for s in self.subs.values() if "jsonldContext" in s.doc]

    def put(self, doc: dict[str, Any]) -> None:
        """A subscription was created or changed."""
        self.subs[doc["id"]] = Compiled.of(doc)
        self._next_interval.pop(doc["id"], None)
        self._listen_while_needed()

    def drop(self, sub_id: str) -> None:
        """A subscription was deleted."""
        self.subs.pop(sub_id, None)
        self._listen_while_needed()

    async def refresh(self) -> None:
        """Take up the subscriptions created, changed or deleted through another process
        (the status this one counts is kept)."""
        docs = {d["id"]: d for d in await self.store.list_subscriptions()}
        for sub_id in [s for s in self.subs if s not in docs]:
            self.subs.pop(sub_id, None)
        for sub_id, doc in docs.items():
            current = self.subs.get(sub_id)
            if current is None:
                self.subs[sub_id] = Compiled.of(doc)
            elif definition(current.doc) != definition(doc):
                self.subs[sub_id] = Compiled.of(with_status_of(doc, current.doc))
        self._listen_while_needed()

    # -- matching --------------------------------------------------------------
    async def _entities(
        self, ids: Sequence[str], names: frozenset[str] | None
    ) -> dict[str, Entity]:
        """The entities of ``ids`` as stored, with the attributes ``names`` (None: all)."""
        found: dict[str, Entity] = {}
        attrs = None if names is None else tuple(sorted(names))
        for start in range(0, len(ids), 1000):
            chunk = tuple(ids[start : start + 1000])
            query = EntityQuery(ids=chunk, limit=len(chunk), attrs=attrs)
            entities, _ = await self.store.query_entities(query)
            found.update((e.id, e) for e in entities)
        return found

    def _throttled(self, sub: Compiled, now: float) -> bool:
        throttling = sub.doc.get("throttling")
        last = self._last_notified.get(sub.doc["id"])
        return throttling is not None and last is not None and now - last < throttling

    async def _notification(
        self, sub: Compiled, entities: list[Entity], now: float, deleted_at: float | None = None
    ) -> str | None:
        if deleted_at is None:
            entities = [
                e
                for e in entities
                if (sub.q is None or meets_q(sub.q, e))
                and (sub.scope_q is None or meets_scope_q(sub.scope_q, scopes_of(e)))
                and (sub.geo is None or meets_geo(sub.geo, e))
            ]
        deleted = deleted_at is not None
        data = await self.shape(sub, entities, deleted) if entities else []
        if not data:
            return None
        if deleted:
            data = [
                {"id": d["id"], "type": d["type"], "deletedAt": format_instant(now)} for d in data
            ]
        self._last_notified[sub.doc["id"]] = now
        ld = sub.doc["notification"]["endpoint"].get("accept") == "application/ld+json"
        return notification_body(sub.doc["id"], data, now, ld, sub.doc.get("jsonldContext"))

    async def _on_event(self, _subject: str, payload: dict[str, Any]) -> None:
        if self.subs:
            await self._events.put(payload)

    async def _match_forever(self) -> None:
        """Take the waiting events in groups and read each group's entities, up to
        :data:`READS_AHEAD` groups at once; :meth:`_finish_forever` makes their
        notifications in the order of the groups."""
        reads: asyncio.Queue[tuple[_Match, asyncio.Task[dict[str, Entity]]]] = asyncio.Queue(
            maxsize=READS_AHEAD
        )
        finisher = asyncio.create_task(self._finish_forever(reads))
        try:
            while True:
                events = [await self._events.get()]
                while not self._events.empty() and len(events) < 100:
                    events.append(self._events.get_nowait())
                try:
                    match = self._prepare(events)
                except Exception:
                    log.exception("matching changes to the subscriptions failed")
                    continue
                if match is not None:
                    read = asyncio.create_task(self._entities(match.read, match.names))
                    await reads.put((match, read))
        finally:
            finisher.cancel()
            while not reads.empty():
                reads.get_nowait()[1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await finisher

    async def _finish_forever(
        self, reads: asyncio.Queue[tuple[_Match, asyncio.Task[dict[str, Entity]]]]
    ) -> None:
        """The notifications of each group of events, once its entities are read, in turn."""
        while True:
            match, read = await reads.get()
            try:
                await self._finish(match, await read)
            except asyncio.CancelledError:
                read.cancel()
                raise
            except Exception:
                log.exception("matching changes to the subscriptions failed")

    def _prepare(self, events: list[dict[str, Any]]) -> _Match | None:
        """Which subscriptions each event concerns, and which entities to read for them
        all (one store read and one outbox write for a group of events, so a backlog is
        caught up in few steps); None when none concerns any."""
        now = time.time()
        live = [
            s
            for s in self.subs.values()
            if "timeInterval" not in s.doc and status_of(s.doc, now) == "active"
        ]
        if not live:
            return None
        wanted: list[dict[str, list[str]]] = []  # per event: subscription -> entity ids
        for payload in events:
            per_sub: dict[str, list[str]] = {}
            for change in payload.get("changes", ()):
                for sub in live:
                    if sub.selects(change):
                        per_sub.setdefault(sub.doc["id"], []).append(change["id"])
            types = payload.get("types", {})  # an id need not name its type
            for entity_id in payload.get("ids", ()):  # entities deleted
                for sub in live:
                    type_name = types.get(entity_id) or type_of_id(entity_id)
                    if sub.on_deletion and sub.names(entity_id, type_name):
                        per_sub.setdefault(sub.doc["id"], []).append(entity_id)
            wanted.append(per_sub)
        changed = {c["id"] for p in events for c in p.get("changes", ())}
        ids = sorted({i for per_sub in wanted for found in per_sub.values() for i in found})
        if not ids:
            return None
        read = [i for i in ids if i in changed]
        return _Match(events, wanted, now, read, _reads(live, wanted))

    async def _finish(self, match: _Match, entities: dict[str, Entity]) -> None:
        """Each event gives each subscription it concerns one notification: into the
        outbox, then sent."""
        now = match.now
        items = []
        for payload, per_sub in zip(match.events, match.wanted, strict=True):
            deleted = "ids" in payload
            for sub_id, found in per_sub.items():
                sub = self.subs.get(sub_id)
                if sub is None or self._throttled(sub, now):
                    continue
                if deleted:  # the entity as it was named: id, type, when it went
                    types = payload.get("types", {})
                    chosen = [Entity(i, types.get(i) or type_of_id(i)) for i in found]
                    body = await self._notification(sub, chosen, now, deleted_at=now)
                else:
                    chosen = [entities[i] for i in found if i in entities]
                    body = await self._notification(sub, chosen, now)
                if body is not None:
                    items.append((sub_id, body))
        self.dispatch(await self.store.add_notifications(items, now + self.lease_s))

    async def _intervals_forever(self) -> None:
        while True:
            now = time.time()
            for sub_id, sub in list(self.subs.items()):
                interval = sub.doc.get("timeInterval")
                if interval is None or status_of(sub.doc, now) != "active":
                    continue
                if now < self._next_interval.get(sub_id, 0.0):
                    continue
                self._next_interval[sub_id] = now + interval
                try:
                    await self._notify_current(sub, now)
                except Exception:
                    log.exception("periodic notification of %s failed", sub_id)
            await asyncio.sleep(min(self.poll_s, 0.2))

    async def _notify_current(self, sub: Compiled, now: float) -> None:
        """A periodic subscription's notification: the entities it selects, as they are."""
        entities: dict[str, Entity] = {}
        for sel_type, sel_id, _pattern in sub.selectors:
            pattern = next(
                (s.get("idPattern") for s in sub.doc["entities"] if s["type"] == sel_type), None
            )
            query = EntityQuery(
                types=(sel_type,),
                ids=(sel_id,) if sel_id else None,
                id_pattern=pattern if sel_id is None else None,
                q=sub.q,
                scope_q=sub.scope_q,
                geo=sub.geo,
                limit=1000,
            )
            found, _ = await self.store.query_entities(query)
            entities.update((e.id, e) for e in found)
        body = await self._notification(sub, list(entities.values()), now)
        if body is not None:
            notes = await self.store.add_notifications([(sub.doc["id"], body)], now + self.lease_s)
            self.dispatch(notes)

    # -- delivery ----------------------------------------------------------------
    async def _send(self, note: PendingNotification) -> bool | None:
        """Deliver one notification: True if the endpoint took it, None if its
        subscription is gone, False otherwise."""
        sub = self.subs.get(note.subscription_id)
        if sub is None:
            return None
        endpoint = sub.doc["notification"]["endpoint"]
        uri = endpoint["uri"]
        context = sub.doc.get("jsonldContext")
        link = LINK if context is None else link_header(context)
        try:
            if uri.startswith("mqtt://"):
                parts = urlsplit(uri)
                metadata = {
                    **receiver_headers(endpoint),
                    **self.headers,
                    "Content-Type": "application/json",
                }
                message = {"metadata": {**metadata, "Link": link}, "body": orjson.loads(note.body)}
                await self._mqtt.publish(
                    parts.hostname or "",
                    parts.port or 1883,
                    parts.path.lstrip("/"),
                    orjson.dumps(message),
                )
                return True
            ld = endpoint.get("accept") == "application/ld+json"
            headers = {
                **receiver_headers(endpoint),
                **self.headers,
                "Content-Type": "application/ld+json" if ld else "application/json",
            }
            if not ld:
                headers["Link"] = link
            r = await self._http.post(uri, content=note.body, headers=headers)
            return 200 <= r.status_code < 300
        except Exception as exc:  # any failure is retried later; never stops the loop
            log.debug("notification %s to %s failed: %s", note.id, uri, exc)
            return False

    def _record(self, sub_id: str, ok: bool, now: float) -> dict[str, Any] | None:
        sub = self.subs.get(sub_id)
        if sub is None:
            return None
        note = sub.doc["notification"]
        note["timesSent"] = note.get("timesSent", 0) + 1
        note["lastNotification"] = format_instant(now)
        note["lastSuccess" if ok else "lastFailure"] = format_instant(now)
        note["status"] = "ok" if ok else "failed"
        return sub.doc

    def dispatch(self, notes: Sequence[PendingNotification]) -> None:
        """Send notifications kept in the outbox, each as soon as a connection is free."""
        for note in notes:
            if note.id in self._inflight:
                continue
            self._inflight.add(note.id)
            task = asyncio.create_task(self._deliver(note))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _deliver(self, note: PendingNotification) -> None:
        async with self._slots:
            ok = await self._send(note)
        self._outcomes.append((note, ok))
        self._settle.set()

    async def settle(self) -> None:
        """Record the outcomes so far in the store, in one transaction: drop what was
        delivered, put failures off with back-off, save the subscriptions' status."""
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return
        now = time.time()
        delivered, retry, touched = [], [], {}
        for note, ok in outcomes:
            if ok is None or ok:
                delivered.append(note.id)
            else:
                delay = min(self.retry_max_s, self.retry_min_s * 2 ** min(note.attempts, 30))
                retry.append((note.id, now + delay))
            if ok is not None:
                doc = self._record(note.subscription_id, bool(ok), now)
                if doc is not None:
                    touched[doc["id"]] = doc
        try:
            await self.store.settle_notifications(delivered, retry, list(touched.values()))
        finally:
            self._inflight.difference_update(note.id for note, _ in outcomes)

    async def _settle_forever(self) -> None:
        while True:
            await self._settle.wait()
            self._settle.clear()
            try:
                await self.settle()
            except Exception:
                log.exception("recording notification outcomes failed; the outbox keeps them")

    async def _sweep_forever(self) -> None:
        """Take up subscriptions changed elsewhere; claim and send what is due in the
        outbox: retries, what was pending when a process stopped or died sending."""
        while True:
            try:
                await self.refresh()
                if self.subs:  # the outbox holds notifications of subscriptions only
                    now = time.time()
                    due = await self.store.due_notifications(now, self.batch, now + self.lease_s)
                    self.dispatch(due)
            except Exception:
                log.exception("reading the notification outbox failed; trying again")
            await asyncio.sleep(self.poll_s)


def _reads(
    live: Sequence[Compiled], wanted: Sequence[dict[str, list[str]]]
) -> frozenset[str] | None:
    """The attributes the notifications of these matches need (None: all)."""
    concerned = {sub_id for per_sub in wanted for sub_id in per_sub}
    names: set[str] = set()
    for sub in live:
        if sub.doc["id"] in concerned:
            reads = sub.reads
            if reads is None:
                return None
            names |= reads
    return frozenset(names)
