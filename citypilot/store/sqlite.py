"""The embedded store: one SQLite file in WAL mode.

One connection writes, on its own thread, each batch in one ``BEGIN IMMEDIATE``
transaction (the Datasette pattern); reads use other connections on a small
thread pool. Geometry bounds live in an R*Tree. An in-memory index of every
entity's id, row key, type and point serves ingest look-ups without a query.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from citypilot.model.entity import Attribute, Entity
from citypilot.model.geometry import validate_geometry
from citypilot.model.observation import Reading
from citypilot.model.patterns import regexp
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
    HistoryQuery,
    LayerColumns,
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
    geo_mask,
    history_instances,
    history_point,
    personal_rule_where,
    point_of,
    scope_changes,
    scope_of_entity,
    split_readings,
)
from citypilot.store.files import keep_private, private_file
from citypilot.store.query import Dialect, compile_q
from citypilot.store.scope_query import compile_scope_q
from citypilot.store.sqlite_notify import NotifyFile, in_transaction
from citypilot.store.temporal import TemporalDialect, temporal_rows, temporal_sql

_TEMPORAL = TemporalDialect(
    placeholder="?",
    value_text="coalesce(h.value, h.num)",
    stddev="CASE WHEN count(h.num) > 1 THEN sqrt(max(0.0, (sum(h.num * h.num)"
    " - sum(h.num) * sum(h.num) / count(h.num)) / (count(h.num) - 1))) END",
)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS entity_keys (
    eid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS entities (
    eid INTEGER PRIMARY KEY, type TEXT NOT NULL,
    created_at REAL NOT NULL, modified_at REAL NOT NULL,
    lon REAL, lat REAL, is_point INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS entities_by_type ON entities(type, eid);
CREATE VIRTUAL TABLE IF NOT EXISTS entity_bounds USING rtree(
    eid, min_lon, max_lon, min_lat, max_lat);
CREATE TABLE IF NOT EXISTS attrs (
    eid INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    num REAL, observed_at REAL, unit_code TEXT,
    PRIMARY KEY (eid, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    eid INTEGER NOT NULL, name TEXT NOT NULL, dataset TEXT NOT NULL DEFAULT '',
    observed_at REAL NOT NULL, num REAL, value TEXT,
    PRIMARY KEY (eid, name, observed_at, dataset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dataset_attrs (
    eid INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (eid, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL NOT NULL, source TEXT NOT NULL,
    reason TEXT NOT NULL, field TEXT, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, grants TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS device_keys (key_hash TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, username TEXT NOT NULL, token_id TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL, revoked_reason TEXT);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS entity_types (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entity_type_versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (name, version)) WITHOUT ROWID;
"""

