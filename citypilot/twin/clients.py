"""Device-gateway clients: how the simulator's observations reach a running platform.

The simulator is a client like any real gateway; it never writes into a store.

* :class:`HttpIngestClient` posts batches to ``POST {base}/api/v1/ingest`` with
  the ``X-Device-Key`` header, as NDJSON (default) or a JSON array. Connection
  errors, 429 and 5xx answers are retried with exponential back-off, without
  ever dropping a batch. A batch the server answered (200; 207 or 400 with
  per-item errors, which the server keeps as dead letters) returns an
  :class:`IngestResult` and logs the refusals; any other 4xx (bad key, wrong
  URL, batch too large) raises :class:`IngestRejected` with the server's
  problem details.
* :class:`MqttPublisher` publishes each observation to
  ``citypilot/<Type>/<local-id>/attrs`` with QoS 1, payload
  ``{"observedAt": ..., "attrs": {...}}``, reconnecting and resending after a
  broker failure (at-least-once).
* :class:`MemorySink` only counts (and optionally keeps) what it is given: for
  dry runs and for measuring the simulator alone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import httpx
import orjson

log = logging.getLogger("citypilot.twin.clients")

INGEST_PATH = "/api/v1/ingest"
TOPIC_PREFIX = "citypilot"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MQTT_CONCURRENCY = 256  # publishes awaiting their PUBACK at once


class Sink(Protocol):
    """Anything the simulation loop can hand a batch of observations to."""

    async def send(self, batch: list[dict[str, Any]]) -> Any:
        """Deliver one batch (raise on a permanent failure)."""


class IngestRejected(Exception):
    """The server refused a batch for good (a 4xx other than 429)."""

    def __init__(self, status: int, body: Any) -> None:
        detail = body.get("detail") if isinstance(body, dict) else body
        super().__init__(f"ingest refused with HTTP {status}: {detail}")
        self.status = status
        self.body = body


@dataclass
class IngestResult:
    """The server's answer to one batch."""

    accepted: int
    rejected: int
    errors: list[Any] = field(default_factory=list)


