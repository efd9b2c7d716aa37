"""The 311 desk: the catalogue of services citizens can report, and their requests.

A request is an entity of type ``ServiceRequest`` written through the broker, so it
is on the map, in history, in the stream and under the same scopes as every other
asset: it belongs to the municipality it lies in and to the department that answers
its service. The Open311 GeoReport v2 interface (``api/open311.py``) is one way in;
operators answer through ``api/service_requests.py``.

CityPilot keeps no personal contact details of requesters (names, e-mail, phone):
the citizen follows the request with its id or token.
"""

from __future__ import annotations

import re
import secrets
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from shapely.geometry import Point, shape
from shapely.prepared import prep

from citypilot.broker import Broker
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.entity import Entity
from citypilot.model.errors import AlreadyExists, BadRequestData, ResourceNotFound
from citypilot.model.ids import entity_id
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.store.base import EntityQuery
from citypilot.store.query import And, QueryNode, Term

REQUEST_TYPE = "ServiceRequest"
MAX_DESCRIPTION = 4000
#: GeoReport v2: a search covers at most 90 days and answers at most 1,000 requests.
MAX_SEARCH_DAYS = 90
MAX_RESULTS = 1000
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_URL = re.compile(r"^https?://[^\s]{1,2000}$")
_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read out over the phone
_JURISDICTION_CACHE_S = 60.0


@dataclass(frozen=True)
class ServiceAttribute:
    """One question of a service definition."""

    code: str
    description: str
    datatype: str = "string"
    required: bool = False
    order: int = 1
    values: tuple[tuple[str, str], ...] = ()  # (key, name) for the list datatypes


@dataclass(frozen=True)
class Service:
    """One kind of report the desk takes, and the department that answers it."""

    code: str
    name: str
    description: str
    group: str
    department: str
    keywords: tuple[str, ...] = ()
    kind: Literal["realtime", "batch", "blackbox"] = "batch"
    attributes: tuple[ServiceAttribute, ...] = ()
    #: The incident a request opens, as (incident type, severity): a fire or a flood for
    #: the control room, an infrastructure fault as a work order for a technical unit.
    opens: tuple[str, str] | None = None


def _service_from_toml(doc: dict[str, Any], where: str) -> Service:
    try:
        attributes = tuple(
            ServiceAttribute(
                code=a["code"],
                description=a["description"],
                datatype=a.get("datatype", "string"),
                required=bool(a.get("required", False)),
                order=i + 1,
                values=tuple((v["key"], v["name"]) for v in a.get("values", ())),
            )
            for i, a in enumerate(doc.get("attribute", ()))
        )
        service = Service(
            code=doc["code"],
            name=doc["name"],
            description=doc["description"],
            group=doc["group"],
            department=doc["department"],
            keywords=tuple(doc.get("keywords", ())),
            kind=doc.get("type", "batch"),
            attributes=attributes,
            opens=(doc["opens"], doc.get("severity", "moderate")) if "opens" in doc else None,
        )
    except KeyError as exc:
        raise ValueError(f"{where} lacks {exc.args[0]!r}") from None
    if not _CODE.match(service.code):
        raise ValueError(f"{where}.code {service.code!r} is not a plain code")
    if service.opens is not None:
        incident = next(t for t in BUILTIN_TYPES if t.name == "Incident").attributes
        if service.opens[0] not in (incident["incidentType"].choices or ()):
            raise ValueError(f"{where}.opens {service.opens[0]!r} is not an incident type")
        if service.opens[1] not in (incident["severity"].choices or ()):
            raise ValueError(f"{where}.severity {service.opens[1]!r} is not a severity")
    for attr in attributes:
        if attr.datatype not in DATATYPES:
            raise ValueError(f"{where} attribute {attr.code}: datatype {attr.datatype!r}")
    return service


def load_catalogue(path: Path | None = None) -> dict[str, Service]:
    """The services of a TOML catalogue (default: the one shipped with CityPilot)."""
    source = path or files("citypilot.ops").joinpath("open311_services.toml")
    doc = tomllib.loads(source.read_text(encoding="utf-8"))
    services = [_service_from_toml(s, f"service[{i}]") for i, s in enumerate(doc["service"])]
    return {s.code: s for s in services}


