"""Entity ids and attribute names that are URIs, as path segments of the NGSI-LD API.

An id such as ``https://example.org/b/7`` reaches the server percent-encoded
(``/ngsi-ld/v1/entities/https%3A%2F%2Fexample.org%2Fb%2F7``); the server decodes the
path before routing, which would split it at its slashes. The middleware re-derives
the path of entity routes from the raw path, keeping an encoded ``/`` (and ``%``)
inside its segment, and the ``uri`` path convertor decodes the segment exactly once:
routes write ``{entity_id:uri}``.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

#: The paths whose segments may be URIs (every path parameter there uses ``:uri``).
URI_PREFIXES = (
    "/ngsi-ld/v1/entities/",
    "/ngsi-ld/v1/temporal/entities/",
    "/api/v1/history/",
    "/api/v1/entities/",
)


class UriConvertor(Convertor[str]):
    """One path segment, percent-decoded (an entity id or attribute name)."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        """The segment as the client meant it."""
        return unquote(value)

    def to_string(self, value: str) -> str:
        """The segment of ``value`` in a URL."""
        return quote(value, safe=":")


register_url_convertor("uri", UriConvertor())


def uri_segment(value: str) -> str:
    """``value`` (an entity id) as one segment of a path, e.g. in a ``Location`` header."""
    return quote(value, safe=":")


class UriSegments:
    """ASGI middleware: on entity paths, a segment's encoded ``/`` stays in the segment."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if (
            scope["type"] == "http"
            and isinstance(raw, bytes)
            and scope.get("path", "").startswith(URI_PREFIXES)
            and b"%" in raw
        ):
            text = raw.decode("latin-1")
            if "%2f" in text.lower() or "%25" in text:
                segments = (
                    unquote(s).replace("%", "%25").replace("/", "%2F") for s in text.split("/")
                )
                scope = {**scope, "path": "/".join(segments)}
        await self.app(scope, receive, send)
