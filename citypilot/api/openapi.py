"""The OpenAPI description of the API, kept true to what the app does.

Two jobs, both here so that every route gets them the day it is added:

* Request and response shapes for routes that read their body themselves (to enforce
  the size limit while streaming and to report errors per item), which FastAPI cannot
  infer.
* ``describe_app``: FastAPI's generated document, completed from each route's
  dependencies: the credential schemes and role its gate (see ``gate``) declares, and
  the error statuses the app really answers, each with the ProblemDetails schema
  (RFC 9457). FastAPI's 422 is removed: the app answers bad parameters with 400.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from citypilot.api.problems import PROBLEM_JSON
from citypilot.model.types import ATTR_KINDS, VALUE_KINDS
from citypilot.security.roles import ROLES

_ATTRIBUTE = {
    "description": "An NGSI-LD attribute: normalised ({type, value|object, observedAt, "
    "unitCode}) or a bare value",
}
ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {
        "id": {"type": "string", "example": "urn:ngsi-ld:Streetlight:42"},
        "type": {"type": "string", "example": "Streetlight"},
        "scope": {
            "description": "the entity's scopes (clause 4.18), e.g. /Madrid/Gardens",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "items": {"type": "string"}},
            ],
        },
        "@context": {"description": "optional; the bundled core context is used"},
    },
    "additionalProperties": _ATTRIBUTE,
    "example": {
        "id": "urn:ngsi-ld:Streetlight:42",
        "type": "Streetlight",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [5.04, 47.32]},
        },
        "powerState": {"type": "Property", "value": "on"},
    },
}
FRAGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": _ATTRIBUTE,
    "example": {"powerState": {"type": "Property", "value": "off"}},
}
QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"const": "Query"},
        "entities": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "idPattern": {"type": "string"},
                    "type": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
        "attrs": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "q": {"type": "string"},
        "scopeQ": {"type": "string"},
        "geoQ": {
            "type": "object",
            "properties": {
                "geometry": {"type": "string"},
                "coordinates": {"type": ["array", "string"]},
                "georel": {"type": "string"},
                "geoproperty": {"type": "string"},
            },
        },
        "@context": {"description": "optional; the bundled core context is used"},
    },
    "additionalProperties": False,
    "example": {
        "type": "Query",
        "entities": [{"type": "Streetlight"}],
        "q": 'powerState=="on"',
        "attrs": ["powerState"],
    },
}
OBSERVATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "observedAt", "attrs"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "observedAt": {"type": "string", "format": "date-time"},
        "attrs": {"type": "object", "minProperties": 1},
    },
    "example": {
        "id": "urn:ngsi-ld:Streetlight:42",
        "type": "Streetlight",
        "observedAt": "2026-11-20T10:00:00Z",
        "attrs": {"powerConsumption": 41.5, "powerState": "on"},
    },
}


PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
BATCH_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["success", "errors"],
    "properties": {
        "success": {"type": "array", "items": {"type": "string"}},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "error"],
                "properties": {
                    "entityId": {"type": ["string", "null"]},
                    "index": {"type": "integer"},
                    "error": PROBLEM_REF,
                },
            },
        },
    },
}
ATTRS_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["updated", "notUpdated"],
    "properties": {
        "updated": {"type": "array", "items": {"type": "string"}},
        "notUpdated": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"attributeName": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}
INGEST_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "rejected", "readings", "errors"],
    "properties": {
        "accepted": {"type": "integer"},
        "rejected": {"type": "integer"},
        "readings": {"type": "integer"},
        "errors": BATCH_RESULT_SCHEMA["properties"]["errors"],
    },
}


_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_ATTRIBUTE_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "value"],
    "properties": {
        "kind": {"enum": sorted(ATTR_KINDS)},
        "value": {"enum": sorted(VALUE_KINDS)},
        "unit": _STRING,
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "choices": _STRINGS,
        "description": _STRING,
        "target": _STRING,
    },
}
ENTITY_TYPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "version", "department", "attributes", "commands"],
    "properties": {
        "name": _STRING,
        "version": {"type": "integer", "minimum": 1},
        "department": _STRING,
        "description": _STRING,
        "dataModel": {"type": ["string", "null"]},
        "attributes": {"type": "object", "additionalProperties": _ATTRIBUTE_SPEC},
        "commands": {"type": "object"},
    },
}
TYPE_VERSIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "versions"],
    "properties": {
        "name": _STRING,
        "versions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["version", "registeredAt", "registeredBy", "forced", "type"],
                "properties": {
                    "version": {"type": "integer", "minimum": 1},
                    "registeredAt": {"type": ["string", "null"]},
                    "registeredBy": {"type": ["string", "null"]},
                    "forced": {"type": "boolean"},
                    "breaks": {"type": "array"},
                    "type": ENTITY_TYPE_SCHEMA,
                },
            },
        },
    },
}
DEAD_LETTERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["total", "items"],
    "properties": {
        "total": {"type": "integer"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "receivedAt", "source", "reason", "payload"],
                "properties": {
                    "id": {"type": "integer"},
                    "receivedAt": _STRING,
                    "source": _STRING,
                    "reason": _STRING,
                    "field": {"type": ["string", "null"]},
                    "payload": _STRING,
                },
            },
        },
    },
}
ENTITY_OUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {"id": _STRING, "type": _STRING},
}
#: An entity as ``pick`` and ``omit`` shape it: its id and type only where they kept them.
PROJECTED_ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "id and type are there unless pick or omit left them out",
    "properties": {"id": _STRING, "type": _STRING},
}


def answer(
    status: int, description: str, schema: dict[str, Any] | None = None, media: str | None = None
) -> dict[int, dict[str, Any]]:
    """A route's own answer, for ``responses=``; with ``schema`` or ``media`` a body."""
    response: dict[str, Any] = {"description": description}
    if schema is not None or media is not None:
        response["content"] = {media or "application/json": {"schema": schema or {}}}
    return {status: response}


