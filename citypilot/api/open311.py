"""The 311 desk as Open311 GeoReport v2: discovery, services, requests and tokens.

Every path ends in ``.json`` or ``.xml`` (the spec's format by extension); XML is
the spec's required format. Errors are the spec's list of ``code`` and
``description`` in the same format, with the HTTP status as ``code``. Reading is
public; posting a request needs an ``api_key`` (a CityPilot device key issued to
the client application: ``citypilot devices add city-website``). ``jurisdiction_id``
is a municipality of the metropole: its entity id, local id or official code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.body import media_type, read_body
from citypilot.api.deps import City, city_of
from citypilot.api.incidents import incident_from_request
from citypilot.api.open311_format import FORMATS, Format, document, errors
from citypilot.api.openapi import answer, error_content
from citypilot.model.entity import Entity
from citypilot.model.errors import (
    BadRequestData,
    CityPilotError,
    Forbidden,
    ResourceNotFound,
    UnsupportedMediaType,
)
from citypilot.model.json_limits import check_depth
from citypilot.model.timeutil import parse_instant
from citypilot.ops.service_requests import (
    Service,
    ServiceDesk,
    load_catalogue,
    parse_new_request,
)
from citypilot.security.tokens import hash_device_key

router = APIRouter(prefix="/open311", tags=["Open311"])
#: In the OpenAPI description: answers in either format, errors as GeoReport lists.
_ANSWERS = answer(200, "Successful Response", media="text/xml")
_ERROR_LIST = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}
_ERRORS = error_content(
    {"application/json": {"schema": _ERROR_LIST}, "text/xml": {"schema": {"type": "string"}}}
)
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-12-01T00:00:00Z"


def desk_of(request: Request) -> ServiceDesk:
    """The app's service desk, built on first use from the configured catalogue."""
    desk = getattr(request.app.state, "service_desk", None)
    if desk is None:
        city: City = city_of(request)
        desk = ServiceDesk(city.broker, load_catalogue(city.settings.open311_services))
        request.app.state.service_desk = desk
    return desk


async def _answer(fmt: str, build: Callable[[Format], Awaitable[Response]]) -> Response:
    """Run ``build`` for a known format; any refusal becomes a GeoReport error list."""
    if fmt not in FORMATS:
        return errors("json", 404, f"format {fmt[:10]!r} is not served: use .json or .xml")
    try:
        return await build(fmt)  # type: ignore[arg-type]
    except CityPilotError as exc:
        return errors(fmt, exc.status, exc.detail)  # type: ignore[arg-type]


def _service_item(service: Service) -> dict[str, Any]:
    return {
        "service_code": service.code,
        "service_name": service.name,
        "description": service.description,
        "metadata": bool(service.attributes),
        "type": service.kind,
        "keywords": ", ".join(service.keywords),
        "group": service.group,
    }


def _definition(service: Service) -> dict[str, Any]:
    return {
        "service_code": service.code,
        "attributes": [
            {
                "variable": True,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": None,
                "order": a.order,
                "description": a.description,
                "values": [{"key": k, "name": n} for k, n in a.values],
            }
            for a in service.attributes
        ],
    }


def _value(entity: Entity, name: str) -> Any:
    attr = entity.attrs.get(name)
    return None if attr is None else attr.value


def request_view(entity: Entity) -> dict[str, Any]:
    """A ServiceRequest entity as GeoReport v2 shows a service request."""
    location = _value(entity, "location")
    lon, lat = location["coordinates"][:2] if isinstance(location, dict) else (None, None)
    return {
        "service_request_id": entity.id.split(":", 3)[3],
        "status": _value(entity, "status"),
        "status_notes": _value(entity, "statusNotes"),
        "service_name": _value(entity, "serviceName"),
        "service_code": _value(entity, "serviceCode"),
        "description": _value(entity, "description"),
        "agency_responsible": _value(entity, "agencyResponsible"),
        "service_notice": _value(entity, "serviceNotice"),
        "requested_datetime": _value(entity, "requestedAt"),
        "updated_datetime": _value(entity, "updatedAt"),
        "expected_datetime": _value(entity, "expectedAt"),
        "address": _value(entity, "addressString"),
        "address_id": None,
        "zipcode": None,
        "lat": lat,
        "long": lon,
        "media_url": _value(entity, "mediaUrl"),
    }


