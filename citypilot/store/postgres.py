"""The production store: PostgreSQL with PostGIS, through a psycopg 3 async connection pool.

State lives in ``entities`` (one row per entity, with a PostGIS geometry under a
GIST index) and ``attrs`` (one row per entity and attribute). History is a table
range-partitioned by month on ``observed_at`` (epoch seconds), with a default
partition so no row is ever refused; monthly partitions are created on demand,
outside the write transaction. A history row is identified by (entity, attribute,
observedAt), so a resent reading replaces its row instead of duplicating it.

Every batch is one transaction whose round trips do not grow with the batch: its
history rows, and its newest row per (entity, attribute), are copied (binary COPY)
into per-connection staging tables, then applied by one ``INSERT ... SELECT ... ON
CONFLICT DO UPDATE`` each; the state one only where newer, ``RETURNING`` what it
applied. (COPY beats ``unnest`` arrays here: psycopg dumps text arrays element by
element in Python, which took about a third of a 5,000-reading batch.)

``entity_keys`` gives every id ever seen a permanent integer key, never deleted:
history rows carry that key and stay reachable by id after a delete. Because the
key of an id never changes, the in-memory id -> key map is always right; the
in-memory map of entity types and points serving ``lookup`` is only a cache (the
database is the truth: a miss asks it, and writes skip rows that have vanished).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from citypilot.model.entity import Attribute, Entity
from citypilot.model.errors import BadRequestData
from citypilot.model.observation import DEFAULT_DATASET, Reading
from citypilot.security.audit import MIN_RETENTION_DAYS, AuditEntry, AuditQuery
from citypilot.security.devices import (
    UNBOUND,
    Device,
    DeviceBinding,
    binding_from_text,
    binding_to_text,
)
from citypilot.security.scopes import Visibility, entity_scope, grants_to_text
from citypilot.store.base import (
    SESSION_COLUMNS,
    SESSION_REVOKE,
    SESSION_ROTATE,
    Account,
    AttributeWrite,
    DeadLetter,
    EntityQuery,
    EntityRef,
    EntityScope,
    FoundValue,
    GeoQuery,
    HistoryQuery,
    LayerColumns,
    PendingNotification,
    PersonalRule,
    Session,
    TemporalQuery,
    TemporalResult,
    WriteMode,
)
from citypilot.store.census import Census, census_of, census_sql
from citypilot.store.common import (
    AUDIT_COLUMNS,
    ERASABLE,
    SCOPE_COLUMNS,
    account_from_row,
    assemble_entity,
    attribute_readings,
    audit_entry,
    audit_row,
    audit_where,
    dataset_attrs_of,
    history_instances,
    history_point,
    personal_rule_where,
    point_of,
    scope_changes,
    scope_of_entity,
    split_readings,
)
from citypilot.store.query import Dialect, compile_q, uses_pattern
from citypilot.store.scope_query import compile_scope_q
from citypilot.store.temporal import TemporalDialect, temporal_rows, temporal_sql

_TEMPORAL = TemporalDialect(
    placeholder="%s", value_text="coalesce(h.value, h.num::text)", stddev="stddev_samp(h.num)"
)
T = TypeVar("T")
log = logging.getLogger(__name__)

#: Advisory lock keys serialising schema and partition DDL between processes.
_SCHEMA_LOCK = 0x43_50_53_01
_PARTITION_LOCK = 0x43_50_53_02
#: Months outside these years are left to the default partition.
_PARTITION_YEARS = (1970, 2200)
#: Time budget of a query that matches an untrusted regular expression (idPattern, q ~=).
PATTERN_TIMEOUT_MS = 2000
#: Attempts of a write that lost a race (a row deleted under it, a deadlock).
_WRITE_ATTEMPTS = 3

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE TABLE IF NOT EXISTS entity_keys (
    eid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS entities (
    eid bigint PRIMARY KEY REFERENCES entity_keys (eid), type text NOT NULL,
    created_at double precision NOT NULL, modified_at double precision NOT NULL,
    lon double precision, lat double precision, geom geometry(Geometry, 4326));
CREATE INDEX IF NOT EXISTS entities_by_type ON entities (type, eid);
CREATE INDEX IF NOT EXISTS entities_geom ON entities USING gist (geom);
CREATE TABLE IF NOT EXISTS attrs (
    eid bigint NOT NULL REFERENCES entities (eid) ON DELETE CASCADE, name text NOT NULL,
    kind text NOT NULL, value text NOT NULL, num double precision,
    observed_at double precision, unit_code text,
    PRIMARY KEY (eid, name)) WITH (fillfactor = 70);
ALTER TABLE attrs ADD COLUMN IF NOT EXISTS meta text;
CREATE TABLE IF NOT EXISTS history (
    eid bigint NOT NULL, name text NOT NULL, dataset text NOT NULL DEFAULT '',
    observed_at double precision NOT NULL, num double precision, value text,
    PRIMARY KEY (eid, name, observed_at, dataset)) PARTITION BY RANGE (observed_at);
CREATE TABLE IF NOT EXISTS history_default PARTITION OF history DEFAULT;
CREATE TABLE IF NOT EXISTS dataset_attrs (
    eid bigint NOT NULL, name text NOT NULL, PRIMARY KEY (eid, name));
CREATE TABLE IF NOT EXISTS dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at double precision NOT NULL, source text NOT NULL, reason text NOT NULL,
    field text, payload text NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    username text PRIMARY KEY, password_hash text NOT NULL, role text NOT NULL,
    disabled boolean NOT NULL DEFAULT false);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS grants jsonb NOT NULL DEFAULT '[]';
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS token_version integer NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS device_keys (key_hash text PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sessions (
    id text PRIMARY KEY, username text NOT NULL, token_id text NOT NULL,
    created_at double precision NOT NULL, expires_at double precision NOT NULL,
    revoked_at double precision, revoked_reason text);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
ALTER TABLE device_keys ADD COLUMN IF NOT EXISTS binding jsonb NOT NULL DEFAULT '{}';
CREATE TABLE IF NOT EXISTS entity_types (name text PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (id text PRIMARY KEY, doc text NOT NULL);
CREATE TABLE IF NOT EXISTS notification_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, subscription_id text NOT NULL,
    body text NOT NULL, attempts integer NOT NULL DEFAULT 0,
    next_at double precision NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_due ON notification_outbox(next_at, id);
CREATE TABLE IF NOT EXISTS entity_type_versions (
    name text NOT NULL, version integer NOT NULL, record jsonb NOT NULL,
    PRIMARY KEY (name, version));
"""

#: The audit log: rows may be added, never changed; only old ones may be deleted.
_AUDIT = """
CREATE TABLE IF NOT EXISTS audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at double precision NOT NULL,
    actor text NOT NULL, action text NOT NULL, target text, client text,
    outcome text NOT NULL, detail text);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit_log (actor, id);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit_log (target, id);
CREATE INDEX IF NOT EXISTS audit_by_at ON audit_log (at);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.at < extract(epoch FROM now()) - {min_retention_s} THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP;
END $$;
DROP TRIGGER IF EXISTS audit_append_only ON audit_log;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
DROP TRIGGER IF EXISTS audit_no_truncate ON audit_log;
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
""".replace("{min_retention_s}", str(MIN_RETENTION_DAYS * 86400))

