"""NGSI-LD tenants (ETSI GS CIM 009 v1.8, clauses 4.14, 5.5.10, 6.3.14): the
``NGSILD-Tenant`` header names a city data space of its own.

A tenant has its own store (``store.tenants``), bus (``bus.factory``), broker, entity cache,
notifier and retention purge, opened at start (the tenants there are) or on its first
request, and kept until shutdown. What is one for the
whole platform stays with the city: accounts and tokens (one identity), the type
registry, stored @contexts, the console and ingest (``/api/v1``, always the default
tenant). An operation that creates (entity, batch create or upsert, temporal entity,
subscription) creates a tenant that does not exist yet, for a caller with the operator
role, within the city's bounds: a name ``tenants_allowed`` lists (when it is set; else
404 NonexistentTenant), and at most ``max_tenants`` of them (else 403); any other
operation names a missing tenant with 404 NonexistentTenant. Responses under
``/ngsi-ld/`` carry back the ``NGSILD-Tenant`` header the request had.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citypilot.api.deps import City, person_in_role, viewer_or_public
from citypilot.api.entity_cache import EntityCache
from citypilot.api.ldcontexts import warm
from citypilot.api.openapi import names_tenant
from citypilot.broker import Broker
from citypilot.bus.factory import open_bus
from citypilot.model.errors import Forbidden, NonexistentTenant
from citypilot.security.retention import retention_loop
from citypilot.store.factory import open_store
from citypilot.store.tenants import (
    TENANT_HEADER,
    check_tenant_name,
    existing_tenants,
    tenant_exists,
)

log = logging.getLogger(__name__)
_HEADER_KEY = TENANT_HEADER.lower().encode()


class Tenants:
    """The tenants' data spaces this process has opened, by name."""

    def __init__(self, city: City, contexts: Any, notifier_for: Callable[[City, Any], Any]) -> None:
        """``notifier_for(space, contexts)`` makes a data space's notifier
        (``api.subscriptions.start_notifier``)."""
        self.city = city
        self.contexts = contexts
        self._notifier_for = notifier_for
        self._open: dict[str, City] = {}
        self._purgers: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str, create: bool) -> City:
        """The data space of tenant ``name``, opened if need be; created too when
        ``create``, else NonexistentTenant when it was never created."""
        found = self._open.get(name)
        if found is not None:
            return found
        async with self._lock:
            found = self._open.get(name)
            if found is not None:
                return found
            settings = self.city.settings
            if not await tenant_exists(settings, self.city.broker.store, name):
                if not create:
                    raise NonexistentTenant(f"there is no tenant {name!r}", TENANT_HEADER)
                await self._may_create(name)
            found = self._open[name] = await self._opened(name)
            log.info("tenant %r opened", name)
            return found

    async def _may_create(self, name: str) -> None:
        """Refuse a new tenant the settings do not allow: one ``tenants_allowed`` does not
        list (NonexistentTenant), one past ``max_tenants`` (Forbidden)."""
        settings = self.city.settings
        allowed = settings.tenants_allowed
        if allowed is not None and name not in allowed:
            listed = ", ".join(allowed[:20]) + (", ..." if len(allowed) > 20 else "")
            raise NonexistentTenant(
                f"there is no tenant {name!r}, and this city creates only the tenants it"
                f" lists (tenants_allowed: {listed or 'none'})",
                TENANT_HEADER,
            )
        count = len(await existing_tenants(settings, self.city.broker.store))
        if count >= settings.max_tenants:
            raise Forbidden(
                f"this city has {count} tenants, as many as it allows (max_tenants ="
                f" {settings.max_tenants}): tenant {name!r} is not created",
                TENANT_HEADER,
            )

    async def open_existing(self) -> None:
        """Open every tenant created so far, so that their notifications still pending
        are sent, their periodic subscriptions notify and their personal values are
        purged on time, whether or not a request names them."""
        for name in await existing_tenants(self.city.settings, self.city.broker.store):
            await self.get(name, create=False)

    async def _opened(self, name: str) -> City:
        settings = self.city.settings
        store = open_store(settings, name)
        await store.open()
        # a bus of its own (on NATS, shared by every process that opens the tenant)
        bus = open_bus(settings, f"citypilot-api-t-{name}", name)
        await bus.start()
        # one type registry for the whole platform: the city's types hold in every tenant
        broker = Broker(self.city.broker.registry, store, bus, strict_types=settings.strict_types)
        space = replace(self.city, broker=broker, tenant=name, entity_cache=EntityCache(bus))
        notifier = self._notifier_for(space, self.contexts)
        await notifier.start()
        await warm(self.contexts, notifier.contexts())
        purge = retention_loop(store, broker.registry, settings, (name, self.city.broker.store))
        self._purgers[name] = asyncio.create_task(purge)
        return space

    async def close(self) -> None:
        """Stop every tenant's notifier and close its bus and store."""
        for purger in self._purgers.values():
            purger.cancel()
        await asyncio.gather(*self._purgers.values(), return_exceptions=True)
        self._purgers.clear()
        for name, space in self._open.items():
            if space.entity_cache is not None:
                space.entity_cache.close()
            for step in (space.notifier.stop, space.broker.bus.stop, space.broker.store.close):
                try:
                    await step()
                except Exception:
                    log.exception("closing tenant %r failed", name)
        self._open.clear()


def _requested(request: Request) -> str | None:
    value = request.headers.get(TENANT_HEADER)
    return None if value is None else check_tenant_name(value)


@names_tenant(creates=False)
async def tenant_city(request: Request) -> City:
    """The data space of the request's tenant (the city's own without the header);
    NonexistentTenant for one never created. The caller is checked first (viewer, or
    anonymous where the city opened reads), so nobody learns which tenants exist
    without a credential the route would take."""
    name = _requested(request)
    if name is None:
        return request.app.state.city
    await viewer_or_public(request)
    return await request.app.state.tenants.get(name, create=False)


@names_tenant(creates=True)
async def new_tenant_city(request: Request) -> City:
    """As ``tenant_city``, for operations that create: a tenant not yet there is
    created, for a caller with the operator role."""
    name = _requested(request)
    if name is None:
        return request.app.state.city
    await person_in_role(request, "operator")
    return await request.app.state.tenants.get(name, create=True)


#: The city data space of the request's tenant.
TenantCity = Annotated[City, Depends(tenant_city)]
#: The same, created if it does not exist yet (operations that create).
NewTenantCity = Annotated[City, Depends(new_tenant_city)]


class TenantEcho:
    """Give back the ``NGSILD-Tenant`` header of a request under ``/ngsi-ld/`` on its
    response, errors included (clause 6.3.14)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the header to the response it gets."""
        if scope["type"] != "http" or not scope["path"].startswith("/ngsi-ld/"):
            await self.app(scope, receive, send)
            return
        tenant = next((v for k, v in scope["headers"] if k == _HEADER_KEY), None)
        if tenant is None:
            await self.app(scope, receive, send)
            return

        async def send_echoed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (_HEADER_KEY, tenant)]}
            await send(message)

        await self.app(scope, receive, send_echoed)
