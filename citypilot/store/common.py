"""Helpers both store backends share: attribute rows, entity assembly, exact geo filters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import shapely
import shapely.ops
from shapely.geometry import shape

from citypilot.model.entity import (
    Attribute,
    Entity,
    dataset_of,
    decode_meta,
    encode_meta,
    has_datasets,
    single_instances,
)
from citypilot.model.geometry import validate_geometry
from citypilot.model.observation import DEFAULT_DATASET, InstanceRow, Reading
from citypilot.security.audit import AuditEntry, AuditQuery
from citypilot.security.scopes import (
    DEPARTMENT_ATTR,
    MUNICIPALITY_ATTR,
    entity_scope,
    grants_from_text,
)
from citypilot.store.base import Account, GeoQuery, PersonalRule

#: The attributes whose values the stores keep as the entity's scope columns.
SCOPE_COLUMNS = {MUNICIPALITY_ATTR: "municipality", DEPARTMENT_ATTR: "department"}

EARTH_RADIUS_M = 6_371_008.8


def attribute_readings(entity_id: str, attrs: dict[str, Attribute], now: float) -> list[Reading]:
    """The readings (state and history rows) of attributes written through the entity API.

    An attribute without ``observedAt`` keeps ``observed_at=None``: state stores it
    without an observation time (any later reading may overwrite it) and history
    stamps it with the time of the write. Its ``meta`` goes with it, stamped ``now``
    (the store keeps the ``createdAt`` of an attribute it has already). An attribute
    with a ``datasetId`` instance, or written in part, names its history rows (see
    ``instance_rows``).
    """
    return [
        Reading(
            entity_id,
            name,
            attr.kind,
            orjson.dumps(attr.value).decode(),
            attr.num,
            attr.observed_at,
            attr.unit_code,
            attr.value,
            encode_meta(attr.stored_meta(), now, now),
            instance_rows(attr),
        )
        for name, attr in attrs.items()
    ]


def instance_rows(attr: Attribute) -> tuple[InstanceRow, ...] | None:
    """The history rows of an attribute written through the entity API, one per instance
    it gives (``written``, else all), each in its dataset; None for a plain attribute
    (its one default instance: the reading's own row)."""
    if attr.written is None and not has_datasets(attr):
        return None
    given = single_instances(attr) if attr.written is None else attr.written
    return tuple(
        (
            dataset_of(one) or DEFAULT_DATASET,
            one.observed_at,
            one.num,
            orjson.dumps(one.value).decode(),
        )
        for one in given
    )


def history_instances(
    entity_id: str,
    name: str | None,
    observed_at: float | None,
    dataset: str | None,
    placeholder: str,
) -> tuple[str, list[Any]]:
    """The WHERE condition on ``history`` for an entity's instances (of one attribute, at
    one instant, of one dataset), and its parameters, in a backend's placeholder style."""
    ph = placeholder
    where = f"eid = (SELECT eid FROM entity_keys WHERE id = {ph})"
    args: list[Any] = [entity_id]
    for column, value in (("name", name), ("dataset", dataset), ("observed_at", observed_at)):
        if value is not None:
            where += f" AND {column} = {ph}"
            args.append(value)
    return where, args


def history_point(num: float | None, value: str | None) -> Any:
    """Turn a stored history row back into the value it recorded."""
    if value is None:
        return int(num) if num is not None and num.is_integer() else num
    return orjson.loads(value)


#: A history row of a default instance: (entity key, attribute, instant, numeric value,
#: JSON text or None).
HistoryRow = tuple[int, str, float, float | None, str | None]
#: A history row of any instance: (entity key, attribute, instant, dataset, numeric
#: value, JSON text or None), in the order of the history key.
DatasetRow = tuple[int, str, float, str, float | None, str | None]


def dataset_attrs_of(rows: Iterable[DatasetRow]) -> set[tuple[int, str]]:
    """The (entity key, attribute) pairs that ``rows`` give instances of a ``datasetId``:
    what the ``dataset_attrs`` table keeps, so that a temporal query looks for such
    instances only where there are some (the others' rows all have the default one)."""
    return {(eid, name) for eid, name, _, dataset, _, _ in rows if dataset != DEFAULT_DATASET}


def _kept(num: float | None, text: str) -> str | None:
    """The JSON text history keeps beside ``num``: none where the number says it all
    (booleans, ``true``/``false``, keep theirs)."""
    return None if num is not None and text[0] not in "tf" else text


def split_readings(
    readings: Sequence[Reading], eids: Mapping[str, int], now: float
) -> tuple[list[HistoryRow], list[DatasetRow], dict[tuple[int, str], Reading]]:
    """One pass over a batch, for every store: its history rows (those of default
    instances, and those a reading names in ``instances``), and the newest reading per
    (entity key, attribute) for state (later ones win ties).

    History keeps the JSON text only where ``num`` does not say it all; a reading with
    no ``observed_at`` is stamped ``now`` in history. Readings of entities missing from
    ``eids`` are left out. This loop runs for every reading ingested.
    """
    history: list[HistoryRow] = []
    datasets: list[DatasetRow] = []
    latest: dict[tuple[int, str], Reading] = {}
    eid_of = eids.get
    for r in readings:
        eid = eid_of(r.entity_id)
        if eid is None:
            continue
        name, t = r.name, r.observed_at
        if r.instances is None:
            history.append((eid, name, now if t is None else t, r.num, _kept(r.num, r.value)))
        else:
            datasets.extend(
                (eid, name, now if at is None else at, dataset, n, _kept(n, text))
                for dataset, at, n, text in r.instances
            )
        key = (eid, name)
        old = latest.get(key)
        if old is None or t is None or (old.observed_at is not None and t >= old.observed_at):
            latest[key] = r
    return history, datasets, latest


def point_of(geometry: dict[str, Any]) -> tuple[float, float]:
    """A representative point: the point itself, or the centre of the bounds."""
    min_lon, min_lat, max_lon, max_lat = validate_geometry(geometry)
    return ((min_lon + max_lon) / 2, (min_lat + max_lat) / 2)


def assemble_entity(
    entity_id: str,
    type_name: str,
    created_at: float,
    modified_at: float,
    attr_rows: Iterable[tuple[str, str, str, float | None, float | None, str | None, str | None]],
) -> Entity:
    """Build an Entity from its row and its (name, kind, value, num, observed_at, unit,
    meta) rows."""
    attrs: dict[str, Attribute] = {}
    newest = modified_at
    for name, kind, value, num, observed_at, unit, meta in attr_rows:
        attrs[name] = Attribute(
            kind,
            orjson.loads(value),
            observed_at,
            unit,
            num,
            meta if meta is None or "{" not in meta else decode_meta(meta),  # see Attribute
        )
        if observed_at is not None and observed_at > newest:
            newest = observed_at
    return Entity(entity_id, type_name, dict(sorted(attrs.items())), created_at, newest)


#: The shapely predicate of each georel that compares shapes: (entity shape, query shape).
#: Each georel that compares shapes, as a shapely predicate taking the query's shape
#: first (so that its prepared form speeds the test): "the location lies within the
#: query shape" is "the query shape covers the location", and so on.
_PREDICATES = {
    "within": shapely.covers,
    "contains": shapely.covered_by,
    "intersects": shapely.intersects,
    "disjoint": shapely.disjoint,
    "overlaps": shapely.overlaps,
    "equals": shapely.equals,
}


def geo_mask(
    geo: GeoQuery,
    xs: np.ndarray,
    ys: np.ndarray,
    is_point: np.ndarray,
    geometry_of: Any,  # callable(index) -> GeoJSON dict, for non-point candidates
) -> np.ndarray:
    """Which candidates (already inside ``geo.bounds``, where there are bounds) truly
    match the geo-query.

    ``xs``/``ys`` are exact point coordinates where ``is_point`` holds; other
    candidates are tested on their full geometry.
    """
    n = len(xs)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if geo.georel == "near":
        return _near_mask(geo, xs, ys, is_point, geometry_of)
    query_shape = shape(geo.geometry)
    shapely.prepare(query_shape)
    predicate = _PREDICATES[geo.georel]
    mask = np.zeros(n, dtype=bool)
    if geo.georel in ("within", "intersects", "disjoint"):
        # points straight from their coordinates (the map's bbox queries: many points);
        # for a point, lying within a shape and intersecting it are the same thing
        inside = shapely.intersects_xy(query_shape, xs[is_point], ys[is_point])
        mask[is_point] = ~inside if geo.georel == "disjoint" else inside
    else:
        mask[is_point] = predicate(query_shape, shapely.points(xs[is_point], ys[is_point]))
    others = np.flatnonzero(~is_point)
    if len(others):
        shapes = [shape(geometry_of(i)) for i in others]
        mask[others] = predicate(query_shape, shapes)
    return mask


def _near_mask(
    geo: GeoQuery, xs: np.ndarray, ys: np.ndarray, is_point: np.ndarray, geometry_of: Any
) -> np.ndarray:
    """Candidates whose nearest point lies between the query's min and max distance."""
    qlon, qlat = geo.geometry["coordinates"][:2]
    metres = np.zeros(len(xs))
    metres[is_point] = _haversine(qlon, qlat, xs[is_point], ys[is_point])
    others = np.flatnonzero(~is_point)
    if len(others):
        centre = shapely.Point(qlon, qlat)
        for i in others:
            nearest = shapely.ops.nearest_points(shape(geometry_of(i)), centre)[0]
            metres[i] = _haversine(qlon, qlat, nearest.x, nearest.y)
    mask = np.ones(len(xs), dtype=bool)
    if geo.max_distance is not None:
        mask &= metres <= geo.max_distance
    if geo.min_distance is not None:
        mask &= metres >= geo.min_distance
    return mask


def _haversine(lon: float, lat: float, lons: Any, lats: Any) -> Any:
    p1, p2 = np.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(np.asarray(lons) - lon)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))


