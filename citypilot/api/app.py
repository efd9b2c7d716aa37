"""The HTTP application: builds the city (store, bus, broker, stream) and wires the routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from citypilot import __version__, metrics
from citypilot.api import (
    accounts,
    admin,
    alarms,
    audit,
    auth,
    commands,
    discovery,
    feeds,
    health,
    history,
    incidents,
    ingest,
    ldcontexts,
    mapdata,
    modes,
    ngsi_ld,
    ngsi_ld_merge,
    open311,
    rules,
    service_requests,
    stream,
    subscriptions,
    temporal,
    temporal_provision,
)
from citypilot.api.backpressure import InflightLimit
from citypilot.api.context import router as context_router
from citypilot.api.deps import City
from citypilot.api.entity_cache import EntityCache
from citypilot.api.explorer import install_explorer
from citypilot.api.jsonld import JsonLdEdge
from citypilot.api.ldcontexts import open_contexts, warm
from citypilot.api.openapi import install_openapi
from citypilot.api.problems import install_problem_handlers
from citypilot.api.scope_index import ScopeIndex
from citypilot.api.tenants import TenantEcho, Tenants
from citypilot.api.trailing_slash import NgsiTrailingSlash
from citypilot.api.uri_paths import UriSegments
from citypilot.broker import Broker
from citypilot.bus.factory import open_bus
from citypilot.config import Settings
from citypilot.engine.assembly import Engine
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.errors import BadRequestData
from citypilot.model.types import TypeRegistry
from citypilot.model.types_file import load_types_file
from citypilot.ops.closures import ClosureBook
from citypilot.ops.routing import open_routing
from citypilot.security.public import check_public_types
from citypilot.store.factory import open_store

log = logging.getLogger(__name__)


def build_registry(settings: Settings) -> TypeRegistry:
    """The built-in types plus those of the configured types file; personal identifiers
    are pseudonymised with the keys of the data directory."""
    from citypilot.security.privacy import load_keys

    registry = TypeRegistry(BUILTIN_TYPES, load_keys(settings.data_path).pseudonymise)
    if settings.types_file is not None:
        for entity_type in load_types_file(settings.types_file):
            registry.register(entity_type)
    return registry


async def _engine_of(settings: Settings, broker: Broker, city: City) -> Engine | None:
    """The engine of this process, not yet started (``engine = "embedded"``), or None
    when it runs in the engine worker: the city then calls it (``engine/remote.py``)."""
    if settings.engine == "embedded":
        engine = await Engine.build(settings, broker, city.closures)
        city.commands, city.command_callbacks = engine.commands, engine.callbacks
        city.alarms, city.rules, city.modes = engine.alarms, engine.rules, engine.modes
        return engine
    from citypilot.bus.nats import NatsBus
    from citypilot.engine.remote import (
        RemoteAlarms,
        RemoteCallbacks,
        RemoteCommands,
        RemoteModes,
        RemoteRules,
    )
    from citypilot.engine.rpc import RpcClient
    from citypilot.store.commands import command_log_for

    if not isinstance(broker.bus, NatsBus):
        raise BadRequestData('engine = "worker" needs bus = "nats" (docs/deploy.md)', "engine")
    rpc = RpcClient(broker.bus)
    city.components["engine"] = rpc
    log_ = command_log_for(broker.store)
    await log_.open()
    city.commands = RemoteCommands(broker, log_, rpc)
    city.command_callbacks = RemoteCallbacks(rpc)
    city.alarms = RemoteAlarms(rpc)
    city.rules = RemoteRules(rpc, broker.registry)
    city.modes = RemoteModes(rpc, broker.registry)
    return None


@contextlib.asynccontextmanager
async def running_city(settings: Settings) -> AsyncIterator[City]:
    """Open the store and bus, start the adapters, and close everything on exit."""
    store = open_store(settings)
    await store.open()
    bus = open_bus(settings, "citypilot-api")
    await bus.start()
    pressure = None
    observations = None
    if settings.bus == "nats":
        # several processes: HTTP observations are checked here and queued in
        # JetStream for the writer workers; MQTT belongs to the ingest workers
        from citypilot.workers.pressure import StreamPressure
        from citypilot.workers.queue import ObservationQueue

        pressure = StreamPressure(bus, settings.max_stream_lag, settings.max_publish_in_flight)
        pressure.start()
        observations = ObservationQueue(bus, store, pressure)
    broker = Broker(
        build_registry(settings), store, bus, observations, strict_types=settings.strict_types
    )
    await broker.load_registered_types()
    city = City(settings, broker, settings.signing_key())
    # incident response and the flood mode: the road graph the demo wrote, when there is one
    city.routing = open_routing(settings.data_path / "graph")
    city.closures = ClosureBook(broker, city.routing)
    engine = await _engine_of(settings, broker, city)
    adapters = []
    if settings.mqtt_url and engine is not None and settings.bus == "memory":
        from citypilot.ingest.mqtt import MqttIngest
        from citypilot.ingest.mqtt_commands import MqttCommandChannel

        adapter = MqttIngest(
            settings.mqtt_url,
            settings.mqtt_topic_root,
            broker,
            max_json_depth=settings.max_json_depth,
        )
        engine.commands.channels.append(MqttCommandChannel(adapter, engine.commands))
        await adapter.start()
        adapters.append(adapter)
        city.components["mqtt"] = adapter
    from citypilot.security.retention import retention_loop

    purger = asyncio.create_task(retention_loop(store, broker.registry, settings))
    if engine is not None:
        await engine.start()
    try:
        yield city
    finally:
        if engine is not None:
            await engine.stop()
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        for adapter in adapters:
            await adapter.stop()
        if pressure is not None:
            await pressure.stop()
        await bus.stop()
        await store.close()


def create_app(settings: Settings, on_ready: Callable[[City, bool], None] | None = None) -> FastAPI:
    """The CityPilot ASGI app for these settings; ``on_ready(city, console_built)`` is
    called once the city runs (``serve`` prints where to go and what connected)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running_city(settings) as city:
            check_public_types(settings.public_read_types, city.broker.registry)
            app.state.city = city
            scopes = ScopeIndex()
            await scopes.load(city.broker.store)
            app.state.hub = stream.StreamHub(city.broker.bus, scopes)
            city.entity_cache = EntityCache(city.broker.bus)
            app.state.ld_contexts = await open_contexts(city.settings, city.broker.store)
            metrics.WEBSOCKET_CLIENTS.set_function(lambda: len(app.state.hub.subscribers))
            app.state.routing = city.routing
            notifier = subscriptions.start_notifier(city, app.state.ld_contexts)
            await notifier.start()
            await warm(app.state.ld_contexts, notifier.contexts())
            app.state.tenants = Tenants(city, app.state.ld_contexts, subscriptions.start_notifier)
            await app.state.tenants.open_existing()
            if on_ready is not None:
                on_ready(city, console_built)
            try:
                yield
            finally:
                await app.state.tenants.close()
                await notifier.stop()
                app.state.hub.close()
                city.entity_cache.close()

    app = FastAPI(
        title="CityPilot",
        version=__version__,
        description="Open city operations platform: NGSI-LD entities, history, ingest, stream.",
        lifespan=lifespan,
        # the explorer is served from bundled files (api/explorer.py), never from a CDN
        docs_url=None,
        redoc_url=None,
        # CityPilot exports no OpenTelemetry data (metrics come as Prometheus): keep
        # FastAPI's native instrumentation off the request path.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_problem_handlers(app)
    app.add_middleware(audit.AuditMiddleware)
    if settings.http_metrics:
        app.add_middleware(metrics.HttpMetricsMiddleware)
    install_openapi(app, settings.public_read_types)
    install_explorer(app)
    app.add_middleware(
        InflightLimit,
        max_requests=settings.max_inflight_requests,
        max_bytes=settings.max_inflight_bytes,
        retry_after_s=settings.overload_retry_after_s,
    )
    app.add_middleware(UriSegments)
    # outside UriSegments: a name it expands travels as one encoded segment too
    app.add_middleware(JsonLdEdge)
    app.add_middleware(NgsiTrailingSlash)
    app.add_middleware(TenantEcho)
    for router in (
        accounts.router,
        audit.router,
        ngsi_ld.router,
        ngsi_ld_merge.router,
        temporal.router,
        temporal_provision.router,
        subscriptions.router,
        discovery.router,
        history.router,
        ingest.router,
        commands.router,
        stream.router,
        health.router,
        auth.router,
        admin.router,
        mapdata.router,
        context_router,
        ldcontexts.router,
        open311.router,
        service_requests.router,
        incidents.router,
        feeds.router,
        alarms.router,
        modes.router,
        rules.router,
    ):
        app.include_router(router)
    console_built = mount_console(app)
    return app


def mount_console(app: FastAPI) -> bool:
    """Serve the built browser console at ``/`` when its build is present (True then)."""
    from importlib.resources import files

    from starlette.staticfiles import StaticFiles

    dist = files("citypilot.console").joinpath("dist")
    if dist.is_dir() and dist.joinpath("index.html").is_file():
        app.mount("/", StaticFiles(directory=str(dist), html=True), name="console")
        return True
    log.warning("console build not found (run scripts/setup.sh); serving the API only")
    return False
