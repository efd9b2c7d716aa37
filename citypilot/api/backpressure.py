"""Back-pressure on writes: a per-process bound on ingest and batch requests in flight.

Every POST to ``/api/v1/ingest`` or ``/ngsi-ld/v1/entityOperations/*`` holds a
slot and its body's bytes until its response is sent. Past
``max_inflight_requests`` or ``max_inflight_bytes`` a new one is answered 503
with ``Retry-After`` and a problem details body, before its body is read: it
was not accepted, so nothing of it is stored and the client sends it again. A
request that arrives while nothing is in flight is always admitted, so one
large body is never refused for its size alone (``max_body_bytes`` bounds it).
A body sent without ``Content-Length`` is counted as it arrives, and refused
with the same 503 when it takes the process past the bound.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citypilot.api.problems import problem_response
from citypilot.model.errors import ServiceUnavailable

#: Paths (prefixes) whose POSTs are bounded.
BOUNDED_PATHS = ("/api/v1/ingest", "/ngsi-ld/v1/entityOperations/")


class InflightLimit:
    """ASGI middleware refusing bounded writes past the in-flight limits (see the module)."""

    def __init__(self, app: ASGIApp, max_requests: int, max_bytes: int, retry_after_s: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self.requests = 0
        self.bytes = 0
        self.refused = 0

    def _overloaded(self, what: str) -> ServiceUnavailable:
        self.refused += 1
        return ServiceUnavailable(
            f"the server is at its limit of {what} in flight; retry after {self.retry_after_s} s",
            self.retry_after_s,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, count and release a bounded request; pass any other straight on."""
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(BOUNDED_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        idle = self.requests == 0
        if not idle and self.requests >= self.max_requests:
            await self._refuse(scope, receive, send, f"{self.max_requests} write requests")
            return
        if not idle and declared is not None and self.bytes + declared > self.max_bytes:
            await self._refuse(scope, receive, send, f"{self.max_bytes} body bytes")
            return
        held = declared or 0
        self.requests += 1
        self.bytes += held
        started = False

        async def counted_receive() -> Message:
            nonlocal held
            message = await receive()
            if declared is None and message["type"] == "http.request":
                size = len(message.get("body", b""))
                if self.requests > 1 and self.bytes + size > self.max_bytes:
                    raise _Refused(self._overloaded(f"{self.max_bytes} body bytes"))
                held += size
                self.bytes += size
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _Refused as refused:
            if started:
                raise
            await problem_response(refused.error, refused.error.headers)(scope, receive, send)
        finally:
            self.requests -= 1
            self.bytes -= held

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        error = self._overloaded(what)
        await problem_response(error, error.headers)(scope, receive, send)


class _Refused(Exception):
    """Raised from ``receive`` when a body without Content-Length passes the byte bound."""

    def __init__(self, error: ServiceUnavailable) -> None:
        super().__init__(error.detail)
        self.error = error


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