#: The scope columns of entities (added after the first release; filled in once).
_SCOPE_COLUMNS = """
ALTER TABLE entities ADD COLUMN municipality text, ADD COLUMN department text;
UPDATE entities e SET
    municipality = coalesce(
        (SELECT a.value::jsonb #>> '{}' FROM attrs a
         WHERE a.eid = e.eid AND a.name = 'refMunicipality'),
        CASE WHEN e.type = 'Municipality'
             THEN (SELECT k.id FROM entity_keys k WHERE k.eid = e.eid) END),
    department = (SELECT a.value::jsonb #>> '{}' FROM attrs a
                  WHERE a.eid = e.eid AND a.name = 'department');
"""
#: Whether a table of the store's schema has a column (table and column as parameters).
HAS_COLUMN = (
    "SELECT 1 FROM information_schema.columns"
    " WHERE table_name = %s AND column_name = %s AND table_schema = current_schema()"
)


def keyed_by_dataset(table: str, key: str) -> str:
    """The statements that give a table made before ``datasetId`` instances had a history
    the ``dataset`` column and ``key`` as its primary key: its rows are each the default
    instance's."""
    return (
        f"ALTER TABLE {table} ADD COLUMN dataset text NOT NULL DEFAULT '';"
        f" ALTER TABLE {table} DROP CONSTRAINT {table}_pkey;"
        f" ALTER TABLE {table} ADD PRIMARY KEY ({key});"
    )


_SCOPE_INDEX = (
    "CREATE INDEX IF NOT EXISTS entities_by_scope ON entities (municipality, department, type)"
)

DIALECT = Dialect(
    placeholder="%s",
    attr_exists="EXISTS (SELECT 1 FROM attrs a WHERE a.eid = e.eid AND a.name = %s AND {})",
    regex="{subject} ~ {pattern}",
    # byte order, as SQLite compares text, whatever the database's collation
    json_text='a.value COLLATE "C"',
    raw_text="(CASE WHEN left(a.value, 1) = '\"' THEN a.value::jsonb #>> '{}' ELSE a.value END)",
    path_exists="({doc})::jsonb #> {path}::text[] IS NOT NULL",
    path_num="(CASE jsonb_typeof(({doc})::jsonb #> {path}::text[])"
    " WHEN 'number' THEN (({doc})::jsonb #>> {path}::text[])::float8"
    " WHEN 'boolean' THEN (({doc})::jsonb #>> {path}::text[])::boolean::int END)",
    path_text="(CASE WHEN jsonb_typeof(({doc})::jsonb #> {path}::text[]) = 'string'"
    ' THEN ({doc})::jsonb #>> {path}::text[] END) COLLATE "C"',
    path_param=lambda path: [str(p) for p in path],
)

#: One of the entity's scopes (its ``scope`` row, an array) matches a regular expression.
SCOPE_MATCH = (
    "EXISTS (SELECT 1 FROM attrs s, jsonb_array_elements_text(s.value::jsonb) j(v)"
    " WHERE s.eid = e.eid AND s.name = 'scope' AND j.v ~ %s)"
)

# each pooled connection stages a batch here (both emptied at commit, and consumed
# by the statements below, so a transaction may stage and write several times)
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staged_history (
    eid bigint, name text, observed_at double precision, dataset text NOT NULL DEFAULT '',
    num double precision, value text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS staged_readings (
    eid bigint, name text, kind text, value text, num double precision,
    observed_at double precision, unit_code text, meta text) ON COMMIT DELETE ROWS;
"""
_COPY_HISTORY = "COPY history (eid, name, observed_at, num, value) FROM STDIN (FORMAT BINARY)"
_COPY_STAGED_HISTORY = (
    "COPY staged_history (eid, name, observed_at, num, value) FROM STDIN (FORMAT BINARY)"
)
_HISTORY_TYPES = ("int8", "text", "float8", "float8", "text")
_COPY_DATASET_HISTORY = (
    "COPY history (eid, name, observed_at, dataset, num, value) FROM STDIN (FORMAT BINARY)"
)
_COPY_STAGED_DATASET_HISTORY = (
    "COPY staged_history (eid, name, observed_at, dataset, num, value) FROM STDIN (FORMAT BINARY)"
)
_DATASET_HISTORY_TYPES = ("int8", "text", "float8", "text", "float8", "text")
# an instance is identified by (entity, attribute, observedAt, dataset): a resent one
# replaces it
_UPSERT_HISTORY = """
WITH h AS (DELETE FROM staged_history RETURNING *)
INSERT INTO history (eid, name, observed_at, dataset, num, value)
SELECT eid, name, observed_at, dataset, num, value FROM h
ON CONFLICT (eid, name, observed_at, dataset)
DO UPDATE SET num = excluded.num, value = excluded.value
"""
_COPY_STAGED_STATE = (
    "COPY staged_readings (eid, name, kind, value, num, observed_at, unit_code, meta)"
    " FROM STDIN (FORMAT BINARY)"
)
_STATE_TYPES = ("int8", "text", "text", "text", "float8", "float8", "text", "text")

_UPSERT_ATTRS = """
WITH u AS (DELETE FROM staged_readings RETURNING *)
INSERT INTO attrs AS a (eid, name, kind, value, num, observed_at, unit_code, meta)
SELECT u.eid, u.name, u.kind, u.value, u.num, u.observed_at, u.unit_code, u.meta
FROM u
WHERE EXISTS (SELECT 1 FROM entities e WHERE e.eid = u.eid)
ON CONFLICT (eid, name) DO UPDATE SET
    kind = excluded.kind, value = excluded.value, num = excluded.num,
    observed_at = excluded.observed_at, unit_code = excluded.unit_code,
    meta = CASE WHEN excluded.meta IS NULL THEN a.meta
        ELSE jsonb_set(excluded.meta::jsonb, '{0}', coalesce(
            a.meta::jsonb -> 0, excluded.meta::jsonb -> 0))::text
        END
WHERE a.observed_at IS NULL OR excluded.observed_at IS NULL
   OR excluded.observed_at >= a.observed_at
RETURNING a.eid, a.name
"""

# a point is built from its coordinates; other shapes from the location just upserted
_MOVE = """
UPDATE entities e
SET geom = CASE WHEN u.is_point THEN ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326)
    ELSE ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(
        (SELECT a.value FROM attrs a WHERE a.eid = e.eid AND a.name = 'location')), 4326)) END,
    lon = u.lon, lat = u.lat
FROM unnest(%s::bigint[], %s::float8[], %s::float8[], %s::bool[]) AS u(eid, lon, lat, is_point)
WHERE e.eid = u.eid
RETURNING e.eid, e.type
"""

_LOAD = """
SELECT e.eid, k.id, e.type, e.created_at, e.modified_at,
       a.name, a.kind, a.value, a.num, a.observed_at, a.unit_code, a.meta
FROM {source} JOIN entity_keys k ON k.eid = e.eid LEFT JOIN attrs a ON a.eid = e.eid{names}
{where} ORDER BY e.eid
"""
#: The attributes loaded restricted to a list (``EntityQuery.attrs``).
_NAMED = " AND a.name = ANY(%s)"

_HISTORY_NAMES = """
WITH RECURSIVE n(name) AS (
    SELECT min(name) FROM history WHERE eid = %(eid)s AND dataset = ''
    UNION ALL
    SELECT (SELECT min(h.name) FROM history h
            WHERE h.eid = %(eid)s AND h.name > n.name AND h.dataset = '')
    FROM n WHERE n.name IS NOT NULL)
