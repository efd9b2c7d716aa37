"""NGSI-LD clients often name a collection with a trailing slash (``POST
/ngsi-ld/v1/entities/``, as the ETSI OpenAPI description spells its paths): such a
path is answered as the one without the slash, never with a 404, 405 or redirect."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/ngsi-ld/v1/"


class NgsiTrailingSlash:
    """ASGI middleware: ``/ngsi-ld/v1/<path>/`` is routed as ``/ngsi-ld/v1/<path>``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and path.startswith(PREFIX)
            and path.endswith("/")
            and len(path) > len(PREFIX)
        ):
            trimmed = path.rstrip("/")
            raw = scope.get("raw_path")
            scope = {
                **scope,
                "path": trimmed,
                "raw_path": raw.rstrip(b"/") if isinstance(raw, bytes) else raw,
            }
        await self.app(scope, receive, send)
