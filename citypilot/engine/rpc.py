"""Calls from API processes to the engine worker that leads: NATS core request/reply.

A call is a request on ``<prefix>.rpc.engine.<method>`` with a JSON object of
keyword arguments; the leading engine worker (:class:`RpcServer`, queue group
``engine``) answers ``{"result": ...}`` or, when the service refused,
``{"error": {"class", "detail", "field", "extra"}}``, which :class:`RpcClient`
raises again as the same :class:`~citypilot.model.errors.CityPilotError`
subclass, so the API answers with the same ProblemDetails as an embedded engine.
No engine worker, or none answering within :data:`CALL_TIMEOUT_S`, is a 503
naming the engine. These subjects belong to no JetStream stream: a call is made
once, now, or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from citypilot.bus.nats import NatsBus
from citypilot.model.errors import CityPilotError, ServiceUnavailable

log = logging.getLogger(__name__)

#: How long an API process waits for the engine's answer (seconds).
CALL_TIMEOUT_S = 5.0
#: ...and for entering or leaving a city mode, which sends every command of the mode.
MODE_CALL_TIMEOUT_S = 60.0
#: What a 503 tells the client to wait before trying again (seconds).
RETRY_AFTER_S = 5
QUEUE_GROUP = "engine"

Method = Callable[..., Awaitable[Any]]


def rpc_subject(bus: NatsBus, method: str) -> str:
    """The NATS subject of one engine method."""
    return f"{bus.prefix}.rpc.engine.{method}"


def _error_classes() -> Iterator[type[CityPilotError]]:
    todo: list[type[CityPilotError]] = [CityPilotError]
    while todo:
        cls = todo.pop()
        yield cls
        todo.extend(cls.__subclasses__())


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def encode_error(exc: CityPilotError) -> dict[str, Any]:
    """A refusal as the reply carries it."""
    return {
        "class": _class_name(type(exc)),
        "detail": exc.detail,
        "field": exc.field,
        "extra": exc.extra,
    }


def decode_error(doc: dict[str, Any]) -> CityPilotError:
    """The refusal again, as the same class (CityPilotError when it is unknown here)."""
    classes = {_class_name(cls): cls for cls in _error_classes()}
    cls = classes.get(doc["class"], CityPilotError)
    exc = cls.__new__(cls)
    CityPilotError.__init__(exc, doc["detail"], doc["field"], **doc["extra"])
    if "retryAfter" in exc.extra:
        exc.headers = {"Retry-After": str(exc.extra["retryAfter"])}  # type: ignore[attr-defined]
    return exc


def engine_unreachable(why: str) -> ServiceUnavailable:
    """The 503 of an API process whose engine worker did not answer."""
    return ServiceUnavailable(
        f"the engine (citypilot worker engine) {why}; commands, alarms, rules and modes "
        "are unavailable until an engine worker leads",
        RETRY_AFTER_S,
        "engine",
    )


class RpcClient:
    """Calls the leading engine worker's methods from an API process."""

    def __init__(self, bus: NatsBus, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.bus = bus
        self.timeout_s = timeout_s

    async def call(self, method: str, /, *, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """The method's result; its refusal raised again; 503 when no engine answers
        within ``timeout_s`` (default: the client's)."""
        if not self.bus.connected:
            raise engine_unreachable("cannot be reached: NATS is away")
        wait = self.timeout_s if timeout_s is None else timeout_s
        try:
            reply = await self.bus.client.request(
                rpc_subject(self.bus, method), orjson.dumps(kwargs), timeout=wait
            )
        except NoRespondersError:
            raise engine_unreachable("is not running (no engine worker leads)") from None
        except (NatsTimeout, TimeoutError):
            raise engine_unreachable(f"did not answer within {wait:g} s") from None
        except NatsError as exc:
            raise engine_unreachable(f"cannot be reached: {exc}") from None
        doc = orjson.loads(reply.data)
        if "error" in doc:
            raise decode_error(doc["error"])
        if "failure" in doc:
            raise RuntimeError(f"the engine failed on {method}: {doc['failure']}")
        return doc["result"]

    async def reachable(self, timeout_s: float) -> bool:
        """Whether an engine worker leads and answers (for the health check)."""
        try:
            await self.call("ping", timeout_s=timeout_s)
        except ServiceUnavailable:
            return False
        return True


async def _pong() -> bool:
    return True


class RpcServer:
    """Answers the API processes' calls in the leading engine worker (an engine component)."""

    def __init__(self, bus: NatsBus, methods: dict[str, Method]) -> None:
        self.bus = bus
        self.methods = methods
        self._sub: Any = None
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Take calls (once the engine runs: a call is then served at once)."""
        self._sub = await self.bus.client.subscribe(
            rpc_subject(self.bus, "*"), queue=QUEUE_GROUP, cb=self._on_call
        )

    async def stop(self) -> None:
        """Take no more calls (the API answers 503 until another worker leads)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for task in list(self._calls):
            task.cancel()

    async def _on_call(self, msg: Msg) -> None:
        """Serve each call in its own task: a long one (a mode) holds up no other."""
        task = asyncio.create_task(self._serve(msg))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _serve(self, msg: Msg) -> None:
        method = msg.subject.rsplit(".", 1)[1]
        try:
            handler = self.methods.get(method) if method != "ping" else _pong
            if handler is None:
                raise CityPilotError(f"the engine has no method {method!r}", "method")
            reply: dict[str, Any] = {"result": await handler(**orjson.loads(msg.data))}
        except CityPilotError as exc:
            reply = {"error": encode_error(exc)}
        except Exception as exc:
            log.exception("engine call %s failed", method)
            reply = {"failure": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(NatsError):
            await msg.respond(orjson.dumps(reply))
