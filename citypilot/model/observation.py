"""Compact device observations: the hot path of ingest.

One observation is ``{"id", "type", "observedAt", "attrs": {name: value}}``. It is
checked against the type registry and flattened into ``Reading`` rows, one per
attribute, which the store writes into current state and history.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from itertools import repeat
from typing import Any, NamedTuple

import orjson

from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import validate_geometry
from citypilot.model.ids import check_device_id
from citypilot.model.timeutil import MAX_FUTURE_SKEW_S, parse_instant
from citypilot.model.types import IngestCheck, TypeRegistry, ValueRefused

#: The dataset of an attribute's default instance in history (a ``datasetId`` is a URI).
DEFAULT_DATASET = ""
#: One history row of an attribute instance: (dataset, observedAt or None for the time
#: of the write, numeric value, JSON text).
InstanceRow = tuple[str, float | None, float | None, str]


class Reading(NamedTuple):
    """One attribute value observed at one instant: a row of state and of history."""

    entity_id: str
    name: str
    kind: str
    value: str  # JSON text
    num: float | None
    observed_at: float | None  # None: written without an observation time (API writes)
    unit_code: str | None
    data: Any = None  # the value itself, so publishing need not parse ``value`` again
    #: JSON text of the attribute's ``meta`` (see ``model.entity.Attribute``); None for
    #: a device reading, which leaves the stored one as it is.
    meta: str | None = None
    #: The history rows of a write of instances with a ``datasetId`` (or of some of an
    #: attribute's instances), instead of the reading's own default-instance row; None
    #: for a device reading and any plain attribute.
    instances: tuple[InstanceRow, ...] | None = None


_KEYS = frozenset({"id", "type", "observedAt", "attrs"})
_reading = partial(tuple.__new__, Reading)  # C all the way: no Python call per reading


def parse_observation(
    raw: Any,
    registry: TypeRegistry,
    where: str,
    latest_allowed: float,
    instants: dict[str, float] | None = None,
) -> list[Reading]:
    """Check one compact observation and return its readings.

    ``latest_allowed`` is the newest acceptable ``observedAt`` (now plus the skew).
    ``instants`` memoises parsed timestamps across a batch (devices share them).
    Field paths are only built when something is refused: this is the hot path.
    """
    if type(raw) is not dict:
        raise BadRequestData(f"{where} must be a JSON object", where)
    type_name = raw.get("type")
    entity_type = registry.get(type_name, f"{where}.type")
    entity_id = raw.get("id")
    if type(entity_id) is not str or not entity_id.startswith(f"urn:ngsi-ld:{type_name}:"):
        check_device_id(entity_id, f"{where}.id", entity_type.name)
    if len(raw) > 4 or not _KEYS.issuperset(raw):
        extra = sorted(raw.keys() - _KEYS)
        raise BadRequestData(f"{where}: unknown keys {extra}", f"{where}.{extra[0]}")
    stamp = raw.get("observedAt")
    observed_at = instants.get(stamp) if instants is not None and type(stamp) is str else None
    if observed_at is None:
        observed_at = parse_instant(stamp, f"{where}.observedAt")
        if instants is not None:
            instants[stamp] = observed_at
    if observed_at > latest_allowed:
        raise BadRequestData(
            f"{where}.observedAt lies more than {MAX_FUTURE_SKEW_S:.0f} s in the future",
            f"{where}.observedAt",
        )
    attrs = raw.get("attrs")
    if type(attrs) is not dict or not attrs:
        raise BadRequestData(f"{where}.attrs must be a non-empty object", f"{where}.attrs")
    checkers = registry.ingest_checkers(type_name)
    readings = []
    dumps = orjson.dumps
    make = tuple.__new__  # a NamedTuple's own __new__ is a Python call; this is not
    for name, value in attrs.items():
        found = checkers.get(name)
        if found is not None:
            try:
                checked, num = found[0](value)
            except ValueRefused as exc:
                path = f"{where}.attrs.{name}"
                raise BadRequestData(f"{path} {exc.reason}", path) from None
            readings.append(
                make(
                    Reading,
                    (
                        entity_id,
                        name,
                        "Property",
                        dumps(checked).decode(),
                        num,
                        observed_at,
                        found[1],
                        checked,
                        None,  # meta: a device reading leaves the stored one
                        None,  # instances: its own row is its history
                    ),
                )
            )
        elif name == "location":
            validate_geometry(value, f"{where}.attrs.location")
            readings.append(
                Reading(
                    entity_id,
                    name,
                    "GeoProperty",
                    dumps(value).decode(),
                    None,
                    observed_at,
                    None,
                    value,
                )
            )
        else:
            path = f"{where}.attrs.{name}"
            spec = entity_type.attributes.get(name)
            reason = (
                "is a Relationship; change it through the entity API"
                if spec is not None
                else f"is not an attribute of {type_name}"
            )
            raise BadRequestData(f"{path} {reason}", path)
    return readings


def parse_batch(
    items: Sequence[Any], registry: TypeRegistry, latest_allowed: float
) -> tuple[list[Reading], set[str]] | None:
    """All the readings of a batch in which every observation is plainly valid, and the
    entity ids they name; None as soon as one is not (``parse_observation``, item by
    item, then names what is wrong and where).

    The values are checked column by column, one attribute of one type across the
    whole batch at a time (see ``model.columns``); the readings come out grouped by
    attribute, each attribute's in the order of the batch.
    """
    by_type: dict[str, tuple[str, dict[str, list[tuple[str, float, Any]]]]] = {}
    instants: dict[str, float] = {}
    ids: set[str] = set()
    add_id = ids.add
    for raw in items:
        if type(raw) is not dict or len(raw) != 4:
            return None
        type_name, entity_id = raw.get("type"), raw.get("id")
        stamp, attrs = raw.get("observedAt"), raw.get("attrs")
        known = by_type.get(type_name) if type(type_name) is str else None
        if known is None:
            if type(type_name) is not str or type_name not in registry:
                return None
            known = by_type[type_name] = (f"urn:ngsi-ld:{type_name}:", {})
        prefix, columns = known
        if type(entity_id) is not str or not entity_id.startswith(prefix):
            return None
        observed_at = instants.get(stamp) if type(stamp) is str else None
        if observed_at is None:
            try:
                observed_at = instants[stamp] = parse_instant(stamp, "observedAt")
            except BadRequestData:
                return None
        if type(attrs) is not dict or not attrs:
            return None
        add_id(entity_id)
        for name, value in attrs.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = []
            column.append((entity_id, observed_at, value))
    if not instants or max(instants.values()) > latest_allowed:
        return None
    readings: list[Reading] = []
    for type_name, (_, columns) in by_type.items():
        checks = registry.ingest_checkers(type_name)
        for name, column in columns.items():
            found = checks.get(name)
            if found is None and name != "location":
                return None  # not a Property of the type
            made = _column_readings(name, column, found)
            if made is None:
                return None
            readings.extend(made)
    return readings, ids


def _column_readings(
    name: str, column: list[tuple[str, float, Any]], found: IngestCheck | None
) -> Iterator[Reading] | None:
    """The readings of one attribute's column (None if a value is refused)."""
    entity_ids, stamps, values = zip(*column, strict=True)
    dumps = orjson.dumps
    if found is None:  # location
        try:
            for value in values:
                validate_geometry(value, "location")
        except BadRequestData:
            return None
        kind, unit, nums = "GeoProperty", None, repeat(None)
        texts = [dumps(v).decode() for v in values]
    else:
        checker, unit, column_check = found
        kind, nums = "Property", column_check(values) if column_check is not None else None
        if nums is None:  # each value on its own (it may be normalised)
            try:
                checked_nums = list(map(checker, values))
            except ValueRefused:
                return None
            values = [c for c, _ in checked_nums]
            nums = [n for _, n in checked_nums]
            texts = [dumps(v).decode() for v in values]
        elif nums[0] is not None:  # numbers and booleans: one encoding for the column
            texts = dumps(values)[1:-1].decode().split(",")
        else:
            distinct = {v: dumps(v).decode() for v in set(values)}
            texts = list(map(distinct.__getitem__, values))
    none = repeat(None)  # a device reading leaves the stored meta; its row is its history
    return map(
        _reading,
        zip(
            entity_ids,
            repeat(name),
            repeat(kind),
            texts,
            nums,
            stamps,
            repeat(unit),
            values,
            none,
            none,
        ),
    )