def scope_of_entity(entity: Entity) -> tuple[str | None, str | None]:
    """The (municipality, department) columns of an entity about to be stored."""
    return entity_scope(entity.id, entity.type, {n: a.value for n, a in entity.attrs.items()})


def scope_changes(applied: Iterable[Reading]) -> list[tuple[str, str, str | None]]:
    """(column, entity id, value) for each applied reading that moves an entity's scope."""
    out = []
    for r in applied:
        column = SCOPE_COLUMNS.get(r.name)
        if column is not None:
            value = r.data if r.data is not None else orjson.loads(r.value)
            out.append((column, r.entity_id, value if isinstance(value, str) else None))
    return out


def audit_where(query: AuditQuery, placeholder: str) -> tuple[str, list[Any]]:
    """The WHERE clause (possibly empty) and parameters of an audit log query."""
    conditions, params = [], []
    if query.action is not None:
        conditions.append(
            f"(action = {placeholder} OR substr(action, 1, {len(query.action) + 1})"
            f" = {placeholder})"
        )
        params.extend((query.action, query.action + "."))
    for condition, value in (
        ("actor =", query.actor),
        ("target =", query.target),
        ("at >=", query.since),
        ("at <", query.until),
        ("id <", query.before_id),
    ):
        if value is not None:
            conditions.append(f"{condition} {placeholder}")
            params.append(value)
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", params


