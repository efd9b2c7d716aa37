"""Checked observations on their way to the writers: JetStream messages, by type and municipality.

Ingest (the API's HTTP ingest and the MQTT ingest workers) puts checked readings
here instead of writing them; the call returns once JetStream stored them, so the
device can be acknowledged. One message holds the readings of one entity type
and municipality of a batch, on ``observations.<Type>.<municipality>``; the writer
workers decode them and write them in batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import orjson

from citypilot.bus.nats import BusUnavailable, NatsBus, subject_token
from citypilot.model.errors import CityPilotError
from citypilot.model.observation import Reading
from citypilot.store.base import EntityRef

if TYPE_CHECKING:
    from citypilot.store.base import Store
    from citypilot.workers.pressure import StreamPressure

OBSERVATIONS = "observations"
#: Municipality token of entities whose municipality is unknown.
NO_MUNICIPALITY = "_"
#: Readings per message at most (NATS refuses messages over 1 MB by default).
MESSAGE_READINGS = 2000


class QueueUnavailable(CityPilotError):
    """The observation stream cannot take more now (NATS down, or writers behind)."""

    status = 503
    problem = "ServiceUnavailable"
    title = "Service unavailable"


def encode(readings: Sequence[Reading]) -> bytes:
    """One message body: the readings as JSON rows (the parsed value is not repeated)."""
    return orjson.dumps([r[:7] for r in readings])


def decode(data: bytes) -> list[Reading]:
    """The readings of one message body."""
    make = tuple.__new__  # a NamedTuple's own __new__ is a Python call; this is not
    return [make(Reading, (*row, None, None, None)) for row in orjson.loads(data)]


class MunicipalityIndex:
    """Which municipality each entity belongs to (its ``refMunicipality``), read per type once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_type: dict[str, dict[str, str]] = {}
        self._lock = asyncio.Lock()

    async def tokens(self, refs: dict[str, EntityRef], ids: Collection[str]) -> dict[str, str]:
        """The municipality subject token of each of ``ids``."""
        out = {}
        for entity_id in ids:
            ref = refs.get(entity_id)
            type_name = ref.type if ref else entity_id.split(":")[2]
            table = self._by_type.get(type_name)
            if table is None:
                table = await self._load(type_name)
            out[entity_id] = table.get(entity_id, NO_MUNICIPALITY)
        return out

    async def _load(self, type_name: str) -> dict[str, str]:
        async with self._lock:
            if type_name in self._by_type:
                return self._by_type[type_name]
            columns = await self.store.scan_columns(type_name, ["refMunicipality"])
            table = {}
            for entity_id, text in zip(columns.ids, columns.values["refMunicipality"], strict=True):
                if text:
                    target = orjson.loads(text)
                    if isinstance(target, dict):
                        target = target.get("object")
                    if isinstance(target, str):
                        table[entity_id] = subject_token(target.rsplit(":", 1)[-1])
            self._by_type[type_name] = table
            return table


class ObservationQueue:
    """Puts checked readings on the observation stream (the ``Broker``'s observation sink)."""

    def __init__(self, bus: NatsBus, store: Store, pressure: StreamPressure | None = None) -> None:
        self.bus = bus
        self.municipalities = MunicipalityIndex(store)
        self.pressure = pressure

    async def put(self, readings: Sequence[Reading], refs: dict[str, EntityRef]) -> None:
        """Store the readings in JetStream (grouped by type and municipality); 503 if it can't."""
        if self.pressure is not None and self.pressure.over_limit():
            raise QueueUnavailable(
                f"the writers are behind ({self.pressure.describe()}); retry shortly",
                retryAfter=1,
            )
        tokens = await self.municipalities.tokens(refs, {r.entity_id for r in readings})
        groups: dict[tuple[str, str], list[Reading]] = {}
        for r in readings:
            ref = refs.get(r.entity_id)
            type_name = ref.type if ref else r.entity_id.split(":")[2]
            groups.setdefault((type_name, tokens[r.entity_id]), []).append(r)
        prefix = f"{self.bus.prefix}.{OBSERVATIONS}"
        try:
            await asyncio.gather(
                *(
                    self.bus.publish_raw(
                        f"{prefix}.{subject_token(t)}.{m}", encode(group[i : i + MESSAGE_READINGS])
                    )
                    for (t, m), group in groups.items()
                    for i in range(0, len(group), MESSAGE_READINGS)
                )
            )
        except BusUnavailable as exc:
            raise QueueUnavailable(
                f"the observation stream did not store the batch: {exc}", retryAfter=1
            ) from exc
