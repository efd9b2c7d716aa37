"""The audit log over HTTP: every API write recorded in one place, read and exported by admins.

``AuditMiddleware`` records each POST, PUT, PATCH and DELETE as it is answered (the
entry is written before the answer goes out): who (the
principal the route's dependency admitted, else ``anonymous``), when, from which
client address, the route and the entity it names, and the outcome. A route may add
the configuration it replaced and set with ``note_change`` (before/after). Device
ingest (``X-Device-Key``) is not recorded: its observations are kept in history and
dead letters. Logins are recorded by the login route.

``GET /api/v1/audit`` answers metropole admins, filtered and paged, as JSON, NDJSON
or CSV (``format=``; the last two as a download of every matching entry).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citypilot.api.deps import Admin, CityDep, require_metropole_admin
from citypilot.model.errors import BadRequestData
from citypilot.model.timeutil import parse_instant
from citypilot.security import audit
from citypilot.security.audit import AuditEntry, AuditQuery
from citypilot.security.tokens import Principal
from citypilot.store.tenants import TENANT_HEADER

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["audit"])
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Writes recorded elsewhere: logins by the login route itself.
_RECORDED_ELSEWHERE = frozenset({"/api/v1/auth/token", "/api/v1/auth/logout"})
_EXPORT_PAGE = 1000
CSV_COLUMNS = ("id", "at", "actor", "action", "target", "client", "outcome", "detail")


def client_address(scope: Scope) -> str | None:
    """The address the request came from."""
    client = scope.get("client")
    return client[0] if client else None


def note_change(request: Request, target: str, before: Any, after: Any) -> None:
    """Have the audit entry of this request name what it configured (``target``) and
    carry the configuration it replaced and the one it set."""
    request.state.audit_target = target
    request.state.audit_change = {"before": before, "after": after}


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return "denied" if status in (401, 403) else "failed"


def _tenant_of(scope: Scope) -> str | None:
    """The NGSI-LD tenant a request named (``NGSILD-Tenant``, under ``/ngsi-ld/`` only)."""
    if not scope["path"].startswith("/ngsi-ld/"):
        return None
    key = TENANT_HEADER.lower().encode()
    value = next((v for k, v in scope["headers"] if k == key), None)
    return None if value is None else value.decode("latin-1")


class AuditMiddleware:
    """Records every write through the API in the audit log as it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; record it with its outcome if it is a write."""
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or scope["path"] in _RECORDED_ELSEWHERE
        ):
            await self.app(scope, receive, send)
            return
        recorded = False

        async def sending(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True  # on record before the caller learns the outcome
                await self._record(scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not recorded:  # no answer at all: the server failed
                await self._record(scope, 500)

    @staticmethod
    async def _record(scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        principal: Principal | None = state.get("principal")
        if principal is not None and principal.role == "device":
            return
        route = scope.get("route")
        params = scope.get("path_params") or {}
        detail: dict[str, Any] = {"status": status}
        if scope.get("query_string"):
            detail["query"] = scope["query_string"].decode("latin-1")
        tenant = _tenant_of(scope)
        if tenant is not None:  # the same entity id may name another entity elsewhere
            detail["tenant"] = tenant
        detail.update(state.get("audit_change") or {})
        try:
            await audit.record(
                scope["app"].state.city.broker.store,
                principal.name if principal is not None else "anonymous",
                f"{scope['method']} {getattr(route, 'path_format', scope['path'])}",
                target=state.get("audit_target") or params.get("entity_id") or params.get("name"),
                client=client_address(scope),
                outcome=_outcome(status),
                detail=detail,
            )
        except Exception:  # the answer is sent: say so loudly, do not fail it
            log.exception("could not record %s %s in the audit log", scope["method"], scope["path"])


def _csv_line(entry: AuditEntry) -> str:
    doc = entry.to_json()
    doc["detail"] = orjson.dumps(doc["detail"]).decode() if doc["detail"] is not None else ""
    out = io.StringIO()
    csv.writer(out).writerow(["" if doc[c] is None else doc[c] for c in CSV_COLUMNS])
    return out.getvalue()


@router.get("/audit", summary="The audit log (metropole admins)")
async def read_audit(
    city: CityDep,
    who: Admin,
    actor: Annotated[str | None, Query(alias="who", description="who acted")] = None,
    action: Annotated[str | None, Query(description="an action or its prefix: login")] = None,
    entity: Annotated[str | None, Query(description="the entity (or type) acted on")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 instant, inclusive")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 instant, exclusive")] = None,
    format: Literal["json", "ndjson", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Response:
    """Entries newest first: ``{"total", "items": [...]}``; ``format=ndjson`` or ``csv``
    downloads every matching entry (``limit``/``offset`` apply to JSON pages only)."""
    require_metropole_admin(who, "the audit log")
    start = parse_instant(since, "since") if since is not None else None
    end = parse_instant(until, "until") if until is not None else None
    if start is not None and end is not None and start >= end:
        raise BadRequestData("since must be before until", "since")
    query = AuditQuery(actor, action, entity, start, end, limit, offset)
    store = city.broker.store
    if format == "json":
        entries, total = await store.query_audit(query)
        body = {"total": total, "items": [e.to_json() for e in entries]}
        return Response(orjson.dumps(body), media_type="application/json")

    async def lines() -> AsyncIterator[str]:
        if format == "csv":
            yield ",".join(CSV_COLUMNS) + "\r\n"
        before_id = None
        while True:
            page = AuditQuery(actor, action, entity, start, end, _EXPORT_PAGE, 0, before_id)
            entries, _ = await store.query_audit(page)
            for e in entries:
                yield _csv_line(e) if format == "csv" else orjson.dumps(e.to_json()).decode() + "\n"
            if len(entries) < _EXPORT_PAGE:
                return
            before_id = entries[-1].id

    media = "text/csv" if format == "csv" else "application/x-ndjson"
    headers = {"Content-Disposition": f'attachment; filename="audit.{format}"'}
    return StreamingResponse(lines(), media_type=media, headers=headers)