def _requests(fmt: Format, found: list[Entity]) -> Response:
    return document(fmt, "service_requests", "request", [request_view(e) for e in found])


def _discovery(request: Request) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + "/open311/v2"
    return {
        "changeset": CHANGESET,
        "contact": "The metropole's control room, through its 311 desk.",
        "key_service": "Ask the city for an api_key (a CityPilot device key).",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": base,
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }


@router.get(
    "/discovery.{fmt}",
    summary="Open311 service discovery",
    responses=_ANSWERS,
    openapi_extra=_ERRORS,
)
@router.get(
    "/v2/discovery.{fmt}",
    summary="Open311 service discovery (under v2)",
    responses=_ANSWERS,
    openapi_extra=_ERRORS,
)
async def discovery(fmt: str, request: Request) -> Response:
    """Where the GeoReport v2 endpoint is and which formats it speaks."""

    async def build(f: Format) -> Response:
        return document(f, "discovery", None, _discovery(request))

    return await _answer(fmt, build)


@router.get(
    "/v2/services.{fmt}",
    summary="Open311: the services citizens can report",
    responses=_ANSWERS,
    openapi_extra=_ERRORS,
)
async def services(fmt: str, request: Request, jurisdiction_id: str | None = None) -> Response:
    """Every service of the desk (the same catalogue in each municipality)."""

    async def build(f: Format) -> Response:
        desk = desk_of(request)
        await desk.jurisdiction(jurisdiction_id)
        items = [_service_item(s) for s in desk.catalogue.values()]
        return document(f, "services", "service", items)

    return await _answer(fmt, build)


@router.get(
    "/v2/services/{service_code}.{fmt}",
    summary="Open311: one service's definition",
    responses=_ANSWERS,
    openapi_extra=_ERRORS,
)
async def service_definition(
    service_code: str, fmt: str, request: Request, jurisdiction_id: str | None = None
) -> Response:
    """The questions a request for this service may or must answer."""

    async def build(f: Format) -> Response:
        desk = desk_of(request)
        await desk.jurisdiction(jurisdiction_id)
        service = desk.catalogue.get(service_code)
        if service is None:
            raise ResourceNotFound(f"service_code {service_code[:64]!r} is not a service here")
        return document(f, "service_definition", None, _definition(service))

    return await _answer(fmt, build)


async def _form(request: Request) -> tuple[dict[str, str], dict[str, list[str]]]:
    city = city_of(request)
    body = await read_body(request, min(city.settings.max_body_bytes, 1024 * 1024))
    kind = media_type(request)
    if kind == "application/json":
        try:
            doc = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            raise BadRequestData("the JSON body does not parse", "body") from None
        check_depth(body, doc, city.settings.max_json_depth)
        if not isinstance(doc, dict):
            raise BadRequestData("the JSON body must be an object of fields", "body")
        multi = {
            str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in doc.items()
        }
    elif kind in ("application/x-www-form-urlencoded", ""):
        try:
            multi = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequestData(f"the form does not parse: {exc}", "body") from None
    else:
        raise UnsupportedMediaType(
            f"send the request as application/x-www-form-urlencoded, not {kind}; "
            "link photos with media_url",
            "body",
        )
    for name, values in parse_qs(request.url.query, keep_blank_values=True).items():
        multi.setdefault(name, values)
    return {k: v[0] for k, v in multi.items() if v}, multi


async def _client_name(request: Request, api_key: str | None) -> str:
    if not api_key:
        raise Forbidden("api_key is required to post a service request")
    device = await city_of(request).broker.store.get_device(hash_device_key(api_key))
    if device is None:
        raise Forbidden("api_key is not valid")
    return device.name