def json_body(schema: dict[str, Any], *, ndjson: bool = False) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON (and JSON-LD, NDJSON) request body."""
    content = {"application/json": {"schema": schema}, "application/ld+json": {"schema": schema}}
    if ndjson:
        content = {
            "application/json": {"schema": schema},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one JSON per line"}
            },
        }
    return {"requestBody": {"required": True, "content": content}}


#: ``openapi_extra`` of an action that takes no body: nothing, or an empty JSON object.
NO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
    }
}


def array_of(schema: dict[str, Any]) -> dict[str, Any]:
    """An array of items of ``schema``."""
    return {"type": "array", "items": schema}


# -- credentials and roles ------------------------------------------------------
BEARER = "bearerAuth"
DEVICE_KEY = "deviceKey"
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A person's access token from POST /api/v1/auth/token",
    },
    DEVICE_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Device-Key",
        "description": "A device gateway's key (ingest only)",
    },
}
ROLE_EXTENSION = "x-citypilot-role"
#: the entity types an operation answers without a credential (``public_read_types``)
PUBLIC_EXTENSION = "x-citypilot-public-types"
#: ``openapi_extra`` of an operation that needs its role over the whole metropole (a
#: grant naming no municipality and no department): it answers 403 to scoped people.
METROPOLE_ONLY = {"x-citypilot-scope": "metropole"}
_ACCESS_ATTR = "__citypilot_access__"
D = TypeVar("D", bound=Callable[..., Any])


@dataclass(frozen=True)
class Access:
    """What an operation needs: the least role of a person, and the credential schemes
    that may carry it (any one of them)."""

    role: str
    schemes: tuple[str, ...]
    #: also open to callers without a credential for these entity types (the
    #: ``public_read_types`` setting), where the city set some
    public: bool = False


def gate(role: str, *schemes: str, public: bool = False) -> Callable[[D], D]:
    """Declare a FastAPI dependency as the gate of the operations that use it.

    Every operation depending on it (directly or through other dependencies) is then
    described with these credential schemes, the role (``x-citypilot-role``) and the
    401 and, above the least role, 403 answers.
    """
    unknown = set(schemes) - set(SECURITY_SCHEMES)
    if role not in ROLES or not schemes or unknown:
        raise ValueError(f"gate({role!r}, {schemes!r}): unknown role or scheme")

    def mark(dependency: D) -> D:
        setattr(dependency, _ACCESS_ATTR, Access(role, schemes, public))
        return dependency

    return mark


_TENANT_ATTR = "_citypilot_tenant"
#: The ``NGSILD-Tenant`` request header (clause 6.3.14), as each NGSI-LD operation takes it.
TENANT_PARAMETER: dict[str, Any] = {
    "name": "NGSILD-Tenant",
    "in": "header",
    "required": False,
    "description": "the tenant (city data space) the operation works in; default: the "
    "city's own. An operation that creates creates a tenant not yet there, within the "
    "city's tenants_allowed and max_tenants",
    "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,39}$"},
}


def names_tenant(creates: bool) -> Callable[[D], D]:
    """Mark a dependency that reads the ``NGSILD-Tenant`` header (``creates``: and
    creates the tenant), so that the description lists the header and its answers:
    404 for a tenant not there (or not allowed), and 403 past ``max_tenants``."""

    def mark(dependency: D) -> D:
        setattr(dependency, _TENANT_ATTR, creates)
        return dependency

    return mark


def _tenant_of(route: APIRoute | RouteContext) -> bool | None:
    """Whether the route takes ``NGSILD-Tenant`` and creates tenants (None: no tenant)."""
    return _mark_of(route, _TENANT_ATTR)


def _describe_tenant(operation: dict[str, Any], creates: bool) -> None:
    operation.setdefault("parameters", []).append(dict(TENANT_PARAMETER))
    responses = operation.setdefault("responses", {})
    responses.setdefault(
        "404",
        {"description": "The tenant NGSILD-Tenant names does not exist (NonexistentTenant)"},
    )
    if creates:
        responses.setdefault("403", {"description": _ERROR_DESCRIPTIONS[403]})
        responses["403"]["description"] += "; or the city has max_tenants tenants already"


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def api_routes(app: FastAPI) -> Iterator[RouteContext]:
    """Every API route of the app in the description (those of included routers too)."""
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            yield route


def _mark_of(route: APIRoute | RouteContext, attr: str) -> Any:
    """What the first of the route's dependencies marked with ``attr`` holds (or None)."""
    for dependency in _dependencies(route.dependant):
        found = getattr(dependency.call, attr, None)
        if found is not None:
            return found
    return None