SELECT name FROM n WHERE name IS NOT NULL
"""

_ENTITY_KEPT = """
SELECT e.eid, e.type FROM entity_keys k JOIN entities e ON e.eid = k.eid
WHERE k.id = %s FOR KEY SHARE OF e
"""


@asynccontextmanager
async def _pattern_bound(conn: psycopg.AsyncConnection, bounded: bool) -> AsyncIterator[None]:
    """With ``bounded``, run in a transaction whose statements stop after PATTERN_TIMEOUT_MS.

    PostgreSQL's regex engine backtracks on some patterns that RE2 accepts, so a
    query matching an untrusted pattern gets a time budget (the 400 names the field).
    """
    if not bounded:
        yield
        return
    async with conn.transaction():
        await conn.execute(f"SET LOCAL statement_timeout = {PATTERN_TIMEOUT_MS}")
        yield


def _month_start(year: int, month: int) -> float:
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def _month_of(instant: float) -> tuple[int, int]:
    moment = datetime.fromtimestamp(instant, tz=UTC)
    return moment.year, moment.month


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _partition_name(year: int, month: int) -> str:
    return f"history_p{year:04d}{month:02d}"


def _entities_from_rows(rows: Iterable[tuple]) -> list[Entity]:
    """Group joined (entity head, attribute) rows, ordered by eid, into entities."""
    out: list[Entity] = []
    head: tuple | None = None
    attr_rows: list[tuple] = []
    for row in rows:
        if head is None or row[0] != head[0]:
            if head is not None:
                out.append(assemble_entity(*head[1:], attr_rows))
            head, attr_rows = row[:5], []
        if row[5] is not None:
            attr_rows.append(row[5:])
    if head is not None:
        out.append(assemble_entity(*head[1:], attr_rows))
    return out


def _text_safe(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters; keep everything else as it is."""
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


_ACCOUNTS = (
    "SELECT username, password_hash, role, disabled, grants::text, token_version FROM accounts"
)


class _Tx:
    """One write transaction and the cache changes it makes, published once committed."""

    def __init__(self, conn: psycopg.AsyncConnection, store: PostgresStore) -> None:
        self.conn = conn
        self.store = store
        self.eids: dict[str, int] = {}
        self.refs: dict[str, EntityRef | None] = {}  # None: deleted

    def eid(self, entity_id: str) -> int | None:
        """The permanent key of an id, if known."""
        found = self.eids.get(entity_id)
        return found if found is not None else self.store._eids.get(entity_id)

    def ref(self, entity_id: str) -> EntityRef | None:
        """The cached type and point of an entity as this transaction sees it."""
        if entity_id in self.refs:
            return self.refs[entity_id]
        return self.store._refs.get(entity_id)

    def publish(self) -> None:
        """Apply the transaction's cache changes to the store (call once committed)."""
        self.store._eids.update(self.eids)
        for entity_id, ref in self.refs.items():
            if ref is None:
                self.store._refs.pop(entity_id, None)
            else:
                self.store._refs[entity_id] = ref


#: The PostGIS test of each georel that compares shapes: (entity geometry, query geometry).
_GEO_TESTS = {
    "within": "ST_CoveredBy",
    "contains": "ST_Covers",
    "intersects": "ST_Intersects",
    "disjoint": "ST_Disjoint",
    "overlaps": "ST_Overlaps",
    "equals": "ST_Equals",
}


def _geo_conditions(geo: GeoQuery, params: list[Any]) -> list[str]:
    """The WHERE conditions of a geo-query (their parameters appended to ``params``)."""
    conditions: list[str] = []  # a NULL geometry (no location) meets none of them
    if geo.bounds is not None:
        conditions.append("e.geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)")
        params.extend(geo.bounds)
    if geo.georel == "near":
        lon, lat = geo.geometry["coordinates"][:2]
        within = (
            "ST_DWithin(e.geom::geography,"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, false)"
        )
        if geo.max_distance is not None:
            conditions.append(within)
            params.extend((lon, lat, geo.max_distance))
        if geo.min_distance is not None:
            conditions.append(f"NOT {within}")
            params.extend((lon, lat, geo.min_distance))
        return conditions
    conditions.append(
        f"{_GEO_TESTS[geo.georel]}(e.geom, ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)))"
    )
    params.append(orjson.dumps(geo.geometry).decode())
    return conditions


