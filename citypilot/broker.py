"""The context broker: every write to the city goes through here.

It checks input against the type registry, hands checked data to the store,
and publishes what changed on the bus. The HTTP API, the MQTT adapter and the
demo loader all call it; none of them touches the store for writes directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from citypilot import metrics
from citypilot.bus.base import EventBus
from citypilot.model.entity import (
    Attribute,
    Entity,
    attribute_from_normalised,
    instances_of,
    merge_sub_attributes,
    parse_attributes,
    parse_entity,
    split_deletions,
    with_instances,
)
from citypilot.model.errors import AlreadyExists, BadRequestData, CityPilotError, ResourceNotFound
from citypilot.model.ids import check_entity_id, type_of_id
from citypilot.model.json_limits import dumps_anything
from citypilot.model.observation import Reading, parse_batch, parse_observation
from citypilot.model.timeutil import MAX_FUTURE_SKEW_S, format_instant
from citypilot.model.types import TypeRegistry, entity_type_from_json
from citypilot.store.base import (
    AttributeWrite,
    DeadLetter,
    EntityQuery,
    EntityRef,
    Store,
    WriteMode,
)
from citypilot.store.common import attribute_readings
from citypilot.type_admin import TypeAdmin, follow_type_changes

CHANGED = "entities.changed"
DELETED = "entities.deleted"

#: Checks one entity of a write (``where`` names it in errors); raises CityPilotError
#: to refuse it (e.g. outside the caller's scopes, see ``api.access``).
Guard = Callable[[Entity, str], None]


@dataclass
class ItemError:
    """Why one item of a batch was refused."""

    index: int
    entity_id: str | None
    error: CityPilotError

    def to_json(self) -> dict[str, Any]:
        """The per-item error as the API reports it."""
        return {"index": self.index, "entityId": self.entity_id, "error": self.error.to_problem()}


@dataclass
class BatchResult:
    """The outcome of a batch: ids that succeeded and per-item errors."""

    success: list[str] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    #: Of the successes, the entities the batch created (an upsert also updates).
    created: list[str] = field(default_factory=list)


@dataclass
class IngestResult:
    """The outcome of an ingest batch: how many observations were accepted, and errors."""

    accepted: int = 0
    readings: int = 0
    errors: list[ItemError] = field(default_factory=list)


def _change_head(entity_id: str, ref: EntityRef | None, observed_at: Any) -> dict[str, Any]:
    """A change event for one entity, with no attribute yet (see ``bus.base``)."""
    return {
        "id": entity_id,
        "type": ref.type if ref else type_of_id(entity_id),
        "attrs": {},
        "observedAt": observed_at,
        "lon": ref.lon if ref else None,
        "lat": ref.lat if ref else None,
    }


def unusable(exc: Exception, where: str) -> BadRequestData:
    """The refusal of an item that failed in an unexpected way (kept as a dead letter)."""
    reason = str(exc)[:200] or type(exc).__name__
    return BadRequestData(f"{where} could not be processed: {reason}", where)


def _item_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


class ObservationSink(Protocol):
    """Where checked observations go instead of the store (the writers' queue)."""

    async def put(self, readings: Sequence[Reading], refs: dict[str, EntityRef]) -> None:
        """Keep the readings durably (raise a CityPilotError when that is not possible)."""


class Broker:
    """Validates, stores and publishes every change to the city's entities.

    With an ``observations`` sink (several processes, see ``workers``), checked
    device observations are handed to it rather than written; a writer worker
    then calls :meth:`apply_observations`.
    """

    def __init__(
        self,
        registry: TypeRegistry,
        store: Store,
        bus: EventBus,
        observations: ObservationSink | None = None,
        strict_types: bool = False,
    ) -> None:
        """``strict_types`` refuses entities of unregistered types (else they are
        open-world NGSI-LD, checked against the data model only)."""
        self.registry = registry
        self.strict_types = strict_types
        self.store = store
        self.bus = bus
        self.observations = observations
        self.types = TypeAdmin(registry, store, bus)

    # -- types -------------------------------------------------------------
    async def load_registered_types(self) -> None:
        """Register the types kept in the store (added at run time earlier), and follow
        from now on those other processes register or delete."""
        follow_type_changes(self.registry, self.bus)
        for doc in await self.store.list_types():
            self.registry.register(entity_type_from_json(doc))

    # -- publishing ----------------------------------------------------------
    async def _publish(self, readings: Sequence[Reading], refs: dict[str, EntityRef]) -> None:
        if not readings:
            return
        now = time.time()
        changes: dict[str, dict[str, Any]] = {}
        for r in readings:
            change = changes.get(r.entity_id)
            if change is None:
                change = changes[r.entity_id] = _change_head(
                    r.entity_id,
                    refs.get(r.entity_id),
                    now if r.observed_at is None else r.observed_at,
                )
            value = r.data if r.data is not None else orjson.loads(r.value)
            change["attrs"][r.name] = value
            if r.observed_at is not None and r.observed_at > change["observedAt"]:
                change["observedAt"] = r.observed_at
            if r.name == "location" and value.get("type") == "Point":
                change["lon"], change["lat"] = value["coordinates"][:2]
        formatted: dict[float, str] = {}
        for change in changes.values():
            instant = change["observedAt"]
            text = formatted.get(instant)
            if text is None:
                text = formatted[instant] = format_instant(instant)
            change["observedAt"] = text
        await self.bus.publish(CHANGED, {"changes": list(changes.values())})

    async def _publish_entities(self, entities: Sequence[Entity], now: float) -> None:
        readings = [r for e in entities for r in attribute_readings(e.id, e.attrs, now)]
        await self._publish(readings, await self.store.lookup([e.id for e in entities]))

    # -- entities ------------------------------------------------------------
    async def create_entity(self, doc: Any, guard: Guard | None = None) -> Entity:
        """Create one entity; AlreadyExists if its id is taken. ``guard`` may refuse it."""
        entity = parse_entity(doc, self.registry, strict_types=self.strict_types)
        if guard is not None:
            guard(entity, "body")
        now = time.time()
        if await self.store.create_entities([entity], now):
            raise AlreadyExists(f"entity {entity.id} exists already", "id")
        await self._publish_entities([entity], now)
        return entity

    def _parse_batch(
        self, docs: Any, result: BatchResult, guard: Guard | None = None
    ) -> list[tuple[int, Entity]]:
        if not isinstance(docs, list):
            raise BadRequestData("body must be a JSON array of entities", "body")
        if not docs:
            raise BadRequestData("a batch holds at least one entity", "body")
        parsed, seen = [], set()
        for i, doc in enumerate(docs):
            try:
                entity = parse_entity(doc, self.registry, f"[{i}]", self.strict_types)
                if entity.id in seen:
                    raise BadRequestData(
                        f"[{i}].id {entity.id} appears twice in the batch", f"[{i}].id"
                    )
                if guard is not None:
                    guard(entity, f"[{i}]")
                seen.add(entity.id)
                parsed.append((i, entity))
            except CityPilotError as exc:
                result.errors.append(ItemError(i, _item_id(doc), exc))
        return parsed

    async def batch_create(self, docs: Any, guard: Guard | None = None) -> BatchResult:
        """Create many entities; each succeeds or fails on its own (``guard`` may refuse)."""
        result = BatchResult()
        parsed = self._parse_batch(docs, result, guard)
        now = time.time()
        refused = set(await self.store.create_entities([e for _, e in parsed], now))
        created = []
        for i, entity in parsed:
            if entity.id in refused:
                err = AlreadyExists(f"entity {entity.id} exists already", f"[{i}].id")
                result.errors.append(ItemError(i, entity.id, err))
            else:
                created.append(entity)
                result.success.append(entity.id)
        result.created = list(result.success)
        await self._publish_entities(created, now)
        return result

    async def batch_upsert(
        self, docs: Any, replace: bool = True, guard: Guard | None = None
    ) -> BatchResult:
        """Create or replace (or, with ``replace=False``, merge into) many entities."""
        result = BatchResult()
        parsed = self._parse_batch(docs, result, guard)
        now = time.time()
        entities = [e for _, e in parsed]
        existing = await self.store.lookup([e.id for e in entities])
        await self.store.upsert_entities(entities, now, replace)
        result.success.extend(e.id for e in entities)
        result.created.extend(e.id for e in entities if e.id not in existing)
        await self._publish_entities(entities, now)
        return result

    async def batch_update(
        self, docs: Any, no_overwrite: bool = False, guard: Guard | None = None
    ) -> BatchResult:
        """Write attributes into many existing entities."""
        result = BatchResult()
        parsed = self._parse_batch(docs, result, guard)
        mode: WriteMode = "noOverwrite" if no_overwrite else "append"
        for i, entity in parsed:
            try:
                outcome = await self.write_instances(entity.id, entity.attrs, mode)
            except CityPilotError as exc:
                result.errors.append(ItemError(i, entity.id, exc))
                continue
            if outcome.not_updated:  # noOverwrite kept these: the item did not do it all
                name, reason = next(iter(outcome.not_updated.items()))
                kept = ", ".join(sorted(outcome.not_updated))
                err = AlreadyExists(f"not overwritten: {kept} ({reason})", f"[{i}].{name}")
                result.errors.append(ItemError(i, entity.id, err))
            else:
                result.success.append(entity.id)
        return result

    async def batch_delete(
        self, ids: Any, guard: Callable[[str, str], None] | None = None
    ) -> BatchResult:
        """Delete many entities by id (``guard(id, where)`` may refuse one)."""
        result = BatchResult()
        if not isinstance(ids, list):
            raise BadRequestData("body must be a JSON array of entity ids", "body")
        if not ids:
            raise BadRequestData("a batch holds at least one entity id", "body")
        valid: dict[int, str] = {}
        for i, entity_id in enumerate(ids):
            try:
                checked = check_entity_id(entity_id, f"[{i}]")
                if guard is not None:
                    guard(checked, f"[{i}]")
                valid[i] = checked
            except CityPilotError as exc:
                result.errors.append(ItemError(i, None, exc))
        refs = await self.store.lookup(valid.values())
        deleted = set(await self.store.delete_entities(list(dict.fromkeys(valid.values()))))
        for i, entity_id in valid.items():
            if entity_id in deleted:
                result.success.append(entity_id)
            else:
                err = ResourceNotFound(f"entity {entity_id} does not exist", f"[{i}]")
                result.errors.append(ItemError(i, entity_id, err))
        result.errors.sort(key=lambda e: e.index)
        if deleted:
            await self._publish_deleted(sorted(deleted), refs)
        return result

    async def get_entity(self, entity_id: str) -> Entity:
        """One entity; ResourceNotFound if there is none."""
        check_entity_id(entity_id)
        entity = await self.store.get_entity(entity_id)
        if entity is None:
            raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
        return entity

    async def parse_fragment(self, entity_id: str, fragment: Any) -> dict[str, Attribute]:
        """Check an attribute fragment against the type of an existing entity."""
        check_entity_id(entity_id)
        refs = await self.store.lookup([entity_id])
        if entity_id not in refs:
            raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
        if not isinstance(fragment, dict):
            raise BadRequestData("body must be a JSON object of attributes", "body")
        type_name = refs[entity_id].type
        entity_type = self.registry.get(type_name) if type_name in self.registry else None
        attrs = parse_attributes(entity_type, self.registry, fragment)
        if not attrs:
            raise BadRequestData("body names no attribute", "body")
        return attrs

    async def write_attrs(
        self, entity_id: str, attrs: dict[str, Attribute], mode: WriteMode
    ) -> AttributeWrite:
        """Write checked attributes into an entity and publish what changed."""
        now = time.time()
        outcome = await self.store.write_attributes(entity_id, attrs, now, mode)
        if outcome is None:
            raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
        written = {n: attrs[n] for n in outcome.updated}
        await self._publish(
            attribute_readings(entity_id, written, now), await self.store.lookup([entity_id])
        )
        return outcome

    async def merge_attrs(self, entity_id: str, attrs: dict[str, Attribute]) -> AttributeWrite:
        """Merge checked attributes into an entity (clause 5.6.17): each replaces the
        attribute of its name or is added, keeping the sub-attributes it does not give."""
        current = await self.get_entity(entity_id)
        for name, attr in attrs.items():
            old = current.attrs.get(name)
            if old is not None:
                merge_sub_attributes(old, attr)
                attrs[name] = with_instances(old, attr)
        return await self.write_attrs(entity_id, attrs, "append")

    async def write_instances(
        self,
        entity_id: str,
        attrs: dict[str, Attribute],
        mode: WriteMode,
        keep_sub: bool = False,
    ) -> AttributeWrite:
        """``write_attrs`` for NGSI-LD clients: an attribute instance given replaces the
        stored instance of its ``datasetId`` only (clauses 5.6.2, 5.6.3), the others stay;
        ``keep_sub`` (a partial update, clause 5.6.4): keeping the sub-attributes of a
        single-instance attribute that it does not give."""
        current = await self.get_entity(entity_id)
        for name, attr in attrs.items():
            old = current.attrs.get(name)
            if old is not None:
                if keep_sub:
                    merge_sub_attributes(old, attr)
                attrs[name] = with_instances(old, attr)
        return await self.write_attrs(entity_id, attrs, mode)

    async def replace_entity(self, entity_id: str, doc: Any, guard: Guard | None = None) -> None:
        """Replace every attribute of an existing entity (clause 5.6.18); the body's
        ``id`` and ``type``, when given, must be the entity's."""
        refs = await self.store.lookup([entity_id])
        if entity_id not in refs:
            raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
        if not isinstance(doc, dict):
            raise BadRequestData("body must be a JSON object (the entity)", "body")
        for key, own in (("id", entity_id), ("type", refs[entity_id].type)):
            if doc.get(key, own) != own:
                raise BadRequestData(f"{key} must be the entity's own, {own!r}", key)
        entity = parse_entity(
            {**doc, "id": entity_id, "type": refs[entity_id].type},
            self.registry,
            strict_types=self.strict_types,
        )
        if guard is not None:
            guard(entity, "body")
        before = await self.get_entity(entity_id)
        now = time.time()
        await self.store.upsert_entities([entity], now, True)
        await self._publish_entities([entity], now)
        removed = sorted(set(before.attrs) - set(entity.attrs))
        if removed:
            change = _change_head(entity_id, refs[entity_id], format_instant(now))
            change["removed"] = removed
            await self.bus.publish(CHANGED, {"changes": [change]})

    async def batch_merge(self, docs: Any, guard: Guard | None = None) -> BatchResult:
        """Merge each entity of a batch into the stored one of its id (clause 5.6.20);
        an attribute given as ``urn:ngsi-ld:null`` is deleted."""
        result = BatchResult()
        if not isinstance(docs, list):
            raise BadRequestData("body must be a JSON array of entities", "body")
        split = [split_deletions(d) if isinstance(d, dict) else (d, []) for d in docs]
        parsed = self._parse_batch([doc for doc, _ in split], result, guard)
        refs = await self.store.lookup([e.id for _, e in parsed])
        for i, entity in parsed:
            try:
                ref = refs.get(entity.id)
                if ref is None:
                    raise ResourceNotFound(f"entity {entity.id} does not exist", f"[{i}].id")
                if ref.type != entity.type:
                    raise BadRequestData(
                        f"[{i}].type must be the entity's own, {ref.type!r}", f"[{i}].type"
                    )
                if entity.attrs:
                    await self.merge_attrs(entity.id, entity.attrs)
                for name in split[i][1]:
                    await self.delete_attr(entity.id, name, missing_ok=True)
                result.success.append(entity.id)
            except CityPilotError as exc:
                result.errors.append(ItemError(i, entity.id, exc))
        result.errors.sort(key=lambda e: e.index)
        return result

    async def purge(self, query: EntityQuery) -> int:
        """Delete every entity a query matches (its history stays); how many."""
        total = 0
        while True:
            page, _ = await self.store.query_entities(replace(query, limit=1000, offset=0))
            if not page:
                return total
            refs = await self.store.lookup([e.id for e in page])
            deleted = await self.store.delete_entities([e.id for e in page])
            if not deleted:
                return total
            total += len(deleted)
            await self._publish_deleted(deleted, refs)

    async def delete_entity(self, entity_id: str) -> None:
        """Delete one entity; ResourceNotFound if there is none."""
        check_entity_id(entity_id)
        refs = await self.store.lookup([entity_id])
        if not await self.store.delete_entities([entity_id]):
            raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
        await self._publish_deleted([entity_id], refs)

    async def _publish_deleted(self, ids: Sequence[str], refs: dict[str, EntityRef]) -> None:
        """Say which entities went, with their types (an id need not name its type)."""
        types = {i: refs[i].type for i in ids if i in refs}
        await self.bus.publish(DELETED, {"ids": sorted(ids), "types": types})

    async def delete_instance(
        self, entity_id: str, name: str, dataset_id: str | None, delete_all: bool
    ) -> None:
        """Delete one instance of an attribute (clause 5.6.5): the one of ``dataset_id``,
        or the default instance; every instance with ``delete_all``."""
        current = await self.get_entity(entity_id)
        old = current.attrs.get(name)
        if old is None:
            raise ResourceNotFound(f"entity {entity_id} has no attribute {name!r}", name)
        instances = instances_of(old)
        left = [i for i in instances if i.get("datasetId") != dataset_id]
        if delete_all or not left:
            await self.delete_attr(entity_id, name)
        elif len(left) == len(instances):
            what = "default instance" if dataset_id is None else f"instance {dataset_id}"
            raise ResourceNotFound(f"{name} of {entity_id} has no {what}", "datasetId")
        else:
            kept = attribute_from_normalised(left if len(left) > 1 else left[0])
            kept.written = ()  # what stays is in history already
            await self.write_attrs(entity_id, {name: kept}, "update")

    async def delete_attr(self, entity_id: str, name: str, missing_ok: bool = False) -> None:
        """Remove one attribute of an entity, every instance (``missing_ok``: if it has one)."""
        check_entity_id(entity_id)
        found = await self.store.delete_attribute(entity_id, name, time.time())
        if found is None:
            raise ResourceNotFound(f"entity {entity_id} does not exist", "id")
        if not found:
            if missing_ok:
                return
            raise ResourceNotFound(f"entity {entity_id} has no attribute {name!r}", name)
        ref = (await self.store.lookup([entity_id])).get(entity_id)
        change = _change_head(entity_id, ref, format_instant(time.time()))
        change["removed"] = [name]
        await self.bus.publish(CHANGED, {"changes": [change]})

    # -- device observations -------------------------------------------------
    async def ingest(
        self,
        items: Sequence[Any],
        source: str,
        raw_items: Sequence[bytes] | None = None,
        positions: Sequence[int] | None = None,
        sources: Sequence[str] | None = None,
    ) -> IngestResult:
        """Check, store and publish a batch of compact observations.

        Each observation is accepted or refused whole; refused ones are answered
        per item and kept as dead letters with their raw payload. ``positions``
        gives each item's index in the request (default: its index in ``items``);
        ``sources`` names each item's own source for dead letters (default ``source``).
        """
        result = IngestResult()
        latest_allowed = time.time() + MAX_FUTURE_SKEW_S
        pos = positions if positions is not None else range(len(items))
        checked = await self._plainly_valid(items, latest_allowed)
        if checked is not None:
            result.accepted = len(items)
        else:
            checked = await self._item_by_item(items, latest_allowed, result, pos)
        good, refs = checked
        result.readings = len(good)
        if good:
            if self.observations is not None:
                await self.observations.put(good, refs)
            else:
                applied = await self.store.apply_readings(good, time.time())
                await self._publish(applied, refs)
        channel = metrics.channel_of(source)
        metrics.OBSERVATIONS_RECEIVED.labels(channel).inc(len(items))
        metrics.OBSERVATIONS_ACCEPTED.labels(channel).inc(result.accepted)
        metrics.OBSERVATIONS_REFUSED.labels(channel).inc(len(result.errors))
        if result.errors:
            await self.dead_letter(items, result.errors, source, raw_items, sources)
            for err in result.errors:
                err.index = pos[err.index]
        result.errors.sort(key=lambda e: e.index)
        return result

    async def _plainly_valid(
        self, items: Sequence[Any], latest_allowed: float
    ) -> tuple[list[Reading], dict[str, EntityRef]] | None:
        """The readings of a batch whose every observation is valid and of an existing
        entity, checked as a whole (``parse_batch``), and those entities; None if any
        observation is not."""
        try:
            parsed = parse_batch(items, self.registry, latest_allowed)
        except Exception:  # whatever it is, the item-by-item path names it
            return None
        if parsed is None:
            return None
        readings, ids = parsed
        refs = await self.store.lookup(ids)
        return (readings, refs) if len(refs) == len(ids) else None

    async def _item_by_item(
        self,
        items: Sequence[Any],
        latest_allowed: float,
        result: IngestResult,
        pos: Sequence[int],
    ) -> tuple[list[Reading], dict[str, EntityRef]]:
        """Check each observation on its own: the readings of those accepted and their
        entities; the others become ``result.errors``, each naming its field (``pos``
        gives each item's index in the request)."""
        registry = self.registry
        per_item: list[tuple[int, list[Reading]]] = []
        instants: dict[str, float] = {}
        for i, raw in enumerate(items):
            try:
                per_item.append(
                    (i, parse_observation(raw, registry, f"[{pos[i]}]", latest_allowed, instants))
                )
            except CityPilotError as exc:
                result.errors.append(ItemError(i, _item_id(raw), exc))
            except Exception as exc:  # whatever the cause, one item never fails the batch
                result.errors.append(ItemError(i, _item_id(raw), unusable(exc, f"[{pos[i]}]")))
        refs = await self.store.lookup({readings[0].entity_id for _, readings in per_item})
        good: list[Reading] = []
        for i, readings in per_item:
            entity_id = readings[0].entity_id
            if entity_id in refs:
                good.extend(readings)
                result.accepted += 1
            else:
                where = f"[{pos[i]}].id"
                err = ResourceNotFound(f"{where}: entity {entity_id} does not exist", where)
                result.errors.append(ItemError(i, entity_id, err))
        return good, refs

    async def apply_observations(self, readings: Sequence[Reading]) -> int:
        """Write readings taken from the observation stream, publish what became state.

        Resending is harmless: history is keyed by (entity, attribute, observedAt).
        Returns how many readings became current state.
        """
        refs = await self.store.lookup({r.entity_id for r in readings})
        applied = await self.store.apply_readings(readings, time.time())
        await self._publish(applied, refs)
        return len(applied)

    async def dead_letter(
        self,
        items: Sequence[Any],
        errors: Sequence[ItemError],
        source: str,
        raw_items: Sequence[bytes] | None = None,
        sources: Sequence[str] | None = None,
    ) -> None:
        """Keep refused items with their reason, raw payload and source."""
        now = time.time()
        letters = []
        for err in errors:
            if raw_items is not None:
                payload = raw_items[err.index].decode("utf-8", "replace")
            else:
                payload = dumps_anything(items[err.index]).decode()
            where = source if sources is None else sources[err.index]
            letters.append(DeadLetter(now, where, err.error.detail, err.error.field, payload))
        await self.store.add_dead_letters(letters)
        metrics.DEAD_LETTERS.labels(metrics.channel_of(source)).inc(len(letters))