def access_of(route: APIRoute | RouteContext) -> Access | None:
    """The access the route's gate declares; None for a public route."""
    return _mark_of(route, _ACCESS_ATTR)


# -- errors -----------------------------------------------------------------------
PROBLEM_DETAILS: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; extension members may follow",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "an NGSI-LD error type URI"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "the path of the value at fault"},
    },
    "additionalProperties": True,
}
_ERROR_DESCRIPTIONS = {
    400: "Bad request data or parameters (the field at fault is named)",
    401: "No valid credential",
    403: "The credential's role does not allow this",
    404: "The resource named in the path does not exist",
    409: "Conflicts with what is stored",
    413: "The body is over the size limit",
    415: "The body is not of a supported content type",
    503: "Busy, or the credential cannot be checked right now: retry after Retry-After",
}


def problem(status: int, description: str | None = None) -> dict[int, dict[str, Any]]:
    """A route's own error answer, for ``responses=`` (the schema is added centrally)."""
    return {status: {"description": description or _ERROR_DESCRIPTIONS[status]}}


def created(conflict: str) -> dict[int, dict[str, Any]]:
    """The answers of a create: 201 with its ``Location`` and no body, 409 ``conflict``."""
    return {
        201: {
            "description": "Created; no body",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **problem(409, conflict),
    }


def _inferred_errors(operation: dict[str, Any], access: Access | None) -> list[int]:
    """The error statuses every operation of this shape answers."""
    statuses = []
    params = operation.get("parameters", [])
    body = operation.get("requestBody", {}).get("content", {})
    if params or body:
        statuses.append(400)
    if access is not None:
        statuses.append(401)
        if ROLES.index(access.role) > 0:
            statuses.append(403)
        statuses.append(503)  # the credential is checked in the store, which may be away
    if any(p.get("in") == "path" for p in params):
        statuses.append(404)
    if "application/json" in body:
        statuses += [413, 415]
    return statuses


ERRORS_EXTENSION = "x-citypilot-error-content"


def error_content(content: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose errors are not ProblemDetails (a standard of
    its own, e.g. Open311): the content of each of its error answers."""
    return {ERRORS_EXTENSION: content}


def _describe_operation(
    operation: dict[str, Any], access: Access | None, public_types: Sequence[str] = ()
) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for status in _inferred_errors(operation, access):
        responses.setdefault(str(status), {"description": _ERROR_DESCRIPTIONS[status]})
    for param in operation.get("parameters", []):
        schema = param.get("schema", {})
        if param["in"] == "path" and schema.get("type") == "string":
            schema.setdefault("minLength", 1)  # a path segment is never empty
    errors = operation.pop(ERRORS_EXTENSION, {PROBLEM_JSON: {"schema": PROBLEM_REF}})
    for status, response in responses.items():
        if status[0] in "45" and "content" not in response:
            response["content"] = errors
    if access is None:
        operation["security"] = []
    else:
        operation["security"] = [{scheme: []} for scheme in access.schemes]
        operation[ROLE_EXTENSION] = access.role
        if access.public and public_types:
            operation["security"].insert(0, {})  # no credential: the public types only
            operation[PUBLIC_EXTENSION] = list(public_types)


def describe_app(app: FastAPI, public_types: Sequence[str] = ()) -> dict[str, Any]:
    """The app's OpenAPI document: FastAPI's, completed from each route's dependencies."""
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["ProblemDetails"] = PROBLEM_DETAILS
    components["securitySchemes"] = SECURITY_SCHEMES
    for route in api_routes(app):
        access = access_of(route)
        tenant = _tenant_of(route)
        for method in route.methods:
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                if tenant is not None:
                    _describe_tenant(operation, tenant)
                _describe_operation(operation, access, public_types)
    return doc


def install_openapi(app: FastAPI, public_types: Sequence[str] = ()) -> None:
    """Serve ``describe_app``'s document at ``/openapi.json`` (built once, on first use);
    ``public_types``: the setting ``public_read_types``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_app(app, public_types)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