#: The audit log, in a file of its own (``audit.db``): its writes never queue behind
#: the city's, and it can be kept and backed up apart. Append-only: triggers refuse
#: any change, and any deletion of an entry younger than the minimum retention.
AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT, client TEXT, outcome TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit_log(actor, id);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit_log(target, id);
CREATE INDEX IF NOT EXISTS audit_by_at ON audit_log(at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log
WHEN OLD.at > CAST(strftime('%s', 'now') AS REAL) - {min_retention_s}
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
""".replace("{min_retention_s}", str(MIN_RETENTION_DAYS * 86400))

#: Columns added after a table was first released: (table, column, definition).
_LATER_COLUMNS = (
    ("accounts", "grants", "TEXT NOT NULL DEFAULT '[]'"),
    ("device_keys", "binding", "TEXT NOT NULL DEFAULT '{}'"),
    ("accounts", "token_version", "INTEGER NOT NULL DEFAULT 0"),
    ("entities", "municipality", "TEXT"),
    ("entities", "department", "TEXT"),
    ("attrs", "meta", "TEXT"),
)

#: Fills the scope columns of entities stored before they existed.
_BACKFILL_SCOPE = """
UPDATE entities SET
    municipality = coalesce(
        (SELECT json_extract(a.value, '$') FROM attrs a
         WHERE a.eid = entities.eid AND a.name = 'refMunicipality'),
        CASE WHEN type = 'Municipality'
             THEN (SELECT k.id FROM entity_keys k WHERE k.eid = entities.eid) END),
    department = (SELECT json_extract(a.value, '$') FROM attrs a
                  WHERE a.eid = entities.eid AND a.name = 'department')
"""
_SCOPE_INDEX = (
    "CREATE INDEX IF NOT EXISTS entities_by_scope ON entities(municipality, department, type)"
)


#: History keyed by dataset too (``datasetId`` instances): a store made before keeps
#: its rows, each the default instance (a key column cannot be added in place).
_HISTORY_BY_DATASET = (
    """CREATE TABLE history_by_dataset (
    eid INTEGER NOT NULL, name TEXT NOT NULL, dataset TEXT NOT NULL DEFAULT '',
    observed_at REAL NOT NULL, num REAL, value TEXT,
    PRIMARY KEY (eid, name, observed_at, dataset)) WITHOUT ROWID""",
    "INSERT INTO history_by_dataset (eid, name, observed_at, num, value)"
    " SELECT eid, name, observed_at, num, value FROM history ORDER BY eid, name, observed_at",
    "DROP TABLE history",
    "ALTER TABLE history_by_dataset RENAME TO history",
)


def _key_history_by_dataset(conn: sqlite3.Connection) -> None:
    for statement in _HISTORY_BY_DATASET:
        conn.execute(statement)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a store made by an earlier version up to today's schema."""
    if "dataset" not in {row[1] for row in conn.execute("PRAGMA table_info(history)")}:
        in_transaction(conn, _key_history_by_dataset)
    added = set()
    for table, column, definition in _LATER_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            added.add(column)
    if "municipality" in added:
        conn.execute(_BACKFILL_SCOPE)
    conn.execute(_SCOPE_INDEX)


DIALECT = Dialect(
    placeholder="?",
    attr_exists="EXISTS (SELECT 1 FROM attrs a WHERE a.eid = e.eid AND a.name = ? AND {})",
    regex="regexp({pattern}, {subject})",
    json_text="a.value",
    raw_text="json_extract(a.value, '$')",
    path_exists="json_type({doc}, {path}) IS NOT NULL",
    path_num="(CASE WHEN json_type({doc}, {path}) IN ('integer', 'real', 'true', 'false')"
    " THEN json_extract({doc}, {path}) END)",
    path_text="(CASE WHEN json_type({doc}, {path}) = 'text' THEN json_extract({doc}, {path}) END)",
    path_param=lambda path: (
        "$" + "".join(f"[{p}]" if isinstance(p, int) else f'."{p}"' for p in path)
    ),
)

#: One of the entity's scopes (its ``scope`` row, an array) matches a regular expression.
SCOPE_MATCH = (
    "EXISTS (SELECT 1 FROM attrs s, json_each(s.value) j"
    " WHERE s.eid = e.eid AND s.name = 'scope' AND regexp(?, j.value))"
)

# a device reading (meta NULL) leaves the attribute's meta; a write keeps its createdAt
_UPSERT_ATTR = """
INSERT INTO attrs (eid, name, kind, value, num, observed_at, unit_code, meta)
SELECT eid, name, kind, value, num, observed_at, unit_code, meta FROM incoming WHERE true
ON CONFLICT (eid, name) DO UPDATE SET
    kind = excluded.kind, value = excluded.value, num = excluded.num,
    observed_at = excluded.observed_at, unit_code = excluded.unit_code,
    meta = CASE WHEN excluded.meta IS NULL THEN attrs.meta
        ELSE json_set(excluded.meta, '$[0]', coalesce(
            json_extract(attrs.meta, '$[0]'), json_extract(excluded.meta, '$[0]')))
        END
WHERE attrs.observed_at IS NULL OR excluded.observed_at IS NULL
   OR excluded.observed_at >= attrs.observed_at
RETURNING eid, name
"""


_ACCOUNTS = "SELECT username, password_hash, role, disabled, grants, token_version FROM accounts"


class SQLiteStore:
    """State, history, dead letters and accounts in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.audit_path = self.path.with_name("audit.db")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._auditor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-audit")
        self._audit_conn: sqlite3.Connection | None = None
        notify = self._notify = NotifyFile(self.path.with_name("notify.db"), self._connect_to)
        self.put_subscription = notify.put_subscription
        self.get_subscription = notify.get_subscription
        self.list_subscriptions = notify.list_subscriptions
        self.delete_subscription = notify.delete_subscription
        self.add_notifications = notify.add_notifications
        self.due_notifications = notify.due_notifications
        self.settle_notifications = notify.settle_notifications
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None
        self._loop_reader: sqlite3.Connection | None = None  # used on the event loop only
        self._undo: list[tuple[str, Any]] | None = None  # index changes of the open write
        # id -> (eid, type, lon, lat); owned by the writer thread, read anywhere
        self._index: dict[str, tuple[int, str, float | None, float | None]] = {}

    # -- plumbing ----------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        return self._connect_to(self.path)

    @staticmethod
    def _connect_to(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.create_function("regexp", 2, regexp, deterministic=True)
        try:
            conn.execute("SELECT floor(1.5)")
        except sqlite3.OperationalError:  # built without math functions
            conn.create_function("floor", 1, math.floor, deterministic=True)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            conn.execute("PRAGMA query_only=1")
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._write_conn
            assert conn is not None, "store is not open"
            return in_transaction(conn, fn)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, lambda: fn(self._reader())
        )

    async def open(self) -> None:
        """Create the file and schema if needed and load the entity index."""
        # credential hashes, who did what, what is notified
        for database in (self.path, self.audit_path, self._notify.path):
            private_file(database)  # 0600 in a 0700 directory
            for suffix in ("-wal", "-shm"):  # SQLite makes new ones with the database's mode
                side = database.with_name(database.name + suffix)
                if side.exists():
                    keep_private(side)

        def setup() -> None:
            conn = self._write_conn = self._connect()
            conn.executescript(SCHEMA)
            _add_missing_columns(conn)
            conn.execute(
                "CREATE TEMP TABLE incoming (eid INTEGER, name TEXT, kind TEXT, value TEXT,"
                " num REAL, observed_at REAL, unit_code TEXT, meta TEXT)"
            )
            rows = conn.execute(
                "SELECT k.id, e.eid, e.type, e.lon, e.lat FROM entities e"
                " JOIN entity_keys k ON k.eid = e.eid"
            )
            for entity_id, eid, type_name, lon, lat in rows:
                self._index[entity_id] = (eid, type_name, lon, lat)

        await asyncio.get_running_loop().run_in_executor(self._writer, setup)

        def setup_audit() -> None:
            conn = self._audit_conn = self._connect_to(self.audit_path)
            conn.executescript(AUDIT_SCHEMA)

        await asyncio.get_running_loop().run_in_executor(self._auditor, setup_audit)
        await self._notify.open()

    async def close(self) -> None:
        """Checkpoint the WAL and close every connection."""

        def shutdown() -> None:
            if self._write_conn is not None:
                self._write_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._write_conn.close()
                self._write_conn = None

        await asyncio.get_running_loop().run_in_executor(self._writer, shutdown)
        if self._loop_reader is not None:
            self._loop_reader.close()
            self._loop_reader = None

        def shutdown_audit() -> None:
            if self._audit_conn is not None:
                self._audit_conn.close()
                self._audit_conn = None

        await asyncio.get_running_loop().run_in_executor(self._auditor, shutdown_audit)
        await self._notify.close()
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self._auditor.shutdown(wait=True)

    # -- state -------------------------------------------------------------
    async def lookup(self, ids: Collection[str]) -> dict[str, EntityRef]:
        """Type and point of the existing entities among ``ids``, from the in-memory index."""
        index = self._index
        out = {}
        for entity_id in ids:
            found = index.get(entity_id)
            if found is not None:
                out[entity_id] = EntityRef(found[1], found[2], found[3])
        return out

    def _load(
        self, conn: sqlite3.Connection, eids: Sequence[int], names: Sequence[str] | None = None
    ) -> list[Entity]:
        """The entities of ``eids`` in that order, with all their attributes or ``names``."""
        if not eids:
            return []
        marks = ",".join("?" * len(eids))
        named = "" if names is None else f" AND name IN ({','.join('?' * len(names))})"
        heads = conn.execute(
            "SELECT e.eid, k.id, e.type, e.created_at, e.modified_at FROM entities e"
            f" JOIN entity_keys k ON k.eid = e.eid WHERE e.eid IN ({marks})",
            eids,
        ).fetchall()
        attrs: dict[int, list[tuple]] = {}
        for row in conn.execute(
            "SELECT eid, name, kind, value, num, observed_at, unit_code, meta FROM attrs"
            f" WHERE eid IN ({marks}){named}",
            [*eids, *(names or ())],
        ):
            attrs.setdefault(row[0], []).append(row[1:])
        by_eid = {
            eid: assemble_entity(entity_id, type_name, created, modified, attrs.get(eid, ()))
            for eid, entity_id, type_name, created, modified in heads
        }
        return [by_eid[eid] for eid in eids if eid in by_eid]

    async def get_entity(self, entity_id: str) -> Entity | None:
        """One entity with all its attributes, or None."""
        found = self._index.get(entity_id)
        if found is None:
            return None
        # a primary-key read takes microseconds: done inline, a thread hop would cost more
        conn = self._loop_reader
        if conn is None:
            conn = self._loop_reader = self._connect()
            conn.execute("PRAGMA query_only=1")
        eid = found[0]
        head = conn.execute(
            "SELECT created_at, modified_at FROM entities WHERE eid = ?", (eid,)
        ).fetchone()
        if head is None:
            return None
        rows = conn.execute(
            "SELECT name, kind, value, num, observed_at, unit_code, meta FROM attrs WHERE eid = ?",
            (eid,),
        ).fetchall()
        return assemble_entity(entity_id, found[1], head[0], head[1], rows)

    async def query_entities(self, query: EntityQuery) -> tuple[list[Entity], int | None]:
        """The page of entities matching the query, in creation order, and the total if asked."""
        return await self._read(lambda conn: self._query(conn, query))

    def _query(
        self, conn: sqlite3.Connection, query: EntityQuery
    ) -> tuple[list[Entity], int | None]:
        where, params = [], []
        joins = ""
        if query.types is not None:
            where.append(f"e.type IN ({','.join('?' * len(query.types))})")
            params.extend(query.types)
        if query.ids is not None:
            eids = [self._index[i][0] for i in query.ids if i in self._index]
            where.append(f"e.eid IN ({','.join('?' * len(eids))})" if eids else "FALSE")
            params.extend(eids)
        if query.id_pattern is not None:
            joins += " JOIN entity_keys k ON k.eid = e.eid"
            where.append("regexp(?, k.id)")
            params.append(query.id_pattern)
        if query.q is not None:
            where.append(compile_q(query.q, DIALECT, params))
        if query.scope_q is not None:
            where.append(compile_scope_q(query.scope_q, SCOPE_MATCH, params))
        if query.scope is not None and not query.scope.everything:
            condition, scope_params = query.scope.sql("?")
            where.append(condition)
            params.extend(scope_params)
        geo = query.geo
        source = "entities e"
        if geo is not None:
            # the R*Tree drives (CROSS JOIN fixes the loop order): a box is selective;
            # without a box, every entity that has a location is a candidate
            source = "entity_bounds b CROSS JOIN entities e ON e.eid = b.eid"
            if geo.bounds is not None:
                x0, y0, x1, y1 = geo.bounds
                where.insert(
                    0, "b.max_lon >= ? AND b.min_lon <= ? AND b.max_lat >= ? AND b.min_lat <= ?"
                )
                params[:0] = (x0, x1, y0, y1)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        if geo is None:
            total = None
            if query.count:
                total = conn.execute(
                    f"SELECT count(*) FROM entities e{joins}{clause}", params
                ).fetchone()[0]
            page = [
                r[0]
                for r in conn.execute(
                    f"SELECT e.eid FROM entities e{joins}{clause} ORDER BY e.eid LIMIT ? OFFSET ?",
                    [*params, query.limit, query.offset],
                )
            ]
            return self._load(conn, page, query.attrs), total
        rows = conn.execute(
            f"SELECT e.eid, e.lon, e.lat, e.is_point FROM {source}{joins}{clause} ORDER BY e.eid",
            params,
        ).fetchall()
        if not rows:
            return [], (0 if query.count else None)
        table = np.array(rows, dtype=float)
        eids_found = table[:, 0].astype(np.int64)

        def geometry_of(i: int) -> dict[str, Any]:
            value = conn.execute(
                "SELECT value FROM attrs WHERE eid = ? AND name = 'location'",
                (int(eids_found[i]),),
            ).fetchone()[0]
            return orjson.loads(value)

        mask = geo_mask(geo, table[:, 1], table[:, 2], table[:, 3] == 1, geometry_of)
        matched = eids_found[mask]
        page = [int(e) for e in matched[query.offset : query.offset + query.limit]]
        return self._load(conn, page, query.attrs), (len(matched) if query.count else None)

    async def scan_columns(
        self, type_name: str, names: Sequence[str], scope: Visibility | None = None
    ) -> LayerColumns:
        """Every entity of one type, column by column, values as stored JSON text."""
        condition, scope_params = ("TRUE", []) if scope is None else scope.sql("?")

        def run(conn: sqlite3.Connection) -> LayerColumns:
            out = LayerColumns(values={n: [] for n in names})
            position: dict[int, int] = {}
            for eid, entity_id, lon, lat, modified in conn.execute(
                "SELECT e.eid, k.id, e.lon, e.lat, e.modified_at FROM entities e"
                f" JOIN entity_keys k ON k.eid = e.eid WHERE e.type = ? AND {condition}"
                " ORDER BY e.eid",
                (type_name, *scope_params),
            ):
                position[eid] = len(out.ids)
                out.ids.append(entity_id)
                out.lon.append(lon)
                out.lat.append(lat)
                out.modified_at.append(modified)
            for column in out.values.values():
                column.extend([None] * len(out.ids))
            if names and out.ids:
                marks = ",".join("?" * len(names))
                out.place(
                    conn.execute(
                        "SELECT a.eid, a.name, a.value, a.observed_at FROM entities e"
                        f" JOIN attrs a ON a.eid = e.eid WHERE e.type = ? AND a.name IN ({marks})"
                        f" AND {condition}",
                        (type_name, *names, *scope_params),
                    ),
                    position,
                )
            return out

        return await self._read(run)

    async def entity_scopes(self, ids: Collection[str] | None = None) -> dict[str, EntityScope]:
        """Type, municipality and department of the existing entities among ``ids``."""

        def run(conn: sqlite3.Connection) -> dict[str, EntityScope]:
            sql = (
                "SELECT k.id, e.type, e.municipality, e.department FROM entities e"
                " JOIN entity_keys k ON k.eid = e.eid"
            )
            if ids is None:
                rows = conn.execute(sql)
            else:
                eids = [self._index[i][0] for i in ids if i in self._index]
                rows = (
                    conn.execute(f"{sql} WHERE e.eid IN ({','.join('?' * len(eids))})", eids)
                    if eids
                    else []
                )
            return {r[0]: (r[1], r[2], r[3]) for r in rows}

        return await self._read(run)

    # -- writes ------------------------------------------------------------
    def _eid_for(self, conn: sqlite3.Connection, entity_id: str) -> int:
        conn.execute(
            "INSERT INTO entity_keys (id) VALUES (?) ON CONFLICT (id) DO NOTHING", (entity_id,)
        )
        return conn.execute("SELECT eid FROM entity_keys WHERE id = ?", (entity_id,)).fetchone()[0]

    def _write_readings(
        self, conn: sqlite3.Connection, readings: Sequence[Reading], now: float
    ) -> list[Reading]:
        """History append plus newest-wins state upsert; returns readings that became state."""
        index_get = self._index.get
        eids = {}
        for entity_id in {r.entity_id for r in readings}:
            found = index_get(entity_id)
            if found is not None:
                eids[entity_id] = found[0]
        history_rows, dataset_rows, latest = split_readings(readings, eids, now)
        conn.executemany(
            "INSERT OR REPLACE INTO history (eid, name, observed_at, num, value)"
            " VALUES (?, ?, ?, ?, ?)",
            history_rows,
        )
        if dataset_rows:
            conn.executemany(
                "INSERT OR REPLACE INTO history (eid, name, observed_at, dataset, num, value)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                dataset_rows,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO dataset_attrs (eid, name) VALUES (?, ?)",
                dataset_attrs_of(dataset_rows),
            )
        conn.executemany(
            "INSERT INTO incoming VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (eid, name, r.kind, r.value, r.num, r.observed_at, r.unit_code, r.meta)
                for (eid, name), r in latest.items()
            ],
        )
        changed = conn.execute(_UPSERT_ATTR).fetchall()
        conn.execute("DELETE FROM incoming")
        applied = [latest[key] for key in changed]
        for r in applied:
            if r.name == "location":
                self._set_bounds(conn, eids[r.entity_id], r.entity_id, orjson.loads(r.value))
        for column, entity_id, value in scope_changes(applied):
            conn.execute(
                f"UPDATE entities SET {column} = ? WHERE eid = ?", (value, eids[entity_id])
            )
        return applied

    def _set_bounds(
        self, conn: sqlite3.Connection, eid: int, entity_id: str, geometry: dict[str, Any] | None
    ) -> None:
        conn.execute("DELETE FROM entity_bounds WHERE eid = ?", (eid,))
        _, type_name, _, _ = self._index[entity_id]
        if geometry is None:
            conn.execute(
                "UPDATE entities SET lon = NULL, lat = NULL, is_point = 0 WHERE eid = ?", (eid,)
            )
            self._set_index(entity_id, (eid, type_name, None, None))
            return
        x0, y0, x1, y1 = validate_geometry(geometry)
        conn.execute("INSERT INTO entity_bounds VALUES (?, ?, ?, ?, ?)", (eid, x0, x1, y0, y1))
        lon, lat = point_of(geometry)
        conn.execute(
            "UPDATE entities SET lon = ?, lat = ?, is_point = ? WHERE eid = ?",
            (lon, lat, int(geometry["type"] == "Point"), eid),
        )
        self._set_index(entity_id, (eid, type_name, lon, lat))

    def _insert_entity(self, conn: sqlite3.Connection, entity: Entity, now: float) -> None:
        eid = self._eid_for(conn, entity.id)
        conn.execute(
            "INSERT INTO entities (eid, type, created_at, modified_at, municipality, department)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (eid, entity.type, now, now, *scope_of_entity(entity)),
        )
        self._set_index(entity.id, (eid, entity.type, None, None))
        # state is written unconditionally for a new entity: there is nothing newer
        self._write_readings(conn, attribute_readings(entity.id, entity.attrs, now), now)

    async def create_entities(self, entities: Sequence[Entity], now: float) -> list[str]:
        """Insert new entities; return the ids refused because they exist already."""

        def run(conn: sqlite3.Connection) -> list[str]:
            refused = []
            for entity in entities:
                if entity.id in self._index:
                    refused.append(entity.id)
                else:
                    self._insert_entity(conn, entity, now)
            return refused

        return await self._guarded_write(run)

    def _set_index(
        self, entity_id: str, value: tuple[int, str, float | None, float | None] | None
    ) -> tuple[int, str, float | None, float | None] | None:
        """Change the in-memory index (None removes), noting the old value for an undo."""
        old = self._index.pop(entity_id, None) if value is None else self._index.get(entity_id)
        if value is not None:
            self._index[entity_id] = value
        if self._undo is not None:
            self._undo.append((entity_id, old))
        return old

    async def _guarded_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A write whose in-memory index changes are undone if its transaction fails."""

        def run(conn: sqlite3.Connection) -> T:
            self._undo = []
            try:
                return fn(conn)
            except BaseException:
                for entity_id, old in reversed(self._undo):
                    if old is None:
                        self._index.pop(entity_id, None)
                    else:
                        self._index[entity_id] = old
                raise
            finally:
                self._undo = None

        return await self._write(run)

    async def upsert_entities(self, entities: Sequence[Entity], now: float, replace: bool) -> None:
        """Create each entity, or replace it whole (``replace``) or merge its attributes in."""

        def run(conn: sqlite3.Connection) -> None:
            for entity in entities:
                found = self._index.get(entity.id)
                if found is None:
                    self._insert_entity(conn, entity, now)
                    continue
                eid = found[0]
                if replace:
                    conn.execute("DELETE FROM attrs WHERE eid = ?", (eid,))
                    conn.execute(
                        "UPDATE entities SET type = ?, municipality = ?, department = ?"
                        " WHERE eid = ?",
                        (entity.type, *scope_of_entity(entity), eid),
                    )
                    if "location" not in entity.attrs:
                        self._set_bounds(conn, eid, entity.id, None)
                conn.execute("UPDATE entities SET modified_at = ? WHERE eid = ?", (now, eid))
                self._write_readings(conn, attribute_readings(entity.id, entity.attrs, now), now)

        await self._guarded_write(run)

    async def write_attributes(
        self, entity_id: str, attrs: dict[str, Attribute], now: float, mode: WriteMode
    ) -> AttributeWrite | None:
        """Write attributes into one entity per ``mode`` (append, noOverwrite, update)."""

        def run(conn: sqlite3.Connection) -> AttributeWrite | None:
            found = self._index.get(entity_id)
            if found is None:
                return None
            existing = {
                r[0] for r in conn.execute("SELECT name FROM attrs WHERE eid = ?", (found[0],))
            }
            result = AttributeWrite()
            chosen: dict[str, Attribute] = {}
            for name, attr in attrs.items():
                if mode == "noOverwrite" and name in existing:
                    result.not_updated[name] = "attribute exists and noOverwrite was asked"
                elif mode == "update" and name not in existing:
                    result.not_updated[name] = "attribute does not exist"
                else:
                    chosen[name] = attr
            applied = self._write_readings(conn, attribute_readings(entity_id, chosen, now), now)
            applied_names = {r.name for r in applied}
            for name in chosen:
                if name in applied_names:
                    result.updated.append(name)
                else:
                    result.not_updated[name] = "a newer observation is already in state"
            conn.execute("UPDATE entities SET modified_at = ? WHERE eid = ?", (now, found[0]))
            return result

        return await self._guarded_write(run)

    async def delete_attribute(self, entity_id: str, name: str, now: float) -> bool | None:
        """Remove one attribute from state (its history stays)."""

        def run(conn: sqlite3.Connection) -> bool | None:
            found = self._index.get(entity_id)
            if found is None:
                return None
            gone = conn.execute(
                "DELETE FROM attrs WHERE eid = ? AND name = ?", (found[0], name)
            ).rowcount
            if gone and name == "location":
                self._set_bounds(conn, found[0], entity_id, None)
            column = SCOPE_COLUMNS.get(name)
            if gone and column is not None:
                fallback = dict(
                    zip(
                        ("municipality", "department"),
                        entity_scope(entity_id, found[1], {}),
                        strict=True,
                    )
                )
                conn.execute(
                    f"UPDATE entities SET {column} = ? WHERE eid = ?", (fallback[column], found[0])
                )
            conn.execute("UPDATE entities SET modified_at = ? WHERE eid = ?", (now, found[0]))
            return bool(gone)

        return await self._guarded_write(run)

    async def delete_history(
        self,
        entity_id: str,
        name: str | None = None,
        observed_at: float | None = None,
        dataset: str | None = None,
    ) -> int:
        """Remove history instances: all of an entity, of one attribute, or one instant
        (of one dataset, or of every one)."""
        where, args = history_instances(entity_id, name, observed_at, dataset, "?")

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(f"DELETE FROM history WHERE {where}", args).rowcount

        return await self._guarded_write(run)

    async def delete_entities(self, ids: Sequence[str]) -> list[str]:
        """Delete entities from state; their history stays, reachable by id."""

        def run(conn: sqlite3.Connection) -> list[str]:
            deleted = []
            for entity_id in ids:
                found = self._set_index(entity_id, None)
                if found is None:
                    continue
                eid = found[0]
                conn.execute("DELETE FROM attrs WHERE eid = ?", (eid,))
                conn.execute("DELETE FROM entity_bounds WHERE eid = ?", (eid,))
                conn.execute("DELETE FROM entities WHERE eid = ?", (eid,))
                deleted.append(entity_id)
            return deleted

        return await self._guarded_write(run)

    async def apply_readings(self, readings: Sequence[Reading], now: float) -> list[Reading]:
        """Append to history; update state where each reading is the newest."""
        return await self._guarded_write(lambda conn: self._write_readings(conn, readings, now))

    # -- history -------------------------------------------------------------
    async def history(self, query: HistoryQuery) -> dict[str, list[tuple[float, Any]]]:
        """Per attribute, its (instant, value) series or (bucket start, aggregate) series."""
        return await self._read(lambda conn: self._history(conn, query))

    def _history(self, conn: sqlite3.Connection, query: HistoryQuery) -> dict[str, list]:
        row = conn.execute(
            "SELECT eid FROM entity_keys WHERE id = ?", (query.entity_id,)
        ).fetchone()
        if row is None:
            return {}
        eid = row[0]
        names = query.attrs or [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT name FROM history WHERE eid = ? AND dataset = '' ORDER BY name",
                (eid,),
            )
        ]
        start = query.start if query.start is not None else -1e18
        end = query.end if query.end is not None else 1e18
        out: dict[str, list] = {}
        for name in names:
            args = (eid, name, start, end)
            if query.bucket_s is None:
                rows = conn.execute(
                    "SELECT observed_at, num, value FROM history WHERE eid = ? AND name = ?"
                    " AND dataset = '' AND observed_at >= ? AND observed_at < ?"
                    " ORDER BY observed_at LIMIT ?",
                    (*args, query.limit),
                )
                out[name] = [(t, history_point(num, value)) for t, num, value in rows]
            else:
                fn = query.agg
                expr = "count(*)" if fn == "count" else f"{fn}(num)"
                filt = "" if fn == "count" else " AND num IS NOT NULL"
                rows = conn.execute(
                    f"SELECT floor(observed_at / ?) * ? AS bucket, {expr}"
                    " FROM history WHERE eid = ? AND name = ? AND dataset = ''"
                    f" AND observed_at >= ? AND observed_at < ?{filt}"
                    " GROUP BY bucket ORDER BY bucket LIMIT ?",
                    (query.bucket_s, query.bucket_s, *args, query.limit),
                )
                out[name] = [(float(t), v) for t, v in rows]
        return out

    async def census(self, scope: Visibility | None = None) -> Census:
        """Entities per type and their attributes, counted in SQL."""
        types, attrs, params = census_sql(scope, "?")
        return await self._read(
            lambda conn: census_of(conn.execute(types, params), conn.execute(attrs, params))
        )

    async def temporal(self, query: TemporalQuery) -> TemporalResult:
        """Instances or aggregation periods per entity and attribute, computed in SQL."""
        statements = temporal_sql(query, _TEMPORAL)

        def run(conn: sqlite3.Connection) -> TemporalResult:
            default, datasets = (
                conn.execute(*statement) if statement is not None else ()
                for statement in statements
            )
            return temporal_rows(query, default, datasets)

        return await self._read(run)

    # -- dead letters ----------------------------------------------------------
    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Keep messages that failed validation, with reason and raw payload."""
        rows = [(d.received_at, d.source, d.reason, d.field, d.payload) for d in letters]
        await self._write(
            lambda conn: conn.executemany(
                "INSERT INTO dead_letters (received_at, source, reason, field, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        )

    async def list_dead_letters(self, limit: int, offset: int) -> tuple[list[DeadLetter], int]:
        """Newest dead letters first, and the total number kept."""

        def run(conn: sqlite3.Connection) -> tuple[list[DeadLetter], int]:
            total = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            rows = conn.execute(
                "SELECT received_at, source, reason, field, payload, id FROM dead_letters"
                " ORDER BY id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [DeadLetter(*r) for r in rows], total

        return await self._read(run)

    # -- accounts and types ------------------------------------------------------
    async def put_account(self, account: Account) -> None:
        """Create or replace a person's account."""
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO accounts (username, password_hash, role, disabled,"
                " grants, token_version) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    account.username,
                    account.password_hash,
                    account.role,
                    int(account.disabled),
                    grants_to_text(account.grants),
                    account.token_version,
                ),
            )
        )

    async def get_account(self, username: str) -> Account | None:
        """A person's account, or None."""
        rows = await self._read(
            lambda conn: conn.execute(_ACCOUNTS + " WHERE username = ?", (username,)).fetchall()
        )
        return account_from_row(rows[0]) if rows else None

    async def list_accounts(self) -> list[Account]:
        """Every person's account."""
        rows = await self._read(lambda conn: conn.execute(_ACCOUNTS).fetchall())
        return [account_from_row(r) for r in rows]

    async def put_device_key(
        self, name: str, key_hash: str, binding: DeviceBinding = UNBOUND
    ) -> None:
        """Register a device gateway, or give it a new hashed key (the old one ends)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM device_keys WHERE name = ?", (name,))
            conn.execute(
                "INSERT INTO device_keys (key_hash, name, binding) VALUES (?, ?, ?)",
                (key_hash, name, binding_to_text(binding)),
            )

        await self._write(run)

    async def get_device(self, key_hash: str) -> Device | None:
        """The device gateway holding this hashed key, or None."""
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT name, binding FROM device_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
        )
        return None if row is None else Device(row[0], binding_from_text(row[1]))

    async def list_devices(self) -> list[Device]:
        """Every device gateway (without keys)."""
        rows = await self._read(
            lambda conn: conn.execute("SELECT name, binding FROM device_keys").fetchall()
        )
        return [Device(name, binding_from_text(b)) for name, b in rows]

    async def put_session(self, session: Session) -> None:
        """Keep a new session; sessions that expired before ``session.created_at`` go."""
        s = session

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (session.created_at,))
            conn.execute(
                "INSERT INTO sessions (id, username, token_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (s.id, s.username, s.token_id, s.created_at, s.expires_at),
            )

        await self._write(run)

    async def get_session(self, session_id: str) -> Session | None:
        """One session, or None."""
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        )
        return None if row is None else Session(*row)

    async def rotate_session(self, session_id: str, old_token: str, new_token: str) -> bool:
        """Move an unrevoked session from ``old_token`` to ``new_token`` (compare and set)."""
        return await self._one_row(SESSION_ROTATE, (new_token, session_id, old_token))

    async def revoke_session(self, session_id: str, reason: str, at: float) -> bool:
        """Revoke a session not revoked yet; whether this call revoked it."""
        return await self._one_row(SESSION_REVOKE, (at, reason, session_id))

    async def _one_row(self, statement: str, params: tuple[Any, ...]) -> bool:
        """Run a session statement; whether it changed exactly one row."""
        sql = statement.format(m="?")
        return await self._write(lambda conn: conn.execute(sql, params).rowcount == 1)

    async def delete_device(self, name: str) -> bool:
        """Remove a device gateway and its key; whether it existed."""
        return await self._write(
            lambda conn: (
                conn.execute("DELETE FROM device_keys WHERE name = ?", (name,)).rowcount > 0
            )
        )

    # -- personal data -----------------------------------------------------------
    async def purge_personal(self, rules: Sequence[PersonalRule]) -> int:
        """Remove personal identifiers older than each rule's cutoff (history and state)."""

        def run(conn: sqlite3.Connection) -> int:
            changed = 0
            for rule in rules:
                where, args = personal_rule_where(rule, "?")
                for table in ("history", "attrs"):
                    if not rule.members:
                        sql = f"DELETE FROM {table} WHERE {where}"
                        changed += conn.execute(sql, args).rowcount
                        continue
                    paths = [f'$."{m}"' for m in rule.members]
                    marks = ", ".join("?" * len(paths))
                    present = " OR ".join(["json_type(value, ?) IS NOT NULL"] * len(paths))
                    sql = (
                        f"UPDATE {table} SET value = json_remove(value, {marks})"
                        f" WHERE value IS NOT NULL AND ({present}) AND {where}"
                    )
                    changed += conn.execute(sql, (*paths, *paths, *args)).rowcount
            return changed

        return await self._write(run)

    async def find_values(self, needles: Sequence[str]) -> list[FoundValue]:
        """Every state and history value whose text contains one of the needles."""
        if not needles:
            return []
        holds = " OR ".join(["instr(x.value, ?) > 0"] * len(needles))
        in_payload = holds.replace("x.value", "payload")

        def run(conn: sqlite3.Connection) -> list[FoundValue]:
            rows = conn.execute(
                "SELECT 'state', k.id, x.name, NULL, x.value FROM attrs x JOIN entity_keys k"
                f" ON k.eid = x.eid WHERE {holds} UNION ALL"
                " SELECT 'history', k.id, x.name, x.observed_at, x.value FROM history x"
                f" JOIN entity_keys k ON k.eid = x.eid WHERE x.value IS NOT NULL AND ({holds})"
                " ORDER BY 2, 3, 4",
                (*needles, *needles),
            ).fetchall()
            letters = conn.execute(
                "SELECT 'deadLetter', source, reason, received_at, payload FROM dead_letters"
                f" WHERE {in_payload} ORDER BY id",
                needles,
            ).fetchall()
            return [FoundValue(w, i, n, t, orjson.loads(v)) for w, i, n, t, v in rows] + [
                FoundValue(*row) for row in letters
            ]

        return await self._read(run)

    async def erase_values(self, needles: Sequence[str], replacement: str) -> int:
        """Replace each needle in every state and history value that holds it."""

        def run(conn: sqlite3.Connection) -> int:
            changed = 0
            for needle in needles:
                for table, column in ERASABLE:
                    changed += conn.execute(
                        f"UPDATE {table} SET {column} = replace({column}, ?, ?)"
                        f" WHERE {column} IS NOT NULL AND instr({column}, ?) > 0",
                        (needle, replacement, needle),
                    ).rowcount
            return changed

        return await self._write(run)

    # -- audit log (its own file and thread) --------------------------------------
    async def _audit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._audit_conn
            assert conn is not None, "store is not open"
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._auditor, run)

    async def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries to the audit log."""
        rows = [audit_row(e) for e in entries]
        await self._audit(
            lambda conn: conn.executemany(
                "INSERT INTO audit_log (at, actor, action, target, client, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        )

    async def query_audit(self, query: AuditQuery) -> tuple[list[AuditEntry], int]:
        """The entries matching the query, newest first, and how many match."""
        where, params = audit_where(query, "?")

        def run(conn: sqlite3.Connection) -> tuple[list[AuditEntry], int]:
            total = conn.execute(f"SELECT count(*) FROM audit_log{where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT {AUDIT_COLUMNS} FROM audit_log{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
            return [audit_entry(r) for r in rows], total

        return await self._audit(run)

    async def purge_audit(self, before: float) -> int:
        """Delete the entries older than ``before`` (all or none: one statement)."""
        return await self._audit(
            lambda conn: conn.execute("DELETE FROM audit_log WHERE at < ?", (before,)).rowcount
        )

    async def put_type(self, name: str, doc: dict[str, Any], record: dict[str, Any]) -> None:
        """Keep a type's new declaration and append its version record, in one transaction."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO entity_types VALUES (?, ?)",
                (name, orjson.dumps(doc).decode()),
            )
            conn.execute(
                "INSERT INTO entity_type_versions VALUES (?, ?, ?)",
                (name, record["version"], orjson.dumps(record).decode()),
            )

        await self._write(run)

    async def type_versions(self, name: str) -> list[dict[str, Any]]:
        """The version records of a run-time type, oldest first (kept after deletion)."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT record FROM entity_type_versions WHERE name = ? ORDER BY version",
                (name,),
            ).fetchall()
        )
        return [orjson.loads(r[0]) for r in rows]

    async def delete_type(self, name: str) -> None:
        """Forget a run-time type's declaration (its version records stay)."""
        await self._write(
            lambda conn: conn.execute("DELETE FROM entity_types WHERE name = ?", (name,))
        )

    async def list_types(self) -> list[dict[str, Any]]:
        """Every type registered at run time."""
        rows = await self._read(
            lambda conn: conn.execute("SELECT doc FROM entity_types ORDER BY name").fetchall()
        )
        return [orjson.loads(r[0]) for r in rows]
