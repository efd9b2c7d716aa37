"""Compact device observations: the hot path of ingest.

One observation is ``{"id", "type", "observedAt", "attrs": {name: value}}``. It is
checked against the type registry and flattened into ``Reading`` rows, one per
attribute, which the store writes into current state and history.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import validate_geometry
from citypilot.model.ids import check_entity_id
from citypilot.model.timeutil import MAX_FUTURE_SKEW_S, parse_instant
from citypilot.model.types import TypeRegistry


class Reading(NamedTuple):
    """One attribute value observed at one instant: a row of state and of history."""

    entity_id: str
    name: str
    kind: str
    value: str  # JSON text
    num: float | None
    observed_at: float | None  # None: written without an observation time (API writes)
    unit_code: str | None


def parse_observation(
    raw: Any, registry: TypeRegistry, where: str, latest_allowed: float
) -> list[Reading]:
    """Check one compact observation and return its readings.

    ``latest_allowed`` is the newest acceptable ``observedAt`` (now plus the skew).
    """
    if type(raw) is not dict:
        raise BadRequestData(f"{where} must be a JSON object", where)
    type_name = raw.get("type")
    entity_type = registry.get(type_name, f"{where}.type")
    entity_id = raw.get("id")
    if type(entity_id) is not str or not entity_id.startswith(f"urn:ngsi-ld:{type_name}:"):
        check_entity_id(entity_id, f"{where}.id", entity_type.name)
    extra = raw.keys() - {"id", "type", "observedAt", "attrs"}
    if extra:
        raise BadRequestData(f"{where}: unknown keys {sorted(extra)}", f"{where}.{min(extra)}")
    observed_at = parse_instant(raw.get("observedAt"), f"{where}.observedAt")
    if observed_at > latest_allowed:
        raise BadRequestData(
            f"{where}.observedAt lies more than {MAX_FUTURE_SKEW_S:.0f} s in the future",
            f"{where}.observedAt",
        )
    attrs = raw.get("attrs")
    if type(attrs) is not dict or not attrs:
        raise BadRequestData(f"{where}.attrs must be a non-empty object", f"{where}.attrs")
    checkers = registry.checkers(type_name)
    specs = entity_type.attributes
    readings = []
    dumps = orjson.dumps
    for name, value in attrs.items():
        checker = checkers.get(name)
        if checker is not None:
            checked, num = checker(value, f"{where}.attrs.{name}")
            readings.append(
                Reading(
                    entity_id,
                    name,
                    "Property",
                    dumps(checked).decode(),
                    num,
                    observed_at,
                    specs[name].unit,
                )
            )
        elif name == "location":
            validate_geometry(value, f"{where}.attrs.location")
            readings.append(
                Reading(
                    entity_id, name, "GeoProperty", dumps(value).decode(), None, observed_at, None
                )
            )
        else:
            where_attr = f"{where}.attrs.{name}"
            spec = specs.get(name)
            reason = (
                "is a Relationship; change it through the entity API"
                if spec is not None
                else f"is not an attribute of {type_name}"
            )
            raise BadRequestData(f"{where_attr} {reason}", where_attr)
    return readings
