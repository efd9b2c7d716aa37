"""Subscriptions and the notification outbox of the embedded store, in a file of their
own (``notify.db``) with its own thread: notifying never queues behind the city's
writes (ingest), and a notification's outbox row and its subscription's status change
in one transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from citypilot.store.base import PendingNotification

T = TypeVar("T")

NOTIFY_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notification_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, subscription_id TEXT NOT NULL, body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_due ON notification_outbox(next_at, id);
"""


def in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(conn)`` in one write transaction (rolled back if it raises)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class NotifyFile:
    """The subscriptions and outbox of one embedded city."""

    def __init__(self, path: Path, connect: Callable[[Path], sqlite3.Connection]) -> None:
        self.path = path
        self._connect = connect
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-notify")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Create the file and its schema if needed."""

        def setup() -> None:
            self._conn = self._connect(self.path)
            self._conn.executescript(NOTIFY_SCHEMA)

        await asyncio.get_running_loop().run_in_executor(self._thread, setup)

    async def close(self) -> None:
        """Close the connection and the thread."""

        def shutdown() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shutdown)
        self._thread.shutdown(wait=True)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction on the file's own thread."""

        def run() -> T:
            conn = self._conn
            assert conn is not None, "store is not open"
            return in_transaction(conn, fn)

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def put_subscription(self, sub_id: str, doc: dict[str, Any], create: bool) -> bool:
        """Keep a subscription; with ``create``, False if the id is taken."""
        text = orjson.dumps(doc).decode()

        def run(conn: sqlite3.Connection) -> bool:
            if create:
                cur = conn.execute(
                    "INSERT INTO subscriptions VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                    (sub_id, text),
                )
                return cur.rowcount == 1
            conn.execute("INSERT OR REPLACE INTO subscriptions VALUES (?, ?)", (sub_id, text))
            return True

        return await self._run(run)

    async def get_subscription(self, sub_id: str) -> dict[str, Any] | None:
        """One subscription, or None."""
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT doc FROM subscriptions WHERE id = ?", (sub_id,)
            ).fetchone()
        )
        return orjson.loads(row[0]) if row else None

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription, by id."""
        rows = await self._run(
            lambda conn: conn.execute("SELECT doc FROM subscriptions ORDER BY id").fetchall()
        )
        return [orjson.loads(r[0]) for r in rows]

    async def delete_subscription(self, sub_id: str) -> bool:
        """Forget a subscription and its pending notifications."""

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM notification_outbox WHERE subscription_id = ?", (sub_id,))
            return conn.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,)).rowcount == 1

        return await self._run(run)

    async def add_notifications(
        self, items: Sequence[tuple[str, str]], due_at: float
    ) -> list[PendingNotification]:
        """Put notifications in the outbox, due at ``due_at``; return them with their ids."""

        def run(conn: sqlite3.Connection) -> list[PendingNotification]:
            out = []
            for sub, body in items:
                cur = conn.execute(
                    "INSERT INTO notification_outbox (subscription_id, body, next_at)"
                    " VALUES (?, ?, ?)",
                    (sub, body, due_at),
                )
                out.append(PendingNotification(cur.lastrowid or 0, sub, body, 0))
            return out

        return await self._run(run) if items else []

    async def due_notifications(
        self, now: float, limit: int, lease_until: float
    ) -> list[PendingNotification]:
        """Claim the oldest notifications due by ``now`` until ``lease_until``."""
        rows = await self._run(
            lambda conn: conn.execute(
                "UPDATE notification_outbox SET next_at = ? WHERE id IN (SELECT id FROM"
                " notification_outbox WHERE next_at <= ? ORDER BY next_at, id LIMIT ?)"
                " RETURNING id, subscription_id, body, attempts",
                (lease_until, now, limit),
            ).fetchall()
        )
        return sorted(PendingNotification(*r) for r in rows)

    async def settle_notifications(
        self,
        delivered: Sequence[int],
        retry: Sequence[tuple[int, float]],
        subscriptions: Sequence[dict[str, Any]],
    ) -> None:
        """Drop delivered notifications, put failed ones off, save subscription status."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "DELETE FROM notification_outbox WHERE id = ?", [(i,) for i in delivered]
            )
            conn.executemany(
                "UPDATE notification_outbox SET attempts = attempts + 1, next_at = ? WHERE id = ?",
                [(at, i) for i, at in retry],
            )
            conn.executemany(
                "UPDATE subscriptions SET doc = ? WHERE id = ?",
                [(orjson.dumps(d).decode(), d["id"]) for d in subscriptions],
            )

        await self._run(run)
