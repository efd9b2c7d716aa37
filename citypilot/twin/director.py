"""The demo's scenario director: what people outside the control room do when a
scripted crisis happens, through the same public interfaces they would use.

A citizen who sees the fire reports it to the 311 desk (``POST /open311/v2/requests.json``
with the demo's api key, as any citizen app would); the request opens an incident. The
responders on the spot then close the roads around it (``POST /api/v1/incidents/{id}/
closures``) for the event's duration, which the routing and the transit detours see.
Dispatching a unit is left to the operator at the console's incident board.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import httpx

from citypilot.model.timeutil import format_instant
from citypilot.twin.scenario import CitizenReport

log = logging.getLogger(__name__)

#: How often the director looks for new citizen reports, and for the incident a report
#: opened (seconds).
POLL_S = 0.5
INCIDENT_WAIT_S = 20.0


class DirectorError(RuntimeError):
    """The platform refused what the director did on a citizen's or responder's behalf."""


class ScenarioDirector:
    """Plays the citizens and responders of a scenario against a CityPilot server."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        operator: tuple[str, str],
        *,
        speed: float = 1.0,
        client: httpx.AsyncClient | None = None,
        say: Callable[[str], None] = lambda text: log.info("%s", text),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.operator = operator
        self._token: tuple[str, float] | None = None  # (token, loop time it expires)
        self.say = say
        self.speed = speed  # simulated seconds per real second (durations are simulated)
        self._client = client or httpx.AsyncClient(base_url=self.base_url, timeout=30)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def report(self, report: CitizenReport) -> str:
        """Post the citizen's 311 request; returns its service_request_id."""
        r = await self._client.post(
            "/open311/v2/requests.json",
            data={
                "api_key": self.api_key,
                "service_code": report.service_code,
                "lat": str(report.lat),
                "long": str(report.lon),
                "description": report.description,
            },
        )
        if r.status_code != 201:
            raise DirectorError(f"the 311 desk refused the report: {r.status_code} {r.text}")
        request_id = str(r.json()[0]["service_request_id"])
        self.say(f"A citizen reports to 311: {report.description} (request {request_id})")
        return request_id

    async def incident_for(self, request_id: str, wait_s: float = INCIDENT_WAIT_S) -> str | None:
        """The id of the incident a 311 request opened (None if none within ``wait_s``)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            r = await self._client.get(
                "/api/v1/incidents",
                params={"status": "reported,dispatched,on_scene"},
                headers=await self._auth(),
            )
            if r.status_code == 200:
                for incident in r.json():
                    requests = incident.get("links", {}).get("serviceRequests", [])
                    if any(ref.endswith(request_id) for ref in requests):
                        return str(incident["id"])
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(POLL_S)

    async def close_roads(self, incident_id: str, report: CitizenReport, now: float) -> str:
        """Close the roads within ``report.close_m`` of the incident for its duration."""
        r = await self._client.post(
            f"/api/v1/incidents/{incident_id}/closures",
            json={
                "location": {"type": "Point", "coordinates": [report.lon, report.lat]},
                "radius": report.close_m,
                "endsAt": format_instant(now + report.duration_s / self.speed),
                "reason": "fire: responders on the spot close the street",
            },
            headers=await self._auth(),
        )
        if r.status_code != 201:
            raise DirectorError(f"the closure was refused: {r.status_code} {r.text}")
        closure = r.json()
        self.say(
            f"Responders close {len(closure.get('edges', []))} street segments around "
            f"{incident_id} — open the incident board to dispatch the nearest unit"
        )
        return str(closure["id"])

    async def play(self, report: CitizenReport, now: float) -> None:
        """One citizen report and what follows it."""
        request_id = await self.report(report)
        if report.close_m <= 0:
            return
        incident = await self.incident_for(request_id)
        if incident is None:
            raise DirectorError(f"311 request {request_id} opened no incident")
        await self.close_roads(incident, report, now)

    async def run(
        self, reports: list[CitizenReport], clock: Callable[[], float], stop: asyncio.Event
    ) -> None:
        """Play each report the simulator appends to ``reports`` until ``stop`` is set."""
        while not stop.is_set():
            while reports:
                report = reports.pop(0)
                try:
                    await self.play(report, clock())
                except (DirectorError, httpx.HTTPError) as exc:
                    self.say(f"Scenario: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)

    async def _auth(self) -> dict[str, Any]:
        """The responders' bearer header (signed in as the operator, again on expiry)."""
        now = asyncio.get_running_loop().time()
        if self._token is None or now > self._token[1]:
            r = await self._client.post(
                "/api/v1/auth/token",
                data={"username": self.operator[0], "password": self.operator[1]},
            )
            if r.status_code != 200:
                raise DirectorError(f"cannot sign in as {self.operator[0]}: {r.status_code}")
            answer = r.json()
            self._token = (answer["access_token"], now + 0.8 * float(answer["expires_in"]))
        return {"Authorization": f"Bearer {self._token[0]}"}
