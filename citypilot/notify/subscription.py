"""NGSI-LD subscriptions (ETSI GS CIM 009 v1.8, clause 5.2.12): checked, completed and
shown; what they select is compiled once (see ``Compiled``) for the notifier.

A stored subscription is its NGSI-LD document plus ``_owner`` (who created it, with
their role and grants: notifications only carry what the owner may see) and the
notification status members the notifier keeps up to date.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from citypilot.api.linked import MAX_JOIN_LEVEL
from citypilot.model.errors import BadRequestData
from citypilot.model.ids import check_entity_id, check_uri
from citypilot.model.patterns import check_pattern, compiled
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.security.scopes import DEPARTMENT_ATTR, MUNICIPALITY_ATTR, grant_from_json
from citypilot.security.tokens import Principal
from citypilot.store.base import GeoQuery
from citypilot.store.query import QueryNode, parse_q
from citypilot.store.scope_query import ScopeNode, parse_scope_q

FORMATS = ("normalized", "keyValues", "concise")
_MEMBERS = {
    "id",
    "type",
    "@context",
    "subscriptionName",
    "description",
    "entities",
    "watchedAttributes",
    "timeInterval",
    "q",
    "scopeQ",
    "geoQ",
    "notification",
    "expiresAt",
    "isActive",
    "throttling",
    "notificationTrigger",
    "jsonldContext",
}
#: What may trigger a notification (clause 5.2.12, v1.8); the default is the last two.
TRIGGERS = (
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeDeleted",
    "attributeCreated",
    "attributeUpdated",
)
_CHANGE_TRIGGERS = {"entityCreated", "entityUpdated", "attributeCreated", "attributeUpdated"}
_NOTIFICATION = {"attributes", "format", "endpoint", "pick", "omit", "join", "joinLevel"}
#: ``notification.join`` values (``@none``: no linked entities).
JOINS = ("inline", "flat", "@none")
_STATUS = ("timesSent", "lastNotification", "lastSuccess", "lastFailure", "status")
_ENDPOINT = {"uri", "accept", "receiverInfo"}
#: Headers a subscription may not set on its notifications (the broker sets them).
_OWN_HEADERS = {"content-type", "content-length", "link", "host", "transfer-encoding"}
_SELECTOR = {"id", "idPattern", "type"}
_GEOQ = {"geometry", "coordinates", "georel", "geoproperty"}
OWNER = "_owner"


def _strings(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BadRequestData(f"{field} must be a non-empty array of names", field)
    return value


def _seconds(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1e9:
        raise BadRequestData(f"{field} must be a number of seconds above 0", field)
    return float(value)


def _unknown(doc: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(doc) - allowed)
    if extra:
        raise BadRequestData(f"{where}: unknown member {extra[0][:60]!r}", f"{where}.{extra[0]}")


def _selectors(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise BadRequestData("entities must be a non-empty array", "entities")
    for i, item in enumerate(value):
        where = f"entities[{i}]"
        if not isinstance(item, dict):
            raise BadRequestData(f"{where} must be an object", where)
        _unknown(item, _SELECTOR, where)
        if not isinstance(item.get("type"), str) or not item["type"]:
            raise BadRequestData(f"{where}.type is required", f"{where}.type")
        if "id" in item and "idPattern" in item:
            raise BadRequestData(f"{where}: give id or idPattern, not both", f"{where}.id")
        if "id" in item:
            check_entity_id(item["id"], f"{where}.id")
        if "idPattern" in item:
            if not isinstance(item["idPattern"], str):
                raise BadRequestData(f"{where}.idPattern must be a string", f"{where}.idPattern")
            check_pattern(item["idPattern"], f"{where}.idPattern")


def parse_geoq(value: Any) -> GeoQuery:
    """A subscription's ``geoQ`` as a geo-query; BadRequestData naming its member."""
    from citypilot.api.selection import parse_geo

    if not isinstance(value, dict):
        raise BadRequestData("geoQ must be an object", "geoQ")
    _unknown(value, _GEOQ, "geoQ")
    coords = value.get("coordinates")
    text = coords if isinstance(coords, str) else orjson.dumps(coords).decode()
    try:
        geo = parse_geo(value.get("georel"), value.get("geometry"), text, value.get("geoproperty"))
    except BadRequestData as e:
        raise BadRequestData(e.detail, f"geoQ.{e.field}") from None
    if geo is None:
        raise BadRequestData("geoQ needs georel, geometry and coordinates", "geoQ")
    return geo