_FIELD = {"type": "string"}
_REQUEST_FORM = {
    "type": "object",
    "required": ["api_key", "service_code"],
    "properties": {
        name: _FIELD
        for name in (
            "api_key",
            "jurisdiction_id",
            "service_code",
            "lat",
            "long",
            "address_string",
            "address_id",
            "description",
            "media_url",
            "account_id",
        )
    },
    "additionalProperties": {"type": "string", "description": "attribute[code] answers"},
}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _REQUEST_FORM},
            "application/json": {"schema": _REQUEST_FORM},
        },
    }
}


@router.post(
    "/v2/requests.{fmt}",
    summary="Open311: post a service request",
    status_code=201,
    responses={
        **answer(201, "The new request's id and token", media="text/xml"),
        **answer(403, "api_key is missing or not valid"),
    },
    openapi_extra={**_REQUEST_BODY, **_ERRORS},
)
async def post_request(fmt: str, request: Request) -> Response:
    """Create a request: an id at once (and a token to find it again)."""

    async def build(f: Format) -> Response:
        form, multi = await _form(request)
        client = await _client_name(request, form.get("api_key"))
        desk = desk_of(request)
        new = parse_new_request(form, multi, desk.catalogue)
        entity = await desk.submit(new, source=f"open311:{client}")
        # a fire, a flood or a fault opens an incident (a work order for the latter)
        await incident_from_request(request, entity, new.service.opens)
        view = request_view(entity)
        item = {
            "service_request_id": view["service_request_id"],
            "token": _value(entity, "token"),
            "service_notice": view["service_notice"],
            "account_id": new.account_id,
        }
        return document(f, "service_requests", "request", [item], status=201)

    return await _answer(fmt, build)


def _listed(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


@router.get(
    "/v2/requests.{fmt}",
    summary="Open311: find service requests",
    responses=_ANSWERS,
    openapi_extra=_ERRORS,
)
async def get_requests(
    fmt: str,
    request: Request,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
    jurisdiction_id: str | None = None,
) -> Response:
    """Requests by id, or by service, status and date (90 days, 1,000 requests at most)."""

    async def build(f: Format) -> Response:
        desk = desk_of(request)
        found = await desk.search(
            ids=_listed(service_request_id),
            codes=_listed(service_code),
            statuses=_listed(status),
            start=parse_instant(start_date, "start_date") if start_date else None,
            end=parse_instant(end_date, "end_date") if end_date else None,
            jurisdiction=await desk.jurisdiction(jurisdiction_id),
        )
        return _requests(f, found)

    return await _answer(fmt, build)


@router.get(
    "/v2/requests/{service_request_id}.{fmt}",
    summary="Open311: one service request",
    responses=_ANSWERS,
    openapi_extra=_ERRORS,
)
async def get_request(
    service_request_id: str, fmt: str, request: Request, jurisdiction_id: str | None = None
) -> Response:
    """The current status of one request."""

    async def build(f: Format) -> Response:
        desk = desk_of(request)
        await desk.jurisdiction(jurisdiction_id)
        return _requests(f, [await desk.get(service_request_id)])

    return await _answer(fmt, build)


@router.get(
    "/v2/tokens/{token}.{fmt}",
    summary="Open311: the request behind a token",
    responses=_ANSWERS,
    openapi_extra=_ERRORS,
)
async def get_token(
    token: str, fmt: str, request: Request, jurisdiction_id: str | None = None
) -> Response:
    """The id of the request a submission token stands for."""

    async def build(f: Format) -> Response:
        desk = desk_of(request)
        await desk.jurisdiction(jurisdiction_id)
        entity = await desk.by_token(token)
        item = {"service_request_id": entity.id.split(":", 3)[3], "token": token}
        return document(f, "service_requests", "request", [item])

    return await _answer(fmt, build)
