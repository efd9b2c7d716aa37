"""NGSI-LD subscriptions under ``/ngsi-ld/v1/subscriptions`` (clause 6.10-6.11): create,
list, read, update and delete; the notifier (``notify.notifier``) acts on them at once.

Subscriptions send data out of the platform, so they need the operator role, and each
notification carries only what its creator may see (masked as they would see it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from citypilot.api.access import masker
from citypilot.api.body import read_json
from citypilot.api.deps import City, Operator, Viewer, access, resolved
from citypilot.api.ldcontexts import in_context, open_contexts, warm
from citypilot.api.linked import Join, fetch_linked, flat_docs, inline
from citypilot.api.ngsi_ld import LINK
from citypilot.api.openapi import answer, array_of, created, json_body
from citypilot.api.paging import Offset
from citypilot.api.projection import Projection, project_body
from citypilot.api.tenants import NewTenantCity, TenantCity
from citypilot.engine.rpc import RpcClient
from citypilot.model.entity import Entity
from citypilot.model.errors import AlreadyExists, ResourceNotFound, ServiceUnavailable
from citypilot.model.ids import check_entity_id
from citypilot.notify.notifier import Notifier
from citypilot.notify.subscription import Compiled, merged, new_subscription, owner_of, shown
from citypilot.security.roles import role_allows
from citypilot.security.scopes import Visibility, effective_grants
from citypilot.security.tokens import Principal
from citypilot.store.common import scope_of_entity
from citypilot.store.tenants import TENANT_HEADER

log = logging.getLogger(__name__)
router = APIRouter(prefix="/ngsi-ld/v1/subscriptions", tags=["NGSI-LD subscriptions"])

SUBSCRIPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "notification"],
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "Subscription"},
        "entities": {"type": "array", "items": {"type": "object"}},
        "watchedAttributes": {"type": "array", "items": {"type": "string"}},
        "q": {"type": "string"},
        "scopeQ": {"type": "string"},
        "geoQ": {"type": "object"},
        "timeInterval": {"type": "number"},
        "throttling": {"type": "number"},
        "expiresAt": {"type": "string", "format": "date-time"},
        "isActive": {"type": "boolean"},
        "notification": {"type": "object"},
    },
    "example": {
        "type": "Subscription",
        "entities": [{"type": "Streetlight"}],
        "watchedAttributes": ["powerState"],
        "notification": {
            "attributes": ["powerState"],
            "format": "keyValues",
            "endpoint": {"uri": "http://127.0.0.1:9000/notify", "accept": "application/json"},
        },
    },
}


def shaper(city: City, contexts: Any) -> Any:
    """How the notifier renders entities for a subscription: only those its owner may
    see, masked as the owner would see them, in the subscription's format and attributes,
    with the linked entities its ``join`` asks for and the members its ``pick``/``omit``
    keep, in the terms of its ``jsonldContext``."""

    async def shape(sub: Compiled, entities: list[Entity], deleted: bool) -> list[dict[str, Any]]:
        owner = owner_of(sub.doc)
        see = access(city, owner, "viewer")
        mask = masker(city, owner)
        note = sub.doc["notification"]
        key_values = note.get("format", "normalized") != "normalized"
        picked = set(sub.attributes) if sub.attributes is not None else None
        shown = [mask(e) for e in entities if see.covers(e.type, *scope_of_entity(e))]
        docs = [e.to_ngsi(key_values, False, picked) for e in shown]
        if not deleted:  # a deletion's notification sends their ids and types only
            docs = await _joined_and_projected(city, note, shown, docs, see, mask)
        return in_context(contexts, sub.doc.get("jsonldContext"), docs, key_values)

    return shape


async def _joined_and_projected(
    city: City,
    note: dict[str, Any],
    shown: list[Entity],
    docs: list[dict[str, Any]],
    see: Visibility,
    mask: Callable[[Entity], Entity],
) -> list[dict[str, Any]]:
    """The rendered entities with the linked entities ``notification.join`` asks for
    (that the owner may see, as they see them), then the members ``pick``/``omit`` keep."""
    join = _join_of(note)
    if join is not None and shown:
        linked = await fetch_linked(city.broker.store, shown, join, see, mask)
        key_values = note.get("format", "normalized") != "normalized"

        def whole(e: Entity) -> dict[str, Any]:
            return e.to_ngsi(key_values, False, None)

        if join.mode == "inline":
            docs = [
                inline(d, e, linked, whole, key_values, join.level)
                for d, e in zip(docs, shown, strict=True)
            ]
        else:
            docs = [*docs, *flat_docs(linked, whole)]
    return project_body(docs, _projection_of(note))


def _join_of(note: dict[str, Any]) -> Join | None:
    """The linked entities a (checked) notification asks for; None: none."""
    mode = note.get("join", "@none")
    return None if mode == "@none" else Join(mode, note.get("joinLevel", 1))


def _projection_of(note: dict[str, Any]) -> Projection | None:
    """The members a (checked) notification keeps (``pick``) or drops (``omit``)."""
    if "pick" in note:
        return Projection(frozenset(note["pick"]), keep=True)
    if "omit" in note:
        return Projection(frozenset(note["omit"]), keep=False)
    return None


def notifier_of(city: City, contexts: Any) -> Notifier:
    """The notifier of a city's data space (not yet started), rendering with these
    @contexts; a tenant's notifications carry its ``NGSILD-Tenant`` header."""
    settings = city.settings
    return Notifier(
        city.broker.store,
        city.broker.bus,
        shaper(city, contexts),
        retry_min_s=settings.notify_retry_min_s,
        retry_max_s=settings.notify_retry_max_s,
        headers={TENANT_HEADER: city.tenant} if city.tenant else None,
    )