def _receiver_info(value: Any) -> None:
    where = "notification.endpoint.receiverInfo"
    if not isinstance(value, list):
        raise BadRequestData(f"{where} must be an array of {{key, value}}", where)
    for i, pair in enumerate(value):
        at = f"{where}[{i}]"
        if (
            not isinstance(pair, dict)
            or set(pair) != {"key", "value"}
            or not all(isinstance(pair[k], str) for k in pair)
        ):
            raise BadRequestData(f'{at} must be {{"key": text, "value": text}}', at)
        key = pair["key"]
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}", key):
            raise BadRequestData(f"{at}.key is not an HTTP header name", f"{at}.key")
        if key.lower() in _OWN_HEADERS:
            raise BadRequestData(f"{at}.key: {key} is set by the broker", f"{at}.key")
        if any(c in pair["value"] for c in "\r\n\0") or len(pair["value"]) > 4096:
            raise BadRequestData(f"{at}.value is not an HTTP header value", f"{at}.value")


def receiver_headers(endpoint: dict[str, Any]) -> dict[str, str]:
    """The headers ``receiverInfo`` asks notifications to carry."""
    return {p["key"]: p["value"] for p in endpoint.get("receiverInfo", ())}


def _endpoint(value: Any) -> None:
    where = "notification.endpoint"
    if not isinstance(value, dict):
        raise BadRequestData(f"{where} is required", where)
    _unknown(value, _ENDPOINT, where)
    uri = value.get("uri")
    if not isinstance(uri, str):
        raise BadRequestData(f"{where}.uri is required", f"{where}.uri")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https", "mqtt") or not parts.hostname:
        raise BadRequestData(
            f"{where}.uri must be an http://, https:// or mqtt://host:port/topic URI",
            f"{where}.uri",
        )
    if parts.scheme == "mqtt" and not parts.path.strip("/"):
        raise BadRequestData(f"{where}.uri: an MQTT endpoint needs a topic", f"{where}.uri")
    try:
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise BadRequestData(f"{where}.uri has a bad port", f"{where}.uri") from None
    if "receiverInfo" in value:
        _receiver_info(value["receiverInfo"])
    if value.get("accept", "application/json") not in ("application/json", "application/ld+json"):
        raise BadRequestData(
            f"{where}.accept must be application/json or application/ld+json", f"{where}.accept"
        )


def _notification(value: Any) -> None:
    if not isinstance(value, dict):
        raise BadRequestData("notification is required", "notification")
    _unknown(value, _NOTIFICATION | set(_STATUS), "notification")
    read_only = sorted(set(value) & set(_STATUS))
    if read_only:
        raise BadRequestData(
            f"notification.{read_only[0]} is kept by the broker", f"notification.{read_only[0]}"
        )
    if "attributes" in value:
        _strings(value["attributes"], "notification.attributes")
    if value.get("format", "normalized") not in FORMATS:
        raise BadRequestData(
            f"notification.format must be one of {', '.join(FORMATS)}", "notification.format"
        )
    _endpoint(value.get("endpoint"))
    _linked_and_projection(value)


def _linked_and_projection(value: dict[str, Any]) -> None:
    """``notification.pick``/``omit`` (member names, not both) and ``join``/``joinLevel``
    (linked entities, clause 4.5.23), as a query takes them."""
    for name in ("pick", "omit"):
        if name in value:
            _strings(value[name], f"notification.{name}")
    if "pick" in value and "omit" in value:
        raise BadRequestData("give either pick or omit, not both", "notification.omit")
    if "join" in value and value["join"] not in JOINS:
        raise BadRequestData(
            f"notification.join must be one of {', '.join(JOINS)}", "notification.join"
        )
    if "joinLevel" in value:
        level = value["joinLevel"]
        whole = isinstance(level, int) and not isinstance(level, bool)
        if not whole or not 1 <= level <= MAX_JOIN_LEVEL:
            raise BadRequestData(
                f"notification.joinLevel must be a whole number from 1 to {MAX_JOIN_LEVEL}",
                "notification.joinLevel",
            )