@dataclass(frozen=True)
class Jurisdiction:
    """A municipality of the metropole, as Open311 clients name it."""

    entity_id: str
    local_id: str
    code: str | None
    name: str
    area: Any = field(repr=False)  # prepared shapely geometry, or None

    def names(self) -> tuple[str, ...]:
        """Every spelling a client may use for it: entity id, local id, official code."""
        return tuple(n for n in (self.entity_id, self.local_id, self.code) if n)

    def covers(self, lon: float, lat: float) -> bool:
        """Whether the point lies in the municipality (True when it has no geometry)."""
        return self.area is None or self.area.covers(Point(lon, lat))


@dataclass
class NewRequest:
    """A citizen's request, checked, before it is stored."""

    service: Service
    lon: float | None
    lat: float | None
    address: str | None
    description: str | None
    media_url: str | None
    answers: dict[str, Any]
    jurisdiction_id: str | None
    account_id: str | None


def _one(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _coordinate(form: Mapping[str, str], name: str, limit: float) -> float | None:
    text = _one(form, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequestData(f"{name} must be a number in decimal degrees", name) from None
    if not -limit <= value <= limit:
        raise BadRequestData(f"{name} must lie between -{limit:g} and {limit:g}", name)
    return value


def _answer(attr: ServiceAttribute, raw: list[str], where: str) -> Any:
    keys = {k for k, _ in attr.values}
    if attr.datatype == "multivaluelist":
        unknown = [v for v in raw if v not in keys]
        if unknown:
            raise BadRequestData(f"{where}: {unknown[0]!r} is not one of {sorted(keys)}", where)
        return raw
    if len(raw) > 1:
        raise BadRequestData(f"{where} takes one value", where)
    value = raw[0]
    if attr.datatype == "singlevaluelist" and value not in keys:
        raise BadRequestData(f"{where}: {value!r} is not one of {sorted(keys)}", where)
    if attr.datatype == "number":
        try:
            return float(value)
        except ValueError:
            raise BadRequestData(f"{where} must be a number", where) from None
    if attr.datatype == "datetime":
        return format_instant(parse_instant(value, where))
    if len(value) > MAX_DESCRIPTION:
        raise BadRequestData(f"{where} is longer than {MAX_DESCRIPTION} characters", where)
    return value


def parse_new_request(
    form: Mapping[str, str],
    multi: Mapping[str, list[str]],
    catalogue: Mapping[str, Service],
) -> NewRequest:
    """Check a GeoReport v2 POST form; BadRequestData naming the field when it is wrong.

    ``form`` has the first value of each field, ``multi`` every value (for
    ``attribute[code][]`` answers to multi-value lists).
    """
    code = _one(form, "service_code")
    if code is None:
        raise BadRequestData("service_code is required", "service_code")
    service = catalogue.get(code)
    if service is None:
        raise ResourceNotFound(
            f"service_code {code[:64]!r} is not a service of this desk (GET services)",
            "service_code",
        )
    lat = _coordinate(form, "lat", 90)
    lon = _coordinate(form, "long", 180)
    if (lat is None) != (lon is None):
        missing = "long" if lon is None else "lat"
        raise BadRequestData(
            f"{missing} is required with {'lat' if lat is not None else 'long'}", missing
        )
    address = _one(form, "address_string") or _one(form, "address_id")
    if lat is None and address is None:
        raise BadRequestData(
            "a location is required: lat and long, address_string or address_id", "lat"
        )
    description = _one(form, "description")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise BadRequestData(
            f"description is {len(description)} characters; at most {MAX_DESCRIPTION}",
            "description",
        )
    media_url = _one(form, "media_url")
    if media_url is not None and not _URL.match(media_url):
        raise BadRequestData("media_url must be an http(s) URL", "media_url")
    answers: dict[str, Any] = {}
    for attr in service.attributes:
        where = f"attribute[{attr.code}]"
        raw = [v for v in multi.get(where, []) + multi.get(where + "[]", []) if v.strip()]
        if raw:
            answers[attr.code] = _answer(attr, raw, where)
        elif attr.required:
            raise BadRequestData(
                f"{where} is required for {service.code}: {attr.description}", where
            )
    known = {f"attribute[{a.code}]" for a in service.attributes}
    for name in multi:
        if name.startswith("attribute[") and name.removesuffix("[]") not in known:
            raise BadRequestData(f"{name} is not a question of {service.code}", name)
    return NewRequest(
        service=service,
        lon=lon,
        lat=lat,
        address=address[:1024] if address else None,
        description=description,
        media_url=media_url,
        answers=answers,
        jurisdiction_id=_one(form, "jurisdiction_id"),
        account_id=(_one(form, "account_id") or "")[:256] or None,
    )


def _new_local_id(now: float) -> str:
    day = time.strftime("%y%m%d", time.gmtime(now))
    return day + "-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(5))


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


class ServiceDesk:
    """Takes citizens' requests, finds them again, and records the city's answers."""

    def __init__(self, broker: Broker, catalogue: Mapping[str, Service]) -> None:
        self.broker = broker
        self.catalogue = dict(catalogue)
        self._jurisdictions: list[Jurisdiction] = []
        self._loaded_at = float("-inf")

    async def jurisdictions(self) -> list[Jurisdiction]:
        """The municipalities of the metropole (re-read at most once a minute)."""
        if time.monotonic() - self._loaded_at > _JURISDICTION_CACHE_S:
            found, _ = await self.broker.store.query_entities(
                EntityQuery(types=("Municipality",), limit=10_000)
            )
            self._jurisdictions = [_jurisdiction(e) for e in found]
            self._loaded_at = time.monotonic()
        return self._jurisdictions

    async def jurisdiction(self, name: str | None) -> Jurisdiction | None:
        """The municipality a client names (None for none named); 404 when unknown."""
        if name is None:
            return None
        for candidate in await self.jurisdictions():
            if name in candidate.names():
                return candidate
        raise ResourceNotFound(
            f"jurisdiction_id {name[:100]!r} is not a municipality of this metropole",
            "jurisdiction_id",
        )

    async def _place(self, new: NewRequest) -> Jurisdiction:
        named = await self.jurisdiction(new.jurisdiction_id)
        if new.lon is None or new.lat is None:
            if named is None:
                raise BadRequestData(
                    "jurisdiction_id is required when the location is only an address",
                    "jurisdiction_id",
                )
            return named
        if named is not None:
            if not named.covers(new.lon, new.lat):
                raise BadRequestData(f"lat/long lie outside the jurisdiction {named.name}", "lat")
            return named
        for candidate in await self.jurisdictions():
            if candidate.area is not None and candidate.covers(new.lon, new.lat):
                return candidate
        raise BadRequestData("lat/long lie outside every municipality of the metropole", "lat")

    async def submit(self, new: NewRequest, source: str) -> Entity:
        """Store a checked request as a ServiceRequest entity and publish it."""
        place = await self._place(new)
        now = time.time()
        stamp = format_instant(now)
        doc: dict[str, Any] = {
            "type": REQUEST_TYPE,
            "serviceCode": _prop(new.service.code),
            "serviceName": _prop(new.service.name),
            "status": _prop("open"),
            "requestedAt": _prop(stamp),
            "updatedAt": _prop(stamp),
            "department": _prop(new.service.department),
            "agencyResponsible": _prop(f"{place.name}, {new.service.department}"),
            "serviceNotice": _prop(_notice(new.service)),
            "token": _prop(secrets.token_urlsafe(12)),
            "refMunicipality": {"type": "Relationship", "object": place.entity_id},
            "source": _prop(source),
            "answers": _prop(new.answers),
        }
        if new.lon is not None and new.lat is not None:
            point = {"type": "Point", "coordinates": [new.lon, new.lat]}
            doc["location"] = {"type": "GeoProperty", "value": point}
        optional = {
            "description": new.description,
            "addressString": new.address,
            "mediaUrl": new.media_url,
            "accountId": new.account_id,
        }
        doc.update({k: _prop(v) for k, v in optional.items() if v is not None})
        for _ in range(5):
            doc["id"] = entity_id(REQUEST_TYPE, _new_local_id(now))
            try:
                return await self.broker.create_entity(doc)
            except AlreadyExists:
                continue
        raise AlreadyExists("could not find a free service request id; try again", "id")

    async def get(self, request_id: str) -> Entity:
        """One request by its Open311 id; ResourceNotFound when there is none."""
        if not _CODE.match(request_id):
            raise ResourceNotFound(
                f"there is no service request {request_id[:64]!r}", "service_request_id"
            )
        found = await self.broker.store.get_entity(entity_id(REQUEST_TYPE, request_id))
        if found is None:
            raise ResourceNotFound(
                f"there is no service request {request_id!r}", "service_request_id"
            )
        return found

    async def by_token(self, token: str) -> Entity:
        """The request a submission token stands for; ResourceNotFound otherwise."""
        found = await self._query(Term("token", "==", (token[:64],)), limit=1)
        if not found:
            raise ResourceNotFound("no service request has this token", "token")
        return found[0]

    async def search(
        self,
        ids: Sequence[str] = (),
        codes: Sequence[str] = (),
        statuses: Sequence[str] = (),
        start: float | None = None,
        end: float | None = None,
        jurisdiction: Jurisdiction | None = None,
        now: float | None = None,
    ) -> list[Entity]:
        """Requests as GeoReport v2 ``GET requests`` defines the search.

        Ids override every other filter. Otherwise requests made between ``start``
        and ``end`` (default: the 90 days before ``end`` or now), newest first, at
        most 1,000; a range over 90 days is refused.
        """
        if ids:
            out = []
            for request_id in ids[:MAX_RESULTS]:
                try:
                    out.append(await self.get(request_id))
                except ResourceNotFound:
                    continue
            return out
        for status in statuses:
            if status not in ("open", "closed"):
                raise BadRequestData("status must be open or closed (comma separated)", "status")
        span = MAX_SEARCH_DAYS * 86400
        now = time.time() if now is None else now
        if start is None and end is None:
            end = now
        if start is None:
            start = end - span
        elif end is None:
            end = min(start + span, now)
        if end < start:
            raise BadRequestData("end_date must not be before start_date", "end_date")
        if end - start > span:
            raise BadRequestData(
                f"start_date to end_date may span at most {MAX_SEARCH_DAYS} days", "start_date"
            )
        terms: list[QueryNode] = [
            Term("requestedAt", ">=", (format_instant(start),)),
            Term("requestedAt", "<=", (format_instant(end),)),
        ]
        if codes:
            terms.append(Term("serviceCode", "==", tuple(codes)))
        if statuses:
            terms.append(Term("status", "==", tuple(statuses)))
        if jurisdiction is not None:
            terms.append(Term("refMunicipality", "==", (jurisdiction.entity_id,)))
        found = await self._query(And(tuple(terms)), limit=10_000)
        found.sort(key=lambda e: e.attrs["requestedAt"].value, reverse=True)
        return found[:MAX_RESULTS]

    async def _query(self, q: QueryNode, limit: int) -> list[Entity]:
        found, _ = await self.broker.store.query_entities(
            EntityQuery(types=(REQUEST_TYPE,), q=q, limit=limit)
        )
        return found

    async def answer(
        self,
        request_id: str,
        status: str | None,
        notes: str | None,
        expected_at: str | None,
    ) -> Entity:
        """Record the city's answer: a new status, notes for the citizen, an expected date."""
        current = await self.get(request_id)
        fragment: dict[str, Any] = {"updatedAt": _prop(format_instant(time.time()))}
        if status is not None:
            if status not in ("open", "closed"):
                raise BadRequestData("status must be open or closed", "status")
            fragment["status"] = _prop(status)
        if notes is not None:
            fragment["statusNotes"] = _prop(notes)
        if expected_at is not None:
            fragment["expectedAt"] = _prop(format_instant(parse_instant(expected_at, "expectedAt")))
        if len(fragment) == 1:
            raise BadRequestData("give status, notes or expectedAt", "body")
        attrs = await self.broker.parse_fragment(current.id, fragment)
        await self.broker.write_attrs(current.id, attrs, "append")
        return await self.get(request_id)


def _notice(service: Service) -> str:
    if service.kind == "realtime":
        return "Thank you: the control room has your report now."
    return "Thank you: the service in charge will look at your report."


def _jurisdiction(entity: Entity) -> Jurisdiction:
    def value(name: str) -> Any:
        attr = entity.attrs.get(name)
        return None if attr is None else attr.value

    location = value("location")
    area = prep(shape(location)) if isinstance(location, dict) else None
    return Jurisdiction(
        entity_id=entity.id,
        local_id=entity.id.split(":", 3)[3],
        code=value("code"),
        name=value("name") or entity.id,
        area=area,
    )
