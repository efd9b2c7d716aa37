"""The live stream: entity changes pushed over a WebSocket, filtered and batched per frame.

Each connection has a filter (types, ids, bounding box) the client may replace at
any time by sending ``{"types": [...], "ids": [...], "bbox": [minLon, minLat, maxLon,
maxLat]}``. Changes are merged per entity between frames, so a client that is slow
receives the latest state of each entity instead of a growing backlog. Frames are
``{"type": "changes", "changes": [...], "deleted": [...]}``, with ``"commands": [...]``
(the latest state of each device command that changed, see docs/commands.md) when
there are any.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from citypilot.api.access import StreamAccess
from citypilot.api.deps import authenticate, principal_from_token
from citypilot.api.scope_index import ScopeIndex
from citypilot.broker import CHANGED, DELETED
from citypilot.bus.base import EventBus
from citypilot.engine.commands import COMMANDS_CHANGED
from citypilot.model.errors import CityPilotError, Unauthorized

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["stream"])
POLICY_VIOLATION = 1008
#: The subprotocol the server answers with; the token travels as ``bearer.<token>``.
SUBPROTOCOL = "citypilot.stream"
BEARER_PREFIX = "bearer."


def stream_token(websocket: WebSocket) -> str | None:
    """The bearer token of a stream: the offered subprotocol ``bearer.<token>`` (browsers),
    or the Authorization header (other clients). A token in the URL is refused: URLs
    end up in logs and browser histories."""
    if "token" in websocket.query_params:
        raise Unauthorized(
            "a token in the URL is refused: offer it as the WebSocket subprotocol "
            f"'{BEARER_PREFIX}<token>' beside '{SUBPROTOCOL}', or send an Authorization header",
            "token",
        )
    for offered in websocket.scope.get("subprotocols", []):
        if offered.startswith(BEARER_PREFIX):
            return offered[len(BEARER_PREFIX) :]
    header = websocket.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None


@dataclass
class StreamFilter:
    """Which changes a client wants: by type, by id, inside a box (None: any)."""

    types: frozenset[str] | None = None
    ids: frozenset[str] | None = None
    bbox: tuple[float, float, float, float] | None = None

    def matches(self, change: dict[str, Any]) -> bool:
        """Whether a change passes this filter."""
        if self.types is not None and change["type"] not in self.types:
            return False
        if self.ids is not None and change["id"] not in self.ids:
            return False
        if self.bbox is not None:
            lon, lat = change.get("lon"), change.get("lat")
            if lon is None or lat is None:
                return False
            x0, y0, x1, y1 = self.bbox
            return x0 <= lon <= x1 and y0 <= lat <= y1
        return True


def parse_filter(doc: Any) -> StreamFilter:
    """Read a filter message; CityPilotError naming the bad key."""
    from citypilot.model.errors import BadRequestData

    if not isinstance(doc, dict):
        raise BadRequestData("a filter must be a JSON object", "filter")
    out = StreamFilter()
    for key in ("types", "ids"):
        value = doc.get(key)
        if value is not None:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise BadRequestData(f"{key} must be a list of strings", key)
            setattr(out, key, frozenset(value))
    bbox = doc.get("bbox")
    if bbox is not None:
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, int | float) for v in bbox)
            or bbox[0] > bbox[2]
            or bbox[1] > bbox[3]
        ):
            raise BadRequestData("bbox must be [minLon, minLat, maxLon, maxLat]", "bbox")
        out.bbox = tuple(float(v) for v in bbox)
    return out


@dataclass(eq=False)
class Subscriber:
    """One connected client: its filter and what is pending for its next frame."""

    filter: StreamFilter
    #: What the subscriber's grants let it receive (None: everything).
    access: StreamAccess | None = None
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → latest state

    def take(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Everything pending, emptied."""
        changes, deleted = list(self.pending.values()), sorted(self.deleted)
        self.pending, self.deleted = {}, set()
        self.wake.clear()
        return changes, deleted

    def take_commands(self) -> list[dict[str, Any]]:
        """The latest state of each command that changed since the last frame, emptied."""
        commands, self.commands = list(self.commands.values()), {}
        return commands


