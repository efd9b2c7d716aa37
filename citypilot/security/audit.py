"""The audit log: who did what, when, from where — append-only, kept for years.

Every module that acts on the city's behalf records through ``record``::

    await audit.record(store, "alice", "command.sent", target=entity_id,
                       client="10.0.0.7", detail={"command": "switchOff"})

Writes through the HTTP API are recorded by one middleware (``api.audit``), logins by
the login route, configuration changes with their ``before`` and ``after``. The
stores refuse to change or delete an entry (triggers); only entries older than the
retention (``audit_retention_days``, at least ``MIN_RETENTION_DAYS``) can be purged.
Entries hold facts — actions, ids, outcomes — not attribute values, so personal data
does not end up in them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

#: No entry younger than this can be deleted, whatever the settings say.
MIN_RETENTION_DAYS = 365
#: Outcomes an entry may have.
OUTCOMES = ("ok", "denied", "failed")


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    at: float
    actor: str
    action: str
    target: str | None = None
    client: str | None = None
    outcome: str = "ok"
    detail: dict[str, Any] | None = None
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as the API shows and exports it."""
        from citypilot.model.timeutil import format_instant

        return {
            "id": self.id,
            "at": format_instant(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "client": self.client,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditQuery:
    """Which entries to read: by actor, action (a prefix: ``login`` matches
    ``login.failed``), target, time range; newest first, paged."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    offset: int = 0
    before_id: int | None = None  # only entries older than this one (exports page by it)


async def record(
    store: Any,
    actor: str,
    action: str,
    *,
    target: str | None = None,
    client: str | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    before: Any = None,
    after: Any = None,
    at: float | None = None,
) -> None:
    """Append one entry to the audit log of ``store`` (committed when this returns).

    ``before``/``after`` are the configuration a change replaced and the one it set.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    full = dict(detail or {})
    if before is not None or after is not None:  # a creation has no before, a removal no after
        full["before"], full["after"] = before, after
    entry = AuditEntry(
        time.time() if at is None else at,
        actor,
        action,
        target,
        client,
        outcome,
        full or None,
    )
    await store.add_audit([entry])


async def record_permission_change(
    store: Any,
    actor: str,
    username: str,
    before: Any,
    after: Any,
    client: str | None = None,
) -> None:
    """Record a change of a person's role or grants (accounts as ``Account``, or None
    for a created or deleted one); the password hash never enters the log."""

    def shown(account: Any) -> dict[str, Any] | None:
        if account is None:
            return None
        return {
            "role": account.role,
            "disabled": account.disabled,
            "grants": [g.to_json() for g in account.grants],
        }

    await record(
        store,
        actor,
        "account.permissions",
        target=username,
        client=client,
        before=shown(before),
        after=shown(after),
    )
