"""Errors as RFC 9457 problem details, with the NGSI-LD error types."""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from citypilot.model.errors import NGSI_LD_ERRORS, CityPilotError, InvalidRequest

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_BY_STATUS = {
    400: "InvalidRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "ResourceNotFound",
    405: "OperationNotSupported",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
}


def problem_response(error: CityPilotError, headers: dict[str, str] | None = None) -> Response:
    """The HTTP response for an error."""
    if error.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    if "retryAfter" in error.extra:  # a 503 or 429 saying when to come back
        headers = {**(headers or {}), "Retry-After": str(error.extra["retryAfter"])}
    return Response(
        orjson.dumps(error.to_problem()), error.status, headers, media_type=PROBLEM_JSON
    )


def allowed_methods(app: Starlette, path: str) -> tuple[set[str], bool]:
    """Every method the app's routes answer at ``path`` (HEAD wherever GET is), and
    whether ``path`` is under one of the API's prefixes (``/api``, ``/ngsi-ld``).

    A templated route does not count at the literal paths it leaves to literal routes
    (its ``shadowed_paths``, see ``api.rules.LiteralFirstRoute``)."""
    methods: set[str] = set()
    top = "/" + path.lstrip("/").split("/", 1)[0]
    under_api = False
    for route in iter_route_contexts(app.router.routes):
        if not route.methods:
            continue
        own = getattr(route.original_route, "shadowed_paths", ())
        shadowed = "{" in route.path and path in own
        if not shadowed and route.path_regex.match(path):
            methods |= route.methods
        under_api = under_api or (top != "/" and route.path.startswith(top + "/"))
    if "GET" in methods:
        methods.add("HEAD")
    return methods, under_api


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error the app can raise answer with problem details."""

    @app.exception_handler(CityPilotError)
    async def _ours(request: Request, exc: CityPilotError) -> Response:
        return problem_response(exc, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        where = ".".join(loc) or None
        msg = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid")
        return problem_response(InvalidRequest(msg, where))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        status, headers = exc.status_code, dict(exc.headers or {})
        if status in (404, 405):
            allowed, under_api = allowed_methods(request.app, request.url.path)
            if allowed and request.method not in allowed:
                status, headers["Allow"] = 405, ", ".join(sorted(allowed))
            elif status == 405 and under_api:  # no such API resource, whatever the method
                status = 404
            elif status == 405:  # a static file of the console
                headers["Allow"] = "GET, HEAD"
        title = HTTPStatus(status).phrase
        detail = str(exc.detail) if status == exc.status_code else title
        if status == 405:
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        body = {
            "type": NGSI_LD_ERRORS + _BY_STATUS.get(status, "InternalError"),
            "title": title,
            "status": status,
            "detail": detail,
        }
        return Response(orjson.dumps(body), status, headers, media_type=PROBLEM_JSON)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {
            "type": NGSI_LD_ERRORS + "InternalError",
            "title": "Internal error",
            "status": 500,
            "detail": "the server failed on this request; it is logged",
        }
        return Response(orjson.dumps(body), 500, media_type=PROBLEM_JSON)