def personal_rule_where(rule: PersonalRule, placeholder: str) -> tuple[str, tuple[Any, ...]]:
    """The condition (on history or attrs rows) and parameters of the values a
    retention rule purges: of its type (or of an id naming the type, for entities
    deleted since) and attribute, observed before its cutoff."""
    ph = placeholder
    where = (
        f"name = {ph} AND observed_at < {ph} AND eid IN (SELECT eid FROM entities"
        f" WHERE type = {ph} UNION SELECT eid FROM entity_keys WHERE id LIKE {ph})"
    )
    return where, (rule.attr, rule.before, rule.type_name, f"urn:ngsi-ld:{rule.type_name}:%")


def audit_row(entry: AuditEntry) -> tuple[Any, ...]:
    """An entry as the columns (at, actor, action, target, client, outcome, detail)."""
    detail = None if entry.detail is None else orjson.dumps(entry.detail).decode()
    return (
        entry.at,
        entry.actor,
        entry.action,
        entry.target,
        entry.client,
        entry.outcome,
        detail,
    )


def audit_entry(row: Sequence[Any]) -> AuditEntry:
    """An entry from its row (id first, then the columns of ``audit_row``)."""
    id_, at, actor, action, target, client, outcome, detail = row
    parsed = None if detail is None else orjson.loads(detail)
    return AuditEntry(at, actor, action, target, client, outcome, parsed, id_)


#: Where a data subject's identifiers may be kept as text: (table, column).
ERASABLE = (
    ("attrs", "value"),
    ("attrs", "meta"),
    ("history", "value"),
    ("dead_letters", "payload"),
)

#: The columns of the audit log a query reads, in ``audit_entry`` order.
AUDIT_COLUMNS = "id, at, actor, action, target, client, outcome, detail"


def account_from_row(row: Sequence[Any]) -> Account:
    """An account from ``(username, password_hash, role, disabled, grants JSON,
    token_version)``."""
    return Account(row[0], row[1], row[2], bool(row[3]), grants_from_text(row[4]), int(row[5]))