def check_subscription(doc: Any) -> dict[str, Any]:
    """A whole subscription document checked (the id included); BadRequestData naming
    the member at fault."""
    if not isinstance(doc, dict):
        raise BadRequestData("a subscription must be a JSON object", "body")
    _unknown(doc, _MEMBERS, "subscription")
    if doc.get("type") != "Subscription":
        raise BadRequestData("type must be Subscription", "type")
    check_entity_id(doc.get("id"), "id")
    if "entities" in doc:
        _selectors(doc["entities"])
    if "watchedAttributes" in doc:
        _strings(doc["watchedAttributes"], "watchedAttributes")
    if "entities" not in doc and "watchedAttributes" not in doc:
        raise BadRequestData("a subscription needs entities or watchedAttributes", "entities")
    if "timeInterval" in doc:
        _seconds(doc["timeInterval"], "timeInterval")
        for other in ("watchedAttributes", "throttling"):
            if other in doc:
                raise BadRequestData(f"timeInterval and {other} exclude each other", other)
        if "entities" not in doc:
            raise BadRequestData("timeInterval needs entities", "entities")
    if "throttling" in doc:
        _seconds(doc["throttling"], "throttling")
    if "notificationTrigger" in doc:
        for trigger in _strings(doc["notificationTrigger"], "notificationTrigger"):
            if trigger not in TRIGGERS:
                raise BadRequestData(
                    f"notificationTrigger: {trigger[:40]!r} is not one of {', '.join(TRIGGERS)}",
                    "notificationTrigger",
                )
    if "q" in doc:
        if not isinstance(doc["q"], str):
            raise BadRequestData("q must be a string", "q")
        parse_q(doc["q"])
    if "scopeQ" in doc:
        if not isinstance(doc["scopeQ"], str):
            raise BadRequestData("scopeQ must be a string", "scopeQ")
        parse_scope_q(doc["scopeQ"])
    if "geoQ" in doc:
        parse_geoq(doc["geoQ"])
    if "jsonldContext" in doc:
        check_uri(doc["jsonldContext"], "jsonldContext")
    for name in ("subscriptionName", "description"):
        if name in doc and not isinstance(doc[name], str):
            raise BadRequestData(f"{name} must be a string", name)
    if "isActive" in doc and not isinstance(doc["isActive"], bool):
        raise BadRequestData("isActive must be true or false", "isActive")
    if "expiresAt" in doc:
        parse_instant(doc["expiresAt"], "expiresAt")
    _notification(doc.get("notification"))
    return doc


def current_names(doc: Any) -> Any:
    """The document with ``name``, the subscription's name in NGSI-LD before v1.3 (many
    clients still send it), spelled ``subscriptionName``; both at once is BadRequestData."""
    if not isinstance(doc, dict) or "name" not in doc:
        return doc
    if "subscriptionName" in doc:
        raise BadRequestData("give subscriptionName or its old spelling name, not both", "name")
    return {("subscriptionName" if k == "name" else k): v for k, v in doc.items()}


def new_subscription(doc: Any, owner: Principal, now: float) -> dict[str, Any]:
    """A subscription to create: checked, its id given if absent, its owner kept."""
    doc = current_names(doc)
    if isinstance(doc, dict) and "id" not in doc:
        doc = {"id": f"urn:ngsi-ld:Subscription:{uuid.uuid4()}", **doc}
    checked = check_subscription(doc)
    checked.pop("@context", None)
    checked[OWNER] = {
        "name": owner.name,
        "role": owner.role,
        "grants": [g.to_json() for g in owner.grants],
        "createdAt": now,
    }
    checked["notification"] = {**checked["notification"], "timesSent": 0}
    return checked


def merged(stored: dict[str, Any], fragment: Any) -> dict[str, Any]:
    """A subscription with a PATCH fragment applied (members replaced, ``notification``
    merged member by member), checked whole; id and type cannot change."""
    if not isinstance(fragment, dict) or not fragment:
        raise BadRequestData("the update must be a non-empty JSON object", "body")
    for fixed in ("id", "type"):
        if fixed in fragment and fragment[fixed] != stored[fixed]:
            raise BadRequestData(f"a subscription's {fixed} cannot change", fixed)
    public = {k: v for k, v in stored.items() if k != OWNER}
    status = {k: v for k, v in stored["notification"].items() if k in _STATUS}
    notification = {k: v for k, v in stored["notification"].items() if k not in _STATUS}
    update = {k: v for k, v in current_names(fragment).items() if k != "@context"}
    if isinstance(update.get("notification"), dict):
        update["notification"] = {**notification, **update["notification"]}
    checked = check_subscription({**public, "notification": notification, **update})
    checked["notification"] = {**checked["notification"], **status}
    checked[OWNER] = stored[OWNER]
    return checked


def definition(doc: dict[str, Any]) -> dict[str, Any]:
    """What a subscription asks for, without the status the broker keeps in it."""
    note = {k: v for k, v in doc["notification"].items() if k not in _STATUS}
    return {**doc, "notification": note}


