"""Scripted scenarios: TOML files of events injected at given simulated times.

A scenario replays the same crisis in every demo and test::

    name = "Flood and fire"
    start = "2026-11-20T06:00:00+01:00"   # optional: where a replay should start

    [[event]]
    at = "08:15"              # local time (first occurrence at or after the start),
    kind = "heavyRain"        # "+01:30" (after the start) or an ISO 8601 instant
    duration = "3h"
    intensity = 25.0          # mm/h

    [[event]]
    at = "09:40"              # "-02:30" is before the start (the storm began at dawn)
    kind = "roadAccident"
    near = "centre"           # "centre", "river", an entity id, or position = [lon, lat]
    offset_m = [600, 250]     # metres east, north of that point
    radius = 350
    severity = 0.8
    duration = "1h30m"

Kinds: ``heavyRain`` (raises the river and the storm basins), ``roadAccident``
(slows vehicles, lengthens queues, cameras nearby see it), ``fireReport`` (a
crowd gathers: nearby cameras report it; smoke reaches air stations; in the demo a
citizen reports it to the 311 desk — ``report311 = false`` to keep quiet — and, with
``close_m``, the responders close the roads within that radius once the incident opens) and
``deviceFault`` (``entity`` gets ``status`` for ``duration``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shapely.geometry import Point
from shapely.ops import nearest_points

from citypilot.twin.city import City
from citypilot.twin.environment import TIMEZONE
from citypilot.twin.geo import to_metric

KINDS = frozenset({"heavyRain", "roadAccident", "fireReport", "deviceFault"})
EXAMPLES = Path(__file__).parent / "scenarios"
_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$"
)


class ScenarioError(ValueError):
    """A scenario file that cannot be read or applied (the message names the event)."""


@dataclass(frozen=True)
class ScenarioEvent:
    """One event as written in the file: when, what, and its parameters."""

    at: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedEvent:
    """An event placed in simulated time and space."""

    t: float
    kind: str
    x: float | None
    y: float | None
    params: dict[str, Any]


@dataclass(frozen=True)
class CitizenReport:
    """A report a citizen makes to the 311 desk when an event happens: what, where, and
    (``close_m`` > 0) the radius the responders then close the roads for ``duration_s``."""

    t: float
    service_code: str
    lon: float
    lat: float
    description: str
    close_m: float
    duration_s: float


@dataclass(frozen=True)
class Scenario:
    """A named list of events, with an optional suggested start instant."""

    name: str
    events: tuple[ScenarioEvent, ...]
    description: str = ""
    start: datetime | None = None

    def resolve(self, city: City, start: float) -> list[ResolvedEvent]:
        """Place every event in time (relative to ``start``) and space (in ``city``)."""
        out = []
        for k, ev in enumerate(self.events):
            where = f"event[{k}] ({ev.kind})"
            t = event_time(ev.at, start, where)
            x = y = None
            if ev.kind in ("roadAccident", "fireReport"):
                x, y = _position(city, ev.params, where)
            out.append(ResolvedEvent(t, ev.kind, x, y, dict(ev.params)))
        out.sort(key=lambda e: e.t)
        return out


def scenario_path(name: str | Path) -> Path:
    """A scenario file: a path, or the name of one shipped in ``scenarios/`` ("flood")."""
    p = Path(name)
    if p.suffix != ".toml" and p.parent == Path(".") and (EXAMPLES / f"{p}.toml").is_file():
        return EXAMPLES / f"{p}.toml"
    return p


def shipped_scenarios() -> list[str]:
    """The names of the scenarios shipped with CityPilot."""
    return sorted(p.stem for p in EXAMPLES.glob("*.toml"))


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario TOML file (a path, or a shipped scenario's name)."""
    p = scenario_path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{p}: {exc}") from None
    return parse_scenario(doc, str(p))