class NotifierElsewhere:
    """The notifier of an API process whose engine runs in the engine worker
    (``engine = "worker"``): a subscription stored by these routes is handed to the
    worker's notifier before the route answers (else its sweep, every half a second,
    takes it up: at its start, when no engine worker leads now)."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def start(self) -> None:
        """Nothing runs here."""

    async def stop(self) -> None:
        """Nothing runs here."""

    def contexts(self) -> list[str]:
        """No @context to resolve here."""
        return []

    async def put(self, doc: dict[str, Any]) -> None:
        """A subscription was created or changed (and stored): the engine takes it up."""
        await self._refresh()

    async def drop(self, sub_id: str) -> None:
        """A subscription was deleted: the engine lets it go."""
        await self._refresh()

    async def _refresh(self) -> None:
        try:
            await self.rpc.call("subscriptions_refresh")
        except ServiceUnavailable as exc:
            log.warning("subscription stored; the engine takes it up when it runs: %s", exc)


def start_notifier(city: City, contexts: Any) -> Notifier | NotifierElsewhere:
    """The notifier of a city's data space (started by the caller), for these routes to
    tell of changes. With ``engine = "worker"`` the city's own runs in the engine worker;
    a tenant's stays in the API process (the engine worker holds the city's only)."""
    notifier: Notifier | NotifierElsewhere
    if city.settings.engine == "worker" and not city.tenant:
        notifier = NotifierElsewhere(city.components["engine"])
    else:
        notifier = notifier_of(city, contexts)
    city.notifier = notifier
    return notifier


async def engine_notifier(city: City) -> Notifier:
    """The notifier of the leading engine worker, started, its subscriptions' @contexts
    resolved."""
    contexts = await open_contexts(city.settings, city.broker.store)
    notifier = notifier_of(city, contexts)
    await notifier.start()
    await warm(contexts, notifier.contexts())
    return notifier


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status, {"Link": LINK, **(headers or {})}, media_type="application/json"
    )


def _concerns(who: Principal, doc: dict[str, Any], needed: str) -> bool:
    """Whether the caller may see (``viewer``) or change (``operator``) a subscription:
    their own, or anyone's with a grant of that role over the whole metropole (a
    subscription of another scope may name what the caller may not see)."""
    if owner_of(doc).name == who.name:
        return True
    return any(
        g.is_metropole and role_allows(g.role, needed)
        for g in effective_grants(who.role, who.grants)
    )


async def _stored(
    city: City, sub_id: str, who: Principal, needed: str = "viewer"
) -> dict[str, Any]:
    check_entity_id(sub_id, "subscriptionId")
    doc = await city.broker.store.get_subscription(sub_id)
    if doc is None or not _concerns(who, doc, needed):
        raise ResourceNotFound(f"subscription {sub_id} does not exist", "subscriptionId")
    return doc


@router.post(
    "",
    status_code=201,
    summary="Create a subscription",
    response_class=Response,
    responses=created("A subscription with this id exists already"),
    openapi_extra=json_body(SUBSCRIPTION_SCHEMA),
)
async def create_subscription(request: Request, city: NewTenantCity, who: Operator) -> Response:
    """Create a subscription; its notifications start at once."""
    body = await read_json(request, city.settings.max_body_bytes)
    doc = new_subscription(body, who, time.time())
    if not await city.broker.store.put_subscription(doc["id"], doc, create=True):
        raise AlreadyExists(f"subscription {doc['id']} exists already", "id")
    await resolved(city.notifier.put(doc))
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{doc['id']}"})


@router.get(
    "",
    summary="List subscriptions",
    responses=answer(200, "A page of subscriptions", array_of(SUBSCRIPTION_SCHEMA)),
)
async def list_subscriptions(
    city: TenantCity,
    who: Viewer,
    limit: Annotated[int, Query(ge=0, le=1000)] = 20,
    offset: Offset = 0,
    count: bool = False,
) -> Response:
    """The subscriptions the caller may see, by id, with their status."""
    docs = [d for d in await city.broker.store.list_subscriptions() if _concerns(who, d, "viewer")]
    now = time.time()
    page = [shown(d, now) for d in docs[offset : offset + limit]]
    headers = {"NGSILD-Results-Count": str(len(docs))} if count else None
    return _json(page, headers=headers)


@router.get(
    "/{subscription_id}",
    summary="Read a subscription",
    responses=answer(200, "The subscription with its status", SUBSCRIPTION_SCHEMA),
)
async def get_subscription(subscription_id: str, city: TenantCity, who: Viewer) -> Response:
    """One subscription: what it selects, its status and notification figures."""
    return _json(shown(await _stored(city, subscription_id, who), time.time()))


@router.patch(
    "/{subscription_id}",
    status_code=204,
    summary="Update a subscription",
    openapi_extra=json_body({"type": "object", "description": "members to replace"}),
)
async def update_subscription(
    request: Request, subscription_id: str, city: TenantCity, who: Operator
) -> Response:
    """Replace members of a subscription (``notification`` member by member)."""
    stored = await _stored(city, subscription_id, who, "operator")
    fragment = await read_json(request, city.settings.max_body_bytes)
    doc = merged(stored, fragment)
    await city.broker.store.put_subscription(subscription_id, doc, create=False)
    await resolved(city.notifier.put(doc))
    return Response(status_code=204)


@router.delete("/{subscription_id}", status_code=204, summary="Delete a subscription")
async def delete_subscription(
    request: Request, subscription_id: str, city: TenantCity, who: Operator
) -> Response:
    """Delete a subscription and the notifications still pending for it."""
    await _stored(city, subscription_id, who, "operator")
    if not await city.broker.store.delete_subscription(subscription_id):
        raise ResourceNotFound(f"subscription {subscription_id} does not exist", "subscriptionId")
    await resolved(city.notifier.drop(subscription_id))
    return Response(status_code=204)