def with_status_of(doc: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``doc`` carrying the notification status members of ``other``."""
    status = {k: v for k, v in other["notification"].items() if k in _STATUS}
    return {**doc, "notification": {**definition(doc)["notification"], **status}}


def status_of(doc: dict[str, Any], now: float) -> str:
    """``active``, ``paused`` (isActive false) or ``expired``."""
    if "expiresAt" in doc and parse_instant(doc["expiresAt"], "expiresAt") <= now:
        return "expired"
    return "active" if doc.get("isActive", True) else "paused"


def shown(doc: dict[str, Any], now: float) -> dict[str, Any]:
    """The subscription as the API shows it: without its owner, with its status."""
    out = {k: v for k, v in doc.items() if k != OWNER}
    out["isActive"] = doc.get("isActive", True)
    out["status"] = status_of(doc, now)
    return out


def owner_of(doc: dict[str, Any]) -> Principal:
    """Who created the subscription, with the grants they had."""
    owner = doc[OWNER]
    grants = tuple(grant_from_json(g, "grants") for g in owner["grants"])
    return Principal(owner["name"], owner["role"], grants)


#: The attributes an entity's visibility and masking depend on (``entity_scope``).
SCOPE_ATTRIBUTES = frozenset((MUNICIPALITY_ATTR, DEPARTMENT_ATTR))


@dataclass(frozen=True)
class Compiled:
    """What a subscription selects, parsed once."""

    doc: dict[str, Any]
    selectors: tuple[tuple[str, str | None, Any], ...]  # (type, id, compiled idPattern)
    watched: frozenset[str] | None
    q: QueryNode | None
    scope_q: ScopeNode | None
    geo: GeoQuery | None
    attributes: frozenset[str] | None
    expires: float | None
    on_change: bool  # notified of changes (attributes created or updated)
    on_removal: bool  # notified of attributes deleted
    on_deletion: bool  # notified of entities deleted

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Compiled:
        """Compile a stored (checked) subscription."""
        selectors = tuple(
            (s["type"], s.get("id"), compiled(s["idPattern"]) if "idPattern" in s else None)
            for s in doc.get("entities", ())
        )
        note = doc["notification"]
        triggers = set(doc.get("notificationTrigger", TRIGGERS[-2:]))
        return cls(
            doc,
            selectors,
            frozenset(doc["watchedAttributes"]) if "watchedAttributes" in doc else None,
            parse_q(doc["q"]) if "q" in doc else None,
            parse_scope_q(doc["scopeQ"]) if "scopeQ" in doc else None,
            parse_geoq(doc["geoQ"]) if "geoQ" in doc else None,
            frozenset(note["attributes"]) if "attributes" in note else None,
            parse_instant(doc["expiresAt"], "expiresAt") if "expiresAt" in doc else None,
            bool(triggers & _CHANGE_TRIGGERS),
            "attributeDeleted" in triggers,
            "entityDeleted" in triggers,
        )

    @property
    def reads(self) -> frozenset[str] | None:
        """The attributes of an entity its notification needs from the store: those it
        shows and those its owner's visibility and masking depend on (None: all, when it
        shows every attribute or its ``q``, ``scopeQ`` or ``geoQ`` is checked here)."""
        if self.attributes is None or not (self.q is self.scope_q is self.geo is None):
            return None
        return self.attributes | SCOPE_ATTRIBUTES

    def selects(self, change: dict[str, Any]) -> bool:
        """Whether a change event of one entity concerns the subscription (before its q
        and geoQ are checked on the entity)."""
        touched = list(change["attrs"]) if self.on_change else []
        if self.on_removal:
            touched += change.get("removed", [])
        if not touched:
            return False
        if self.watched is not None and self.watched.isdisjoint(touched):
            return False
        return self.names(change["id"], change["type"])

    def names(self, entity_id: str, type_name: str) -> bool:
        """Whether the subscription's entity selectors name this entity."""
        if not self.selectors:
            return True
        for sel_type, sel_id, pattern in self.selectors:
            if sel_type != type_name:
                continue
            if sel_id is not None and sel_id != entity_id:
                continue
            if pattern is not None and pattern.search(entity_id) is None:
                continue
            return True
        return False


def notification_body(
    sub_id: str, data: list[dict[str, Any]], now: float, ld: bool, context: str | None = None
) -> str:
    """The Notification (clause 5.3.1) of ``data``, as JSON text; with ``ld``, it carries
    the subscription's ``context`` (``jsonldContext``) and the core context."""
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": sub_id,
        "notifiedAt": format_instant(now),
        "data": data,
    }
    if ld:
        from citypilot.model.entity import CORE_CONTEXT

        body["@context"] = [context, CORE_CONTEXT] if context else CORE_CONTEXT
    return orjson.dumps(body).decode()