def parse_scenario(doc: dict[str, Any], source: str = "scenario") -> Scenario:
    """Check a scenario document (the parsed TOML) and return the Scenario."""
    raw_events = doc.get("event", [])
    if not isinstance(raw_events, list) or not raw_events:
        raise ScenarioError(f"{source}: needs at least one [[event]]")
    events = []
    for k, raw in enumerate(raw_events):
        where = f"{source}: event[{k}]"
        if not isinstance(raw, dict):
            raise ScenarioError(f"{where} must be a table")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise ScenarioError(f"{where}.kind must be one of {sorted(KINDS)}, not {kind!r}")
        at = raw.get("at")
        if not isinstance(at, str):
            raise ScenarioError(
                f"{where}.at must be a string like '08:15', '+01:30' or an ISO instant"
            )
        params = {key: val for key, val in raw.items() if key not in ("at", "kind")}
        if "duration" in params:
            params["duration_s"] = parse_duration(params["duration"], f"{where}.duration")
        close = params.get("close_m", 0)
        if isinstance(close, bool) or not isinstance(close, int | float) or close < 0:
            raise ScenarioError(f"{where}.close_m must be a radius in metres (0: no closure)")
        if kind == "deviceFault" and not isinstance(params.get("entity"), str):
            raise ScenarioError(f"{where}.entity must be an entity id")
        events.append(ScenarioEvent(at, kind, params))
    start = doc.get("start")
    if isinstance(start, str):
        start = datetime.fromisoformat(start)
    if start is not None and (not isinstance(start, datetime) or start.tzinfo is None):
        raise ScenarioError(f"{source}: start must be an ISO 8601 instant with a time zone")
    return Scenario(
        str(doc.get("name", source)), tuple(events), str(doc.get("description", "")), start
    )


def parse_duration(value: Any, where: str) -> float:
    """'3h', '1h30m', '45m', '90s' or a number of seconds → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise ScenarioError(
            f"{where} must be a duration like '3h', '1h30m' or '45m', not {value!r}"
        )
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s


def event_time(at: str, start: float, where: str) -> float:
    """Epoch seconds of an event's ``at`` relative to the simulation start."""
    text = at.strip()
    if text[:1] in ("+", "-"):
        sign = 1 if text[0] == "+" else -1
        parts = text[1:].split(":")
        try:
            hours, minutes = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
            seconds = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise ScenarioError(f"{where}: bad offset {at!r} (use '+HH:MM' or '-HH:MM')") from None
        return start + sign * (hours * 3600 + minutes * 60 + seconds)
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
        parts = [int(p) for p in text.split(":")]
        local = datetime.fromtimestamp(start, TIMEZONE)
        moment = local.replace(
            hour=parts[0], minute=parts[1], second=parts[2] if len(parts) > 2 else 0, microsecond=0
        )
        if moment.timestamp() < start:
            moment = moment + timedelta(days=1)
        return moment.timestamp()
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ScenarioError(
            f"{where}: 'at' {at!r} is not HH:MM, +HH:MM, -HH:MM or an ISO instant"
        ) from None
    if instant.tzinfo is None:
        raise ScenarioError(f"{where}: 'at' {at!r} needs a time zone")
    return instant.timestamp()


def _position(city: City, params: dict[str, Any], where: str) -> tuple[float, float]:
    """Metric position from ``position``, ``near`` (+ ``offset_m``) or ``address``."""
    if "position" in params:
        lon, lat = params["position"]
        x, y = to_metric(float(lon), float(lat))
        x, y = float(x), float(y)
    elif "address" in params:
        x, y = _by_address(city, str(params["address"]), where)
    else:
        near = params.get("near", "centre")
        if near == "centre":
            x, y = 0.0, 0.0
        elif near == "river":
            p = nearest_points(city.land.river, Point(0, 0))[0]
            x, y = p.x, p.y
        else:
            try:
                doc = city.entity(str(near))
            except KeyError:
                raise ScenarioError(f"{where}: no entity {near!r} in this city") from None
            x, y = _doc_xy(doc)
    dx, dy = params.get("offset_m", (0.0, 0.0))
    return x + float(dx), y + float(dy)


def _by_address(city: City, text: str, where: str) -> tuple[float, float]:
    needle = text.lower()
    for doc in city.entities:
        address = doc.get("address", {}).get("value", {})
        name = doc.get("name", {}).get("value", "")
        street = address.get("streetAddress", "") if isinstance(address, dict) else ""
        if (
            needle in (street.lower(), name.lower())
            or needle == f"{street}, {address.get('addressLocality', '')}".lower()
        ):
            return _doc_xy(doc)
    raise ScenarioError(f"{where}: no entity at address {text!r}")


def _doc_xy(doc: dict[str, Any]) -> tuple[float, float]:
    geom = doc["location"]["value"]
    if geom["type"] == "Point":
        lon, lat = geom["coordinates"]
    else:
        ring = geom["coordinates"][0] if geom["type"] == "Polygon" else geom["coordinates"][0][0]
        lon = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
        lat = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
    x, y = to_metric(lon, lat)
    return float(x), float(y)


def example_scenario(name: str = "flood_and_fire") -> Path:
    """Path of a scenario shipped with CityPilot."""
    path = EXAMPLES / f"{name}.toml"
    if not path.exists():
        raise ScenarioError(f"no shipped scenario {name!r}")
    return path


__all__ = [
    "KINDS",
    "ResolvedEvent",
    "Scenario",
    "ScenarioError",
    "ScenarioEvent",
    "event_time",
    "example_scenario",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
]
