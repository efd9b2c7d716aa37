"""History retention in PostgreSQL: raw readings for N days per type, then hourly aggregates.

Raw history rows of an entity type older than its retention are folded into
``history_hourly`` (count, sum, min, max of numeric values, and the last value of each
hour, per attribute instance: its ``datasetId`` too) and deleted, in one transaction
per type. A dry run counts what would be folded and changes nothing. One run at a time
across processes (an advisory lock). The history API serves raw rows; the hourly rows
are for long-term reporting in SQL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from citypilot.store.postgres import HAS_COLUMN, keyed_by_dataset

_RETENTION_LOCK = 0x43_50_53_03

SCHEMA = """
CREATE TABLE IF NOT EXISTS history_hourly (
    eid bigint NOT NULL, name text NOT NULL, hour double precision NOT NULL,
    n bigint NOT NULL, sum double precision, min double precision, max double precision,
    last_at double precision NOT NULL, last_value text, dataset text NOT NULL DEFAULT '',
    PRIMARY KEY (eid, name, hour, dataset));
"""

_OLD = """
FROM history h JOIN entities e ON e.eid = h.eid
WHERE e.type = %(type)s AND h.observed_at < %(cutoff)s
"""

_COUNT = (
    "SELECT count(*), count(DISTINCT (h.eid, h.name, floor(h.observed_at / 3600), h.dataset))"
    + _OLD
)

_FOLD = """
WITH old AS (
    DELETE FROM history h USING entities e
    WHERE e.eid = h.eid AND e.type = %(type)s AND h.observed_at < %(cutoff)s
    RETURNING h.eid, h.name, h.dataset, h.observed_at, h.num, h.value
), hourly AS (
    SELECT eid, name, floor(observed_at / 3600) * 3600 AS hour, dataset, count(*) AS n,
           sum(num) AS sum, min(num) AS min, max(num) AS max, max(observed_at) AS last_at,
           (array_agg(coalesce(value, num::text) ORDER BY observed_at DESC))[1] AS last_value
    FROM old GROUP BY 1, 2, 3, 4
)
INSERT INTO history_hourly AS x
    (eid, name, hour, dataset, n, sum, min, max, last_at, last_value)
SELECT * FROM hourly
ON CONFLICT (eid, name, hour, dataset) DO UPDATE SET
    n = x.n + excluded.n,
    sum = CASE WHEN x.sum IS NULL THEN excluded.sum
               WHEN excluded.sum IS NULL THEN x.sum ELSE x.sum + excluded.sum END,
    min = least(x.min, excluded.min),
    max = greatest(x.max, excluded.max),
    last_value = CASE WHEN excluded.last_at >= x.last_at THEN excluded.last_value
                      ELSE x.last_value END,
    last_at = greatest(x.last_at, excluded.last_at)
"""


@dataclass(frozen=True)
class RetentionOutcome:
    """What a run did (or, in a dry run, would do) for one entity type."""

    type: str
    keep_days: int
    raw_rows: int
    hourly_rows: int


def _policy_for(policy: dict[str, int], type_name: str) -> int | None:
    return policy.get(type_name, policy.get("*"))


def apply_retention(
    dsn: str, policy: dict[str, int], *, dry_run: bool = False, now: float | None = None
) -> list[RetentionOutcome] | None:
    """Fold raw history past each type's retention (``{"Type": days, "*": days}``).

    Returns one outcome per type with a retention, or None when another process
    holds the retention lock.
    """
    now = time.time() if now is None else now
    with psycopg.connect(dsn, autocommit=True) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (_RETENTION_LOCK,)).fetchone()
        if not locked or not locked[0]:
            return None
        try:
            conn.execute(SCHEMA)
            if conn.execute(HAS_COLUMN, ("history_hourly", "dataset")).fetchone() is None:
                conn.execute(keyed_by_dataset("history_hourly", "eid, name, hour, dataset"))
            types = [row[0] for row in conn.execute("SELECT DISTINCT type FROM entities")]
            outcomes = []
            for type_name in sorted(types):
                days = _policy_for(policy, type_name)
                if days is None:
                    continue
                params = {"type": type_name, "cutoff": now - days * 86400}
                raw, hourly = conn.execute(_COUNT, params).fetchone() or (0, 0)
                if not dry_run and raw:
                    with conn.transaction():
                        conn.execute(_FOLD, params)
                outcomes.append(RetentionOutcome(type_name, days, raw, hourly))
            return outcomes
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_RETENTION_LOCK,))
