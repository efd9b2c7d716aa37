"""Device commands over HTTP: CityPilot POSTs each command to the device's callback URL.

A callback URL is registered for one entity (its id) or for a device gateway that
serves every entity of a type (the type's name), through
``PUT /api/v1/commands/endpoints/{target}``. The POST carries ``{"id", "entityId",
"command", "args", "issuedAt", "deadline", "ackUrl"}``. The device answers at once
(2xx with ``{"status": "accepted" | "rejected", "reason", "at"}``) or later, by
``POST /api/v1/commands/{id}/ack`` with the same body (a 2xx without ``status``,
such as 202, means "answer follows"). A 4xx answer rejects the command; a 5xx or a
connection failure is retried, then the command fails. See docs/commands.md.
"""

from __future__ import annotations

import httpx
import orjson

from citypilot.engine.command_model import Command
from citypilot.engine.commands import DeliveryError, DeviceAnswer, read_answer
from citypilot.model.errors import CityPilotError
from citypilot.model.timeutil import format_instant
from citypilot.store.commands import CommandLog

CALLBACK_TIMEOUT_S = 5.0


class HttpCallbackChannel:
    """Delivers commands to the HTTP callback registered for the entity or its type."""

    name = "http"

    def __init__(self, log: CommandLog, client: httpx.AsyncClient | None = None) -> None:
        self.log = log
        self.endpoints: dict[str, str] = {}
        self._client = client or httpx.AsyncClient(timeout=CALLBACK_TIMEOUT_S)

    async def load(self) -> None:
        """Read the registered callbacks (the command tables must exist)."""
        self.endpoints = await self.log.endpoints()

    async def register(self, target: str, url: str | None) -> None:
        """Register (or, with None, remove) the callback of an entity id or a type name."""
        await self.log.put_endpoint(target, url)
        if url is None:
            self.endpoints.pop(target, None)
        else:
            self.endpoints[target] = url

    def url_for(self, command: Command) -> str | None:
        """The callback of the command's entity, else of its type."""
        return self.endpoints.get(command.entity_id) or self.endpoints.get(command.entity_type)

    def reaches(self, command: Command) -> bool:
        """Whether a callback is registered for the entity or its type."""
        return self.url_for(command) is not None

    async def deliver(self, command: Command) -> DeviceAnswer | None:
        """POST the command; the device's answer, if it gave one at once."""
        url = self.url_for(command)
        if url is None:
            raise DeliveryError(f"no HTTP callback for {command.entity_id}")
        body = {
            "id": command.id,
            "entityId": command.entity_id,
            "command": command.command,
            "args": command.args,
            "issuedAt": format_instant(command.created_at),
            "deadline": format_instant(command.deadline),
            "ackUrl": f"/api/v1/commands/{command.id}/ack",
        }
        try:
            response = await self._client.post(
                url, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"HTTP callback {url} failed: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise DeliveryError(f"HTTP callback {url} answered {response.status_code}")
        if response.status_code >= 400:
            return DeviceAnswer(False, f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            doc = response.json() if response.content else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "status" not in doc:
            return None  # the answer follows through POST /api/v1/commands/{id}/ack
        try:
            return read_answer(doc, "answer")[1]
        except CityPilotError as exc:
            raise DeliveryError(f"HTTP callback {url} answered badly: {exc.detail}") from None

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