class StreamHub:
    """Fans bus events out to the connected clients' pending frames."""

    def __init__(self, bus: EventBus, scopes: ScopeIndex | None = None) -> None:
        self.subscribers: set[Subscriber] = set()
        self.scopes = scopes or ScopeIndex()
        self._unsubscribe = [
            bus.listen(CHANGED, self._on_changed),
            bus.listen(DELETED, self._on_deleted),
            bus.listen(COMMANDS_CHANGED, self._on_commands),
        ]

    def close(self) -> None:
        """Stop listening to the bus."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    def _on_changed(self, subject: str, payload: dict[str, Any]) -> None:
        observe = self.scopes.observe
        scoped = [(change, observe(change)) for change in payload["changes"]]
        for sub in self.subscribers:
            matches = sub.filter.matches
            pending = sub.pending
            admit = sub.access.admit if sub.access is not None else None
            added = False
            for change, scope in scoped:
                if admit is not None:
                    change = admit(change, scope)
                    if change is None:
                        continue
                if matches(change):
                    old = pending.get(change["id"])
                    if old is None:
                        pending[change["id"]] = {**change, "attrs": dict(change["attrs"])}
                    else:
                        for name in change.get("removed", ()):
                            old["attrs"].pop(name, None)
                            old.setdefault("removed", []).append(name)
                        old["attrs"].update(change["attrs"])
                        old["observedAt"] = max(old["observedAt"], change["observedAt"])
                        old["lon"], old["lat"] = change["lon"], change["lat"]
                    added = True
            if added:
                sub.wake.set()

    def _on_commands(self, subject: str, payload: dict[str, Any]) -> None:
        """Command transitions (``commands.changed``) of the entities a client follows."""
        for sub in self.subscribers:
            for cmd in payload["commands"]:
                if sub.filter.ids is None or cmd["entityId"] in sub.filter.ids:
                    sub.commands[cmd["id"]] = cmd
                    sub.wake.set()

    def _on_deleted(self, subject: str, payload: dict[str, Any]) -> None:
        gone = [(entity_id, self.scopes.forget(entity_id)) for entity_id in payload["ids"]]
        for sub in self.subscribers:
            for entity_id, scope in gone:
                if sub.access is not None and not sub.access.sees(scope):
                    continue
                sub.pending.pop(entity_id, None)
                sub.deleted.add(entity_id)
            sub.wake.set()


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    """Push entity changes to the client; the filter comes from the query or a message.

    The client offers the subprotocols ``citypilot.stream`` and ``bearer.<token>``; the
    server answers with ``citypilot.stream`` (never echoing the token).
    """
    city = websocket.app.state.city
    hub: StreamHub = websocket.app.state.hub
    params = websocket.query_params
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        token = stream_token(websocket)
        principal = await principal_from_token(city, token)
        initial = {
            "types": params["types"].split(",") if params.get("types") else None,
            "ids": params["ids"].split(",") if params.get("ids") else None,
            "bbox": [float(v) for v in params["bbox"].split(",")] if params.get("bbox") else None,
        }
        sub = Subscriber(parse_filter(initial), StreamAccess(city, principal))
    except (CityPilotError, ValueError) as exc:
        detail = exc.to_problem() if isinstance(exc, CityPilotError) else {"detail": str(exc)}
        await websocket.send_text(orjson.dumps({"type": "error", "error": detail}).decode())
        await websocket.close(POLICY_VIOLATION)
        return
    hub.subscribers.add(sub)
    interval = city.settings.stream_interval_ms / 1000
    receiver = asyncio.create_task(_receive_filters(websocket, sub))
    watcher = asyncio.create_task(_credential_end(city, token))
    try:
        await websocket.send_text(
            orjson.dumps({"type": "hello", "intervalMs": city.settings.stream_interval_ms}).decode()
        )
        while not receiver.done():
            wake = asyncio.create_task(sub.wake.wait())
            await asyncio.wait({wake, receiver, watcher}, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            if watcher.done():  # the token expired or was revoked: the stream ends with it
                error = {"type": "error", "error": watcher.result().to_problem()}
                await websocket.send_text(orjson.dumps(error).decode())
                await websocket.close(POLICY_VIOLATION)
                break
            if receiver.done():
                break
            await asyncio.sleep(interval)  # gather a frame's worth of changes
            changes, deleted = sub.take()
            frame = {"type": "changes", "changes": changes, "deleted": deleted}
            commands = sub.take_commands()
            if commands:
                frame["commands"] = commands
            await websocket.send_text(orjson.dumps(frame).decode())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.subscribers.discard(sub)
        for task in (receiver, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _credential_end(city: Any, token: str | None) -> CityPilotError:
    """Wait until the stream's token expires or is revoked (its account disabled or
    changed); the error that says so."""
    while True:
        try:
            _, expires = await authenticate(city, token)  # raises once expired or revoked
            pause = max(1.0, city.settings.account_check_s)
            await asyncio.sleep(min(max(0.0, expires - time.time()), pause))
        except CityPilotError as exc:
            return exc


async def _receive_filters(websocket: WebSocket, sub: Subscriber) -> None:
    """Replace the subscriber's filter whenever the client sends one; ends on disconnect."""
    while True:
        try:
            text = await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            return
        try:
            sub.filter = parse_filter(orjson.loads(text))
            sub.pending.clear()
            await websocket.send_text(orjson.dumps({"type": "filter", "ok": True}).decode())
        except (CityPilotError, orjson.JSONDecodeError) as exc:
            detail = exc.to_problem() if isinstance(exc, CityPilotError) else {"detail": str(exc)}
            await websocket.send_text(orjson.dumps({"type": "error", "error": detail}).decode())