class HttpIngestClient:
    """Posts observation batches to the platform's HTTP ingest API."""

    def __init__(
        self,
        base_url: str,
        device_key: str,
        *,
        body_format: Literal["ndjson", "json"] = "ndjson",
        timeout: float = 30.0,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
        give_up_after: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + INGEST_PATH
        self.device_key = device_key
        self.body_format = body_format
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.give_up_after = give_up_after
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._own_client = client is None
        self.accepted = 0
        self.rejected = 0
        self.retries = 0

    async def __aenter__(self) -> HttpIngestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP client (if this object created it)."""
        if self._own_client:
            await self._client.aclose()

    def encode(self, batch: list[dict[str, Any]]) -> tuple[bytes, str]:
        """The request body and its content type."""
        if self.body_format == "json":
            return orjson.dumps(batch), "application/json"
        return b"".join(orjson.dumps(o) + b"\n" for o in batch), "application/x-ndjson"

    async def send(self, batch: list[dict[str, Any]]) -> IngestResult:
        """Post one batch, retrying transient failures until it is answered."""
        if not batch:
            return IngestResult(0, 0)
        body, content_type = self.encode(batch)
        headers = {"X-Device-Key": self.device_key, "Content-Type": content_type}
        delay = self.first_backoff
        waited = 0.0
        while True:
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (200, 207):
                    return self._accepted(response)
                answered = _body(response) if response.status_code == 400 else None
                if isinstance(answered, dict) and "rejected" in answered:
                    return self._accepted(response)  # all refused; the server dead-lettered them
                if response.status_code not in RETRY_STATUSES:
                    problem = _body(response)
                    log.error("ingest refused a batch of %d: %s", len(batch), problem)
                    raise IngestRejected(response.status_code, problem)
                reason = f"HTTP {response.status_code}"
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            if self.give_up_after is not None and waited >= self.give_up_after:
                raise ConnectionError(f"ingest unreachable for {waited:.0f} s: {reason}")
            self.retries += 1
            log.warning(
                "ingest failed (%s); retrying the batch of %d in %.1f s", reason, len(batch), delay
            )
            await asyncio.sleep(delay)
            waited += delay
            delay = min(self.max_backoff, delay * 2)

    def _accepted(self, response: httpx.Response) -> IngestResult:
        doc = _body(response)
        if not isinstance(doc, dict):
            doc = {}
        result = IngestResult(
            int(doc.get("accepted", 0)), int(doc.get("rejected", 0)), list(doc.get("errors", []))
        )
        self.accepted += result.accepted
        self.rejected += result.rejected
        if result.rejected:
            log.warning(
                "ingest rejected %d of %d observations; first errors: %s",
                result.rejected,
                result.accepted + result.rejected,
                result.errors[:3],
            )
        return result


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def topic_for(observation: dict[str, Any], root: str = TOPIC_PREFIX) -> str:
    """MQTT topic of an observation: ``<root>/<Type>/<local-id>/attrs``."""
    type_name = observation["type"]
    local = observation["id"][len(f"urn:ngsi-ld:{type_name}:") :]
    return f"{root}/{type_name}/{local}/attrs"


def mqtt_payload(observation: dict[str, Any]) -> bytes:
    """MQTT payload of an observation (type and id travel in the topic)."""
    return orjson.dumps({"observedAt": observation["observedAt"], "attrs": observation["attrs"]})


class MqttPublisher:
    """Publishes observations to an MQTT broker, QoS 1, one topic per device.

    ``url`` is ``mqtt://[user[:password]@]host[:port]``; ``topic_root`` must match
    the platform's ``mqtt_topic_root`` setting. Use as an async context manager, or
    call :meth:`connect` and :meth:`aclose`.
    """

    def __init__(
        self,
        url: str,
        *,
        identifier: str | None = None,
        topic_root: str = TOPIC_PREFIX,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp", ""):
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} (use mqtt://host:port)")
        self.hostname = parts.hostname or "localhost"
        self.port = parts.port or 1883
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.identifier = identifier
        self.topic_root = topic_root
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._client: Any = None
        self.published = 0
        self.reconnects = 0

    async def __aenter__(self) -> MqttPublisher:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Connect to the broker (retrying with back-off until it answers)."""
        import aiomqtt

        delay = self.first_backoff
        while True:
            client = aiomqtt.Client(
                self.hostname,
                self.port,
                username=self.username,
                password=self.password,
                identifier=self.identifier,
                max_inflight_messages=MQTT_CONCURRENCY,
            )
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                log.warning(
                    "MQTT broker %s:%d unreachable (%s); retrying in %.1f s",
                    self.hostname,
                    self.port,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
                continue
            self._client = client
            return

    async def aclose(self) -> None:
        """Disconnect cleanly."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.__aexit__(None, None, None)
            except Exception as exc:  # already broken: nothing left to close
                log.debug("MQTT disconnect: %s", exc)

    async def send(self, batch: list[dict[str, Any]]) -> int:
        """Publish every observation of ``batch``; resend the batch after a broker failure."""
        import aiomqtt

        if not batch:
            return 0
        messages = [(topic_for(o, self.topic_root), mqtt_payload(o)) for o in batch]
        while True:
            if self._client is None:
                await self.connect()
            try:
                for k in range(0, len(messages), MQTT_CONCURRENCY):
                    chunk = messages[k : k + MQTT_CONCURRENCY]
                    await asyncio.gather(*(self._client.publish(t, p, qos=1) for t, p in chunk))
            except aiomqtt.MqttError as exc:
                log.warning(
                    "MQTT publish failed (%s); reconnecting and resending %d", exc, len(batch)
                )
                self.reconnects += 1
                await self.aclose()
                await asyncio.sleep(self.first_backoff)
                continue
            self.published += len(batch)
            return len(batch)


class MemorySink:
    """Counts observations (keeping the last ``keep`` of them): dry runs and benchmarks."""

    def __init__(self, keep: int = 0) -> None:
        self.keep = keep
        self.count = 0
        self.batches = 0
        self.kept: list[dict[str, Any]] = []

    async def send(self, batch: list[dict[str, Any]]) -> int:
        """Count (and keep) the batch."""
        self.count += len(batch)
        self.batches += 1
        if self.keep:
            self.kept.extend(batch)
            del self.kept[: max(0, len(self.kept) - self.keep)]
        return len(batch)