class PostgresStore:
    """State, history, dead letters and accounts in PostgreSQL + PostGIS."""

    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool | None = None
        self._eids: dict[str, int] = {}  # id -> permanent key; never stale
        self._refs: dict[str, EntityRef] = {}  # id -> type and point; a cache
        self._partitions: list[tuple[float, float]] = []  # month ranges known to exist
        self._partition_lock = asyncio.Lock()

    # -- plumbing ----------------------------------------------------------
    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool (the store must be open)."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def _create_database(self) -> None:
        """Create the database named in the DSN if it does not exist yet."""
        params = conninfo_to_dict(self.dsn)
        name = params.get("dbname") or params.get("user") or "postgres"
        admin = make_conninfo(self.dsn, dbname="postgres")
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if await cur.fetchone() is not None:
                return
            # another process may be quicker: then either error says so
            with suppress(pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    async def open(self) -> None:
        """Create the database, schema and current partitions if needed; warm the caches."""
        await self._create_database()
        self._eids.clear()
        self._refs.clear()
        self._partitions.clear()
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
            name="citypilot-store",
        )
        await pool.open(wait=True)
        self._pool = pool
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await conn.execute(SCHEMA)
            cur = await conn.execute(HAS_COLUMN, ("entities", "municipality"))
            if await cur.fetchone() is None:
                await conn.execute(_SCOPE_COLUMNS)
            cur = await conn.execute(HAS_COLUMN, ("history", "dataset"))
            if await cur.fetchone() is None:
                await conn.execute(keyed_by_dataset("history", "eid, name, observed_at, dataset"))
            await conn.execute(_SCOPE_INDEX)
            await conn.execute(_AUDIT)
        await self._load_partitions()
        year, month = _month_of(datetime.now(UTC).timestamp())
        await self._ensure_partitions(
            [_month_start(year, month), _month_start(*_next_month(year, month))]
        )
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT k.id, k.eid, e.type, e.lon, e.lat FROM entity_keys k"
                " LEFT JOIN entities e ON e.eid = k.eid"
            )
            for entity_id, eid, type_name, lon, lat in await cur.fetchall():
                self._eids[entity_id] = eid
                if type_name is not None:
                    self._refs[entity_id] = EntityRef(type_name, lon, lat)

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection) -> None:
        """Prepare a new pooled connection: its staging tables."""
        await conn.execute(_STAGING)

    async def close(self) -> None:
        """Close every connection of the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Tx]:
        """A write transaction; its cache changes are published only once it has committed."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                tx = _Tx(conn, self)
                yield tx
            tx.publish()

    async def _write(self, fn: Callable[[_Tx], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction; retry when it lost a race with another writer."""
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                async with self._tx() as tx:
                    return await fn(tx)
            except (
                pg_errors.ForeignKeyViolation,  # an entity deleted under the batch
                pg_errors.DeadlockDetected,
                pg_errors.SerializationFailure,
            ):
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
                log.info("write lost a race with another writer; retrying", exc_info=True)
        raise AssertionError("unreachable")

    # -- history partitions ------------------------------------------------
    async def _load_partitions(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'history'::regclass"
            )
            names = [r[0] for r in await cur.fetchall()]
        for name in names:
            m = re.fullmatch(r"history_p(\d{4})(\d{2})", name)
            if m:
                year, month = int(m[1]), int(m[2])
                self._partitions.append(
                    (_month_start(year, month), _month_start(*_next_month(year, month)))
                )
        self._partitions.sort()

    def _covered(self, instant: float) -> bool:
        return any(lo <= instant < hi for lo, hi in self._partitions)

    async def _ensure_partitions(self, instants: Iterable[float]) -> None:
        """Create the monthly history partitions the instants fall in (outside any batch)."""
        instants = list(instants)
        if not instants:
            return
        lo, hi = min(instants), max(instants)
        if any(a <= lo and hi < b for a, b in self._partitions):
            return  # the common case: the whole batch falls in one known month
        first, last = _PARTITION_YEARS
        months = {
            _month_of(t)
            for t in instants
            if not self._covered(t) and _month_start(first, 1) <= t < _month_start(last, 1)
        }
        if not months:
            return
        async with self._partition_lock, self.pool.connection() as conn:
            for year, month in sorted(months):
                start, end = _month_start(year, month), _month_start(*_next_month(year, month))
                if self._covered(start):
                    continue
                name = _partition_name(year, month)
                try:
                    async with conn.transaction():
                        await conn.execute("SET LOCAL lock_timeout = '10s'")
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
                        await conn.execute(
                            sql.SQL(
                                "CREATE TABLE IF NOT EXISTS {} PARTITION OF history"
                                " FOR VALUES FROM ({}) TO ({})"
                            ).format(sql.Identifier(name), sql.Literal(start), sql.Literal(end))
                        )
                except psycopg.Error as exc:
                    # e.g. the default partition already holds rows of that month:
                    # they (and later ones) stay there; nothing is refused
                    log.warning("history partition %s not created: %s", name, exc)
                self._partitions.append((start, end))
            self._partitions.sort()

    # -- state ---------------------------------------------------------------
    async def lookup(self, ids: Collection[str]) -> dict[str, EntityRef]:
        """Type and point of the existing entities among ``ids``; cache misses ask the database."""
        refs = self._refs
        out: dict[str, EntityRef] = {}
        missing = []
        for entity_id in ids:
            found = refs.get(entity_id)
            if found is None:
                missing.append(entity_id)
            else:
                out[entity_id] = found
        if missing:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT k.id, k.eid, e.type, e.lon, e.lat FROM entity_keys k"
                    " JOIN entities e ON e.eid = k.eid WHERE k.id = ANY(%s)",
                    (missing,),
                )
                for entity_id, eid, type_name, lon, lat in await cur.fetchall():
                    ref = EntityRef(type_name, lon, lat)
                    self._eids[entity_id] = eid
                    refs[entity_id] = out[entity_id] = ref
        return out

    async def get_entity(self, entity_id: str) -> Entity | None:
        """One entity with all its attributes, or None."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _LOAD.format(source="entities e", names="", where="WHERE k.id = %s"), (entity_id,)
            )
            entities = _entities_from_rows(await cur.fetchall())
        return entities[0] if entities else None

    async def query_entities(self, query: EntityQuery) -> tuple[list[Entity], int | None]:
        """The page of entities matching the query, in creation order, and the total if asked."""
        where: list[str] = []
        params: list[Any] = []
        join_keys = query.ids is not None or query.id_pattern is not None
        if query.types is not None:
            where.append("e.type = ANY(%s)")
            params.append(list(query.types))
        if query.ids is not None:
            where.append("k.id = ANY(%s)")
            params.append(list(query.ids))
        if query.id_pattern is not None:
            where.append("k.id ~ %s")
            params.append(query.id_pattern)
        if query.q is not None:
            where.append(compile_q(query.q, DIALECT, params))
        if query.scope_q is not None:
            where.append(compile_scope_q(query.scope_q, SCOPE_MATCH, params))
        if query.scope is not None and not query.scope.everything:
            condition, scope_params = query.scope.sql("%s")
            where.append(condition)
            params.extend(scope_params)
        geo = query.geo
        if geo is not None:
            where.extend(_geo_conditions(geo, params))
        source = "entities e" + (" JOIN entity_keys k ON k.eid = e.eid" if join_keys else "")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        page = (
            f"(SELECT e.eid FROM {source}{clause} ORDER BY e.eid LIMIT %s OFFSET %s) p"
            " JOIN entities e ON e.eid = p.eid"
        )
        field = "idPattern" if query.id_pattern is not None else "q"
        bounded = query.id_pattern is not None or (query.q is not None and uses_pattern(query.q))
        try:
            async with self.pool.connection() as conn, _pattern_bound(conn, bounded):
                total = None
                if query.count:
                    cur = await conn.execute(f"SELECT count(*) FROM {source}{clause}", params)
                    total = (await cur.fetchone())[0]
                names, projected = (
                    ("", []) if query.attrs is None else (_NAMED, [list(query.attrs)])
                )
                cur = await conn.execute(
                    _LOAD.format(source=page, names=names, where=""),
                    [*params, query.limit, query.offset, *projected],
                )
                return _entities_from_rows(await cur.fetchall()), total
        except pg_errors.InvalidRegularExpression as exc:
            raise BadRequestData(f"{field}: PostgreSQL refuses the pattern: {exc}", field) from None
        except pg_errors.QueryCanceled:
            raise BadRequestData(
                f"{field}: matching the pattern took over {PATTERN_TIMEOUT_MS} ms; "
                "use a simpler pattern or narrow the query (type, bbox)",
                field,
            ) from None

    async def scan_columns(
        self, type_name: str, names: Sequence[str], scope: Visibility | None = None
    ) -> LayerColumns:
        """Every entity of one type, column by column, values as stored JSON text."""
        out = LayerColumns(values={n: [] for n in names})
        position: dict[int, int] = {}
        condition, scope_params = ("TRUE", []) if scope is None else scope.sql("%s")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT e.eid, k.id, e.lon, e.lat, e.modified_at FROM entities e"
                f" JOIN entity_keys k ON k.eid = e.eid WHERE e.type = %s AND {condition}"
                " ORDER BY e.eid",
                (type_name, *scope_params),
            )
            for eid, entity_id, lon, lat, modified in await cur.fetchall():
                position[eid] = len(out.ids)
                out.ids.append(entity_id)
                out.lon.append(lon)
                out.lat.append(lat)
                out.modified_at.append(modified)
            for column in out.values.values():
                column.extend([None] * len(out.ids))
            if names and out.ids:
                cur = await conn.execute(
                    "SELECT a.eid, a.name, a.value, a.observed_at FROM entities e"
                    " JOIN attrs a ON a.eid = e.eid WHERE e.type = %s AND a.name = ANY(%s)"
                    f" AND {condition}",
                    (type_name, list(names), *scope_params),
                )
                out.place(await cur.fetchall(), position)
        return out

    async def entity_scopes(self, ids: Collection[str] | None = None) -> dict[str, EntityScope]:
        """Type, municipality and department of the existing entities among ``ids``."""
        sql_text = (
            "SELECT k.id, e.type, e.municipality, e.department FROM entities e"
            " JOIN entity_keys k ON k.eid = e.eid"
        )
        async with self.pool.connection() as conn:
            if ids is None:
                cur = await conn.execute(sql_text)
            else:
                cur = await conn.execute(f"{sql_text} WHERE k.id = ANY(%s)", (list(ids),))
            return {r[0]: (r[1], r[2], r[3]) for r in await cur.fetchall()}

    # -- writes ----------------------------------------------------------------
    async def _resolve(self, tx: _Tx, ids: Iterable[str], create: bool = False) -> dict[str, int]:
        """The permanent key of each id (created first if ``create``; else unknown ids left out)."""
        out: dict[str, int] = {}
        missing = []
        for entity_id in ids:
            eid = tx.eid(entity_id)
            if eid is None:
                missing.append(entity_id)
            else:
                out[entity_id] = eid
        if missing:
            if create:
                await tx.conn.execute(
                    "INSERT INTO entity_keys (id) SELECT unnest(%s::text[])"
                    " ON CONFLICT (id) DO NOTHING",
                    (missing,),
                )
            cur = await tx.conn.execute(
                "SELECT id, eid FROM entity_keys WHERE id = ANY(%s)", (missing,)
            )
            for entity_id, eid in await cur.fetchall():
                out[entity_id] = tx.eids[entity_id] = eid
        return out

    async def _existing(self, tx: _Tx, ids: Iterable[str]) -> dict[str, int]:
        """The key of each id whose entity exists; cache misses ask the database."""
        out: dict[str, int] = {}
        missing = []
        for entity_id in ids:
            eid = tx.eid(entity_id)
            if eid is not None and tx.ref(entity_id) is not None:
                out[entity_id] = eid
            elif entity_id not in tx.refs:  # not deleted by this very transaction
                missing.append(entity_id)
        if missing:
            cur = await tx.conn.execute(
                "SELECT k.id, k.eid, e.type, e.lon, e.lat FROM entity_keys k"
                " JOIN entities e ON e.eid = k.eid WHERE k.id = ANY(%s)",
                (missing,),
            )
            for entity_id, eid, type_name, lon, lat in await cur.fetchall():
                out[entity_id] = tx.eids[entity_id] = eid
                tx.refs[entity_id] = EntityRef(type_name, lon, lat)
        return out

    @staticmethod
    async def _copy_rows(
        tx: _Tx,
        statement: str,
        types: Sequence[str],
        keys: Iterable[tuple],
        values: dict[tuple, tuple],
    ) -> None:
        """Binary COPY of the rows ``key + values[key]``, in the order of ``keys``."""
        async with tx.conn.cursor().copy(statement) as copy:
            copy.set_types(types)
            for key in keys:
                await copy.write_row((*key, *values[key]))

    async def _write_readings(
        self, tx: _Tx, readings: Sequence[Reading], now: float
    ) -> list[Reading]:
        """History append plus newest-wins state upsert; returns readings that became state.

        History is written with binary COPY for the entities known to exist (an entity
        deleted a moment ago by another process may still get these last rows); state
        is only written where the entity row is there.
        """
        if not readings:
            return []
        eids = await self._existing(tx, {r.entity_id for r in readings})
        if not eids:
            return []
        history_rows, dataset_rows, latest = split_readings(readings, eids, now)
        # one history row per (entity, attribute[, dataset], instant), the last one given
        # winning (PostgreSQL will not update a row twice in one statement)
        if dataset_rows:  # entity API writes of datasetId instances only
            history = {(e, n, t, DEFAULT_DATASET): (num, v) for e, n, t, num, v in history_rows}
            history.update((row[:4], row[4:]) for row in dataset_rows)
            copy, staged = _COPY_DATASET_HISTORY, _COPY_STAGED_DATASET_HISTORY
            types = _DATASET_HISTORY_TYPES
            marked = sorted(dataset_attrs_of(dataset_rows))
            await tx.conn.execute(
                "INSERT INTO dataset_attrs (eid, name) SELECT * FROM unnest(%s::bigint[],"
                " %s::text[]) ON CONFLICT DO NOTHING",
                ([e for e, _ in marked], [n for _, n in marked]),
            )
        else:
            history = {row[:3]: row[3:] for row in history_rows}
            copy, staged, types = _COPY_HISTORY, _COPY_STAGED_HISTORY, _HISTORY_TYPES
        keys = sorted(history)  # key order, so that concurrent batches lock alike
        try:
            # the common case, nothing resent: straight into history (in a savepoint)
            async with tx.conn.transaction():
                await self._copy_rows(tx, copy, types, keys, history)
        except pg_errors.UniqueViolation:
            await self._copy_rows(tx, staged, types, keys, history)
            await tx.conn.execute(_UPSERT_HISTORY)
        # one row per key (PostgreSQL will not update a row twice in one statement),
        # sent in key order so that concurrent batches lock rows in the same order
        newest = [(eid, r) for (eid, _), r in latest.items()]
        state = {
            (eid, r.name): (r.kind, r.value, r.num, r.observed_at, r.unit_code, r.meta)
            for eid, r in newest
        }
        await self._copy_rows(tx, _COPY_STAGED_STATE, _STATE_TYPES, sorted(state), state)
        cur = await tx.conn.execute(_UPSERT_ATTRS)
        changed = set(await cur.fetchall())
        applied = [(eid, r) for eid, r in newest if (eid, r.name) in changed]
        for column, entity_id, value in scope_changes(r for _, r in applied):
            await tx.conn.execute(
                sql.SQL("UPDATE entities SET {} = %s WHERE eid = %s").format(
                    sql.Identifier(column)
                ),
                (value, eids[entity_id]),
            )
        moved = [(eid, r) for eid, r in applied if r.name == "location"]
        if moved:
            shapes = [orjson.loads(r.value) for _, r in moved]
            is_point = [g["type"] == "Point" for g in shapes]
            points = [
                (g["coordinates"][0], g["coordinates"][1]) if point else point_of(g)
                for g, point in zip(shapes, is_point, strict=True)
            ]
            cur = await tx.conn.execute(
                _MOVE,
                (
                    [eid for eid, _ in moved],
                    [p[0] for p in points],
                    [p[1] for p in points],
                    is_point,
                ),
            )
            types = dict(await cur.fetchall())
            for (eid, r), (lon, lat) in zip(moved, points, strict=True):
                if eid in types:
                    tx.refs[r.entity_id] = EntityRef(types[eid], lon, lat)
        return [r for _, r in applied]

    @staticmethod
    def _instants(readings: Iterable[Reading], now: float) -> list[float]:
        return [now if r.observed_at is None else r.observed_at for r in readings]

    async def create_entities(self, entities: Sequence[Entity], now: float) -> list[str]:
        """Insert new entities; return the ids refused because they exist already."""
        first: dict[str, Entity] = {}
        for entity in entities:
            first.setdefault(entity.id, entity)
        readings = [r for e in first.values() for r in attribute_readings(e.id, e.attrs, now)]
        await self._ensure_partitions(self._instants(readings, now))

        async def run(tx: _Tx) -> list[str]:
            if not first:
                return []
            eids = await self._resolve(tx, first, create=True)
            ordered = sorted(first.values(), key=lambda e: eids[e.id])
            scopes = [scope_of_entity(e) for e in ordered]
            cur = await tx.conn.execute(
                "INSERT INTO entities"
                " (eid, type, created_at, modified_at, municipality, department)"
                " SELECT u.eid, u.type, %s, %s, u.m, u.d"
                " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])"
                " AS u(eid, type, m, d) ON CONFLICT (eid) DO NOTHING RETURNING eid",
                (
                    now,
                    now,
                    [eids[e.id] for e in ordered],
                    [e.type for e in ordered],
                    [m for m, _ in scopes],
                    [d for _, d in scopes],
                ),
            )
            created = {row[0] for row in await cur.fetchall()}
            refused, seen = [], set()
            for entity in entities:
                if entity.id in seen or eids[entity.id] not in created:
                    refused.append(entity.id)
                seen.add(entity.id)
            new = [e for e in first.values() if eids[e.id] in created]
            for entity in new:
                tx.refs[entity.id] = EntityRef(entity.type, None, None)
            await self._write_readings(
                tx, [r for r in readings if eids[r.entity_id] in created], now
            )
            return refused

        return await self._write(run)

    async def upsert_entities(self, entities: Sequence[Entity], now: float, replace: bool) -> None:
        """Create each entity, or replace it whole (``replace``) or merge its attributes in."""
        readings = [r for e in entities for r in attribute_readings(e.id, e.attrs, now)]
        await self._ensure_partitions(self._instants(readings, now))
        # an id given twice is written twice, in order: one round per repetition
        rounds: list[dict[str, Entity]] = []
        for entity in entities:
            target = next((r for r in rounds if entity.id not in r), None)
            if target is None:
                target = {}
                rounds.append(target)
            target[entity.id] = entity
        replace_sql = (
            ", type = excluded.type, geom = NULL, lon = NULL, lat = NULL,"
            " municipality = excluded.municipality, department = excluded.department"
        )

        async def run(tx: _Tx) -> None:
            for batch in rounds:
                eids = await self._resolve(tx, batch, create=True)
                ordered = sorted(batch.values(), key=lambda e: eids[e.id])
                keys = [eids[e.id] for e in ordered]
                if replace:
                    await tx.conn.execute("DELETE FROM attrs WHERE eid = ANY(%s)", (keys,))
                scopes = [scope_of_entity(e) for e in ordered]
                cur = await tx.conn.execute(
                    "INSERT INTO entities AS e"
                    " (eid, type, created_at, modified_at, municipality, department)"
                    " SELECT u.eid, u.type, %s, %s, u.m, u.d"
                    " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])"
                    " AS u(eid, type, m, d) ON CONFLICT (eid) DO UPDATE"
                    f" SET modified_at = excluded.modified_at{replace_sql if replace else ''}"
                    " RETURNING e.eid, e.type, e.lon, e.lat",
                    (
                        now,
                        now,
                        keys,
                        [e.type for e in ordered],
                        [m for m, _ in scopes],
                        [d for _, d in scopes],
                    ),
                )
                heads = {row[0]: row[1:] for row in await cur.fetchall()}
                for entity in ordered:
                    tx.refs[entity.id] = EntityRef(*heads[eids[entity.id]])
                await self._write_readings(
                    tx,
                    [r for e in ordered for r in attribute_readings(e.id, e.attrs, now)],
                    now,
                )

        await self._write(run)

    async def write_attributes(
        self, entity_id: str, attrs: dict[str, Attribute], now: float, mode: WriteMode
    ) -> AttributeWrite | None:
        """Write attributes into one entity per ``mode`` (append, noOverwrite, update)."""
        await self._ensure_partitions(
            self._instants(attribute_readings(entity_id, attrs, now), now)
        )

        async def run(tx: _Tx) -> AttributeWrite | None:
            cur = await tx.conn.execute(_ENTITY_KEPT, (entity_id,))
            found = await cur.fetchone()
            if found is None:
                return None
            eid = found[0]
            cur = await tx.conn.execute("SELECT name FROM attrs WHERE eid = %s", (eid,))
            existing = {r[0] for r in await cur.fetchall()}
            result = AttributeWrite()
            chosen: dict[str, Attribute] = {}
            for name, attr in attrs.items():
                if mode == "noOverwrite" and name in existing:
                    result.not_updated[name] = "attribute exists and noOverwrite was asked"
                elif mode == "update" and name not in existing:
                    result.not_updated[name] = "attribute does not exist"
                else:
                    chosen[name] = attr
            applied = await self._write_readings(
                tx, attribute_readings(entity_id, chosen, now), now
            )
            applied_names = {r.name for r in applied}
            for name in chosen:
                if name in applied_names:
                    result.updated.append(name)
                else:
                    result.not_updated[name] = "a newer observation is already in state"
            await tx.conn.execute("UPDATE entities SET modified_at = %s WHERE eid = %s", (now, eid))
            return result

        return await self._write(run)

    async def delete_attribute(self, entity_id: str, name: str, now: float) -> bool | None:
        """Remove one attribute from state (its history stays)."""

        async def run(tx: _Tx) -> bool | None:
            cur = await tx.conn.execute(_ENTITY_KEPT, (entity_id,))
            found = await cur.fetchone()
            if found is None:
                return None
            eid, type_name = found
            cur = await tx.conn.execute(
                "DELETE FROM attrs WHERE eid = %s AND name = %s", (eid, name)
            )
            gone = cur.rowcount > 0
            if gone and name == "location":
                await tx.conn.execute(
                    "UPDATE entities SET geom = NULL, lon = NULL, lat = NULL WHERE eid = %s",
                    (eid,),
                )
                tx.refs[entity_id] = EntityRef(type_name, None, None)
            column = SCOPE_COLUMNS.get(name)
            if gone and column is not None:
                fallback = dict(
                    zip(
                        ("municipality", "department"),
                        entity_scope(entity_id, type_name, {}),
                        strict=True,
                    )
                )
                await tx.conn.execute(
                    sql.SQL("UPDATE entities SET {} = %s WHERE eid = %s").format(
                        sql.Identifier(column)
                    ),
                    (fallback[column], eid),
                )
            await tx.conn.execute("UPDATE entities SET modified_at = %s WHERE eid = %s", (now, eid))
            return gone

        return await self._write(run)

    async def delete_history(
        self,
        entity_id: str,
        name: str | None = None,
        observed_at: float | None = None,
        dataset: str | None = None,
    ) -> int:
        """Remove history instances: all of an entity, of one attribute, or one instant
        (of one dataset, or of every one)."""
        where, args = history_instances(entity_id, name, observed_at, dataset, "%s")

        async def run(tx: _Tx) -> int:
            cur = await tx.conn.execute(f"DELETE FROM history WHERE {where}", args)
            return cur.rowcount

        return await self._write(run)

    async def delete_entities(self, ids: Sequence[str]) -> list[str]:
        """Delete entities from state; their history stays, reachable by id."""

        async def run(tx: _Tx) -> list[str]:
            cur = await tx.conn.execute(
                "DELETE FROM entities e USING entity_keys k"
                " WHERE k.eid = e.eid AND k.id = ANY(%s) RETURNING k.id",
                (list(ids),),
            )
            deleted = {row[0] for row in await cur.fetchall()}
            for entity_id in deleted:
                tx.refs[entity_id] = None
            return [i for i in dict.fromkeys(ids) if i in deleted]

        return await self._write(run)

    async def apply_readings(self, readings: Sequence[Reading], now: float) -> list[Reading]:
        """Append to history; update state where each reading is the newest (all committed)."""
        if not readings:
            return []
        await self._ensure_partitions(self._instants(readings, now))
        return await self._write(lambda tx: self._write_readings(tx, readings, now))

    # -- history -------------------------------------------------------------
    async def history(self, query: HistoryQuery) -> dict[str, list[tuple[float, Any]]]:
        """Per attribute, its (instant, value) series or (bucket start, aggregate) series."""
        async with self.pool.connection() as conn:
            eid = self._eids.get(query.entity_id)
            if eid is None:
                cur = await conn.execute(
                    "SELECT eid FROM entity_keys WHERE id = %s", (query.entity_id,)
                )
                row = await cur.fetchone()
                if row is None:
                    return {}
                eid = row[0]
            if query.attrs:
                names = list(query.attrs)
            else:
                cur = await conn.execute(_HISTORY_NAMES, {"eid": eid})
                names = [r[0] for r in await cur.fetchall()]
            out: dict[str, list[tuple[float, Any]]] = {name: [] for name in names}
            if not names:
                return out
            conds = ["h.eid = %(eid)s", "h.name = n.name", "h.dataset = ''"]
            if query.start is not None:
                conds.append("h.observed_at >= %(start)s")
            if query.end is not None:
                conds.append("h.observed_at < %(end)s")
            args = {
                "names": names,
                "eid": eid,
                "start": query.start,
                "end": query.end,
                "limit": query.limit,
                "bucket": float(query.bucket_s or 1),
            }
            if query.bucket_s is None:
                inner = (
                    "SELECT h.observed_at AS t, h.num, h.value FROM history h"
                    f" WHERE {' AND '.join(conds)} ORDER BY h.observed_at LIMIT %(limit)s"
                )
                cols = "s.t, s.num, s.value"
            else:
                if query.agg == "count":
                    expr = "count(*)"
                else:
                    expr = f"{query.agg}(h.num)"
                    conds.append("h.num IS NOT NULL")
                inner = (
                    f"SELECT floor(h.observed_at / %(bucket)s) * %(bucket)s AS t, {expr} AS v"
                    f" FROM history h WHERE {' AND '.join(conds)}"
                    " GROUP BY 1 ORDER BY 1 LIMIT %(limit)s"
                )
                cols = "s.t, s.v"
            cur = await conn.execute(
                f"SELECT n.name, {cols} FROM unnest(%(names)s::text[]) WITH ORDINALITY"
                f" AS n(name, i) CROSS JOIN LATERAL ({inner}) s ORDER BY n.i, s.t",
                args,
            )
            rows = await cur.fetchall()
        if query.bucket_s is None:
            for name, t, num, value in rows:
                out[name].append((t, history_point(num, value)))
        else:
            for name, t, v in rows:
                out[name].append((float(t), v))
        return out

    async def census(self, scope: Visibility | None = None) -> Census:
        """Entities per type and their attributes, counted in SQL."""
        types, attrs, params = census_sql(scope, "%s")
        async with self.pool.connection() as conn:
            type_rows = await (await conn.execute(types, params)).fetchall()
            attr_rows = await (await conn.execute(attrs, params)).fetchall()
        return census_of(type_rows, attr_rows)

    async def temporal(self, query: TemporalQuery) -> TemporalResult:
        """Instances or aggregation periods per entity and attribute, computed in SQL."""
        statements = temporal_sql(query, _TEMPORAL)
        async with self.pool.connection() as conn, conn.pipeline():  # one round trip
            cursors = [
                await conn.execute(*statement) if statement is not None else None
                for statement in statements
            ]
            default, datasets = [await c.fetchall() if c is not None else [] for c in cursors]
        return temporal_rows(query, default, datasets)

    # -- subscriptions and their outbox -------------------------------------------
    async def put_subscription(self, sub_id: str, doc: dict[str, Any], create: bool) -> bool:
        """Keep a subscription; with ``create``, False if the id is taken."""
        text = orjson.dumps(doc).decode()
        conflict = "DO NOTHING" if create else "DO UPDATE SET doc = excluded.doc"
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO subscriptions VALUES (%s, %s) ON CONFLICT (id) {conflict}",
                (sub_id, text),
            )
            return cur.rowcount == 1

    async def get_subscription(self, sub_id: str) -> dict[str, Any] | None:
        """One subscription, or None."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT doc FROM subscriptions WHERE id = %s", (sub_id,))
            row = await cur.fetchone()
        return orjson.loads(row[0]) if row else None

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription, by id."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT doc FROM subscriptions ORDER BY id")
            return [orjson.loads(r[0]) for r in await cur.fetchall()]

    async def delete_subscription(self, sub_id: str) -> bool:
        """Forget a subscription and its pending notifications."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM notification_outbox WHERE subscription_id = %s", (sub_id,)
            )
            cur = await conn.execute("DELETE FROM subscriptions WHERE id = %s", (sub_id,))
            return cur.rowcount == 1

    async def add_notifications(
        self, items: Sequence[tuple[str, str]], due_at: float
    ) -> list[PendingNotification]:
        """Put notifications in the outbox, due at ``due_at``; return them with their ids."""
        out = []
        async with self.pool.connection() as conn, conn.transaction():
            for sub, body in items:
                cur = await conn.execute(
                    "INSERT INTO notification_outbox (subscription_id, body, next_at)"
                    " VALUES (%s, %s, %s) RETURNING id",
                    (sub, body, due_at),
                )
                row = await cur.fetchone()
                out.append(PendingNotification(row[0] if row else 0, sub, body, 0))
        return out

    async def due_notifications(
        self, now: float, limit: int, lease_until: float
    ) -> list[PendingNotification]:
        """Claim the oldest notifications due by ``now`` until ``lease_until`` (rows
        another process is claiming are skipped, not waited for)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE notification_outbox o SET next_at = %s FROM (SELECT id FROM"
                " notification_outbox WHERE next_at <= %s ORDER BY next_at, id LIMIT %s"
                " FOR UPDATE SKIP LOCKED) due WHERE o.id = due.id"
                " RETURNING o.id, o.subscription_id, o.body, o.attempts",
                (lease_until, now, limit),
            )
            return sorted(PendingNotification(*r) for r in await cur.fetchall())

    async def settle_notifications(
        self,
        delivered: Sequence[int],
        retry: Sequence[tuple[int, float]],
        subscriptions: Sequence[dict[str, Any]],
    ) -> None:
        """Drop delivered notifications, put failed ones off, save subscription status."""
        async with self.pool.connection() as conn, conn.transaction():
            if delivered:
                await conn.execute(
                    "DELETE FROM notification_outbox WHERE id = ANY(%s)", (list(delivered),)
                )
            async with conn.cursor() as cur:
                if retry:
                    await cur.executemany(
                        "UPDATE notification_outbox SET attempts = attempts + 1, next_at = %s"
                        " WHERE id = %s",
                        [(at, i) for i, at in retry],
                    )
                if subscriptions:
                    await cur.executemany(
                        "UPDATE subscriptions SET doc = %s WHERE id = %s",
                        [(orjson.dumps(d).decode(), d["id"]) for d in subscriptions],
                    )

    # -- dead letters ----------------------------------------------------------
    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Keep messages that failed validation, with reason and raw payload."""
        if not letters:
            return
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO dead_letters (received_at, source, reason, field, payload)"
                " SELECT * FROM unnest(%s::float8[], %s::text[], %s::text[], %s::text[],"
                " %s::text[])",
                (
                    [d.received_at for d in letters],
                    [_text_safe(d.source) for d in letters],
                    [_text_safe(d.reason) for d in letters],
                    [_text_safe(d.field) for d in letters],
                    [_text_safe(d.payload) for d in letters],
                ),
            )

    async def list_dead_letters(self, limit: int, offset: int) -> tuple[list[DeadLetter], int]:
        """Newest dead letters first, and the total number kept."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM dead_letters")
            total = (await cur.fetchone())[0]
            cur = await conn.execute(
                "SELECT received_at, source, reason, field, payload, id FROM dead_letters"
                " ORDER BY id DESC LIMIT %s OFFSET %s",
                (limit, offset),
            )
            return [DeadLetter(*r) for r in await cur.fetchall()], total

    # -- accounts and types ------------------------------------------------------
    async def put_account(self, account: Account) -> None:
        """Create or replace a person's account."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO accounts (username, password_hash, role, disabled, grants,"
                " token_version) VALUES (%s, %s, %s, %s, %s::jsonb, %s)"
                " ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash,"
                " role = excluded.role, disabled = excluded.disabled, grants = excluded.grants,"
                " token_version = excluded.token_version",
                (
                    account.username,
                    account.password_hash,
                    account.role,
                    account.disabled,
                    grants_to_text(account.grants),
                    account.token_version,
                ),
            )

    async def get_account(self, username: str) -> Account | None:
        """A person's account, or None."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_ACCOUNTS + " WHERE username = %s", (username,))
            row = await cur.fetchone()
        return None if row is None else account_from_row(row)

    async def list_accounts(self) -> list[Account]:
        """Every person's account."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_ACCOUNTS)
            return [account_from_row(r) for r in await cur.fetchall()]

    async def put_device_key(
        self, name: str, key_hash: str, binding: DeviceBinding = UNBOUND
    ) -> None:
        """Register a device gateway, or give it a new hashed key (the old one ends)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM device_keys WHERE name = %s", (name,))
            await conn.execute(
                "INSERT INTO device_keys (key_hash, name, binding) VALUES (%s, %s, %s::jsonb)",
                (key_hash, name, binding_to_text(binding)),
            )

    async def get_device(self, key_hash: str) -> Device | None:
        """The device gateway holding this hashed key, or None."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT name, binding::text FROM device_keys WHERE key_hash = %s", (key_hash,)
            )
            row = await cur.fetchone()
        return None if row is None else Device(row[0], binding_from_text(row[1]))

    async def list_devices(self) -> list[Device]:
        """Every device gateway (without keys)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT name, binding::text FROM device_keys")
            return [Device(name, binding_from_text(b)) for name, b in await cur.fetchall()]

    async def put_session(self, session: Session) -> None:
        """Keep a new session; sessions that expired before ``session.created_at`` go."""
        s = session
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM sessions WHERE expires_at < %s", (s.created_at,))
            await conn.execute(
                "INSERT INTO sessions (id, username, token_id, created_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (s.id, s.username, s.token_id, s.created_at, s.expires_at),
            )

    async def get_session(self, session_id: str) -> Session | None:
        """One session, or None."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = %s", (session_id,)
            )
            row = await cur.fetchone()
        return None if row is None else Session(*row)

    async def rotate_session(self, session_id: str, old_token: str, new_token: str) -> bool:
        """Move an unrevoked session from ``old_token`` to ``new_token`` (compare and set)."""
        return await self._one_row(SESSION_ROTATE, (new_token, session_id, old_token))

    async def revoke_session(self, session_id: str, reason: str, at: float) -> bool:
        """Revoke a session not revoked yet; whether this call revoked it."""
        return await self._one_row(SESSION_REVOKE, (at, reason, session_id))

    async def _one_row(self, statement: str, params: tuple[Any, ...]) -> bool:
        """Run a session statement; whether it changed exactly one row."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(statement.format(m="%s"), params)
            return cur.rowcount == 1

    async def delete_device(self, name: str) -> bool:
        """Remove a device gateway and its key; whether it existed."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM device_keys WHERE name = %s", (name,))
            return cur.rowcount > 0

    # -- personal data -----------------------------------------------------------
    async def purge_personal(self, rules: Sequence[PersonalRule]) -> int:
        """Remove personal identifiers older than each rule's cutoff (history and state)."""
        changed = 0
        async with self.pool.connection() as conn, conn.transaction():
            for rule in rules:
                where, args = personal_rule_where(rule, "%s")
                for table in ("history", "attrs"):
                    if not rule.members:
                        cur = await conn.execute(f"DELETE FROM {table} WHERE {where}", args)
                    else:
                        members = list(rule.members)
                        cur = await conn.execute(
                            f"UPDATE {table} SET value = (value::jsonb - %s::text[])::text"
                            " WHERE value IS NOT NULL AND left(value, 1) = '{'"
                            f" AND jsonb_exists_any(value::jsonb, %s::text[]) AND {where}",
                            (members, members, *args),
                        )
                    changed += cur.rowcount
        return changed

    async def find_values(self, needles: Sequence[str]) -> list[FoundValue]:
        """Every state and history value whose text contains one of the needles."""
        if not needles:
            return []
        holds = "EXISTS (SELECT 1 FROM unnest(%(n)s::text[]) AS n WHERE strpos({}, n) > 0)"
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 'state', k.id, x.name, NULL::float8, x.value FROM attrs x"
                f" JOIN entity_keys k ON k.eid = x.eid WHERE {holds.format('x.value')} UNION ALL"
                " SELECT 'history', k.id, x.name, x.observed_at, x.value FROM history x"
                " JOIN entity_keys k ON k.eid = x.eid WHERE x.value IS NOT NULL"
                f" AND {holds.format('x.value')} ORDER BY 2, 3, 4 NULLS FIRST",
                {"n": list(needles)},
            )
            rows = await cur.fetchall()
            cur = await conn.execute(
                "SELECT 'deadLetter', source, reason, received_at, payload FROM dead_letters"
                f" WHERE {holds.format('payload')} ORDER BY id",
                {"n": list(needles)},
            )
            letters = await cur.fetchall()
        return [FoundValue(w, i, n, t, orjson.loads(v)) for w, i, n, t, v in rows] + [
            FoundValue(*row) for row in letters
        ]

    async def erase_values(self, needles: Sequence[str], replacement: str) -> int:
        """Replace each needle in every state and history value that holds it."""
        changed = 0
        async with self.pool.connection() as conn, conn.transaction():
            for needle in needles:
                for table, column in ERASABLE:
                    cur = await conn.execute(
                        f"UPDATE {table} SET {column} = replace({column}, %s, %s)"
                        f" WHERE {column} IS NOT NULL AND strpos({column}, %s) > 0",
                        (needle, replacement, needle),
                    )
                    changed += cur.rowcount
        return changed

    # -- audit log ---------------------------------------------------------------
    async def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries to the audit log."""
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO audit_log (at, actor, action, target, client, outcome, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    tuple(_text_safe(v) if isinstance(v, str) else v for v in audit_row(e))
                    for e in entries
                ],
            )

    async def query_audit(self, query: AuditQuery) -> tuple[list[AuditEntry], int]:
        """The entries matching the query, newest first, and how many match."""
        where, params = audit_where(query, "%s")
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) FROM audit_log{where}", params)
            total = (await cur.fetchone())[0]
            cur = await conn.execute(
                f"SELECT {AUDIT_COLUMNS} FROM audit_log{where} ORDER BY id DESC LIMIT %s OFFSET %s",
                [*params, query.limit, query.offset],
            )
            return [audit_entry(r) for r in await cur.fetchall()], total

    async def purge_audit(self, before: float) -> int:
        """Delete the entries older than ``before``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM audit_log WHERE at < %s", (before,))
            return cur.rowcount

    async def put_type(self, name: str, doc: dict[str, Any], record: dict[str, Any]) -> None:
        """Keep a type's new declaration and append its version record, in one transaction."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO entity_types (name, doc) VALUES (%s, %s::jsonb)"
                " ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
                (name, orjson.dumps(doc).decode()),
            )
            await conn.execute(
                "INSERT INTO entity_type_versions (name, version, record)"
                " VALUES (%s, %s, %s::jsonb)",
                (name, record["version"], orjson.dumps(record).decode()),
            )

    async def type_versions(self, name: str) -> list[dict[str, Any]]:
        """The version records of a run-time type, oldest first (kept after deletion)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT record::text FROM entity_type_versions WHERE name = %s ORDER BY version",
                (name,),
            )
            return [orjson.loads(r[0]) for r in await cur.fetchall()]

    async def delete_type(self, name: str) -> None:
        """Forget a run-time type's declaration (its version records stay)."""
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM entity_types WHERE name = %s", (name,))

    async def list_types(self) -> list[dict[str, Any]]:
        """Every type registered at run time."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT doc::text FROM entity_types ORDER BY name")
            return [orjson.loads(r[0]) for r in await cur.fetchall()]
