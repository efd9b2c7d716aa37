"""Retention: personal identifiers and audit entries are purged once their time is up.

Personal identifiers (attributes a type marks ``personal``) are kept
``personal_retention_days`` (or that type's ``personal_retention`` entry) in state
and history; audit entries ``audit_retention_days``. The server purges every
``retention_interval_s``; ``citypilot privacy purge`` does it on demand. Each purge
that removed something is itself on the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from citypilot.config import Settings
from citypilot.security import audit
from citypilot.security.privacy import personal_attributes
from citypilot.store.base import PersonalRule, Store

log = logging.getLogger(__name__)
DAY_S = 86_400
#: An NGSI-LD tenant whose store is purged: its name, and the city's store (the audit log).
Tenant = tuple[str, Store]


def personal_rules(registry: Any, settings: Settings, now: float) -> list[PersonalRule]:
    """One rule per personal attribute of every registered type, with its cutoff."""
    rules = []
    for entity_type in registry:
        days = settings.personal_retention.get(entity_type.name, settings.personal_retention_days)
        for attr, members in personal_attributes(entity_type).items():
            rules.append(PersonalRule(entity_type.name, attr, members, now - days * DAY_S))
    return rules


async def purge_expired(
    store: Store,
    registry: Any,
    settings: Settings,
    actor: str,
    now: float | None = None,
    tenant: Tenant | None = None,
) -> dict[str, int]:
    """Purge what is past its retention; ``{"personalValues": n, "auditEntries": m}``.
    In an NGSI-LD tenant's store (``tenant``: its name and the city's store, which
    keeps the audit log) only personal values are purged, and recorded in the city's
    audit log with the tenant's name."""
    now = time.time() if now is None else now
    removed = {
        "personalValues": await store.purge_personal(personal_rules(registry, settings, now)),
    }
    if tenant is None:
        cutoff = now - settings.audit_retention_days * DAY_S
        removed["auditEntries"] = await store.purge_audit(cutoff)
    if any(removed.values()):
        detail: dict[str, Any] = dict(removed)
        if tenant is not None:
            detail["tenant"] = tenant[0]
        await audit.record(
            store if tenant is None else tenant[1], actor, "retention.purge", detail=detail
        )
    return removed


async def retention_loop(
    store: Store, registry: Any, settings: Settings, tenant: Tenant | None = None
) -> None:
    """Purge now and then every ``retention_interval_s``, until cancelled (``tenant``:
    see ``purge_expired``)."""
    while True:
        try:
            await purge_expired(store, registry, settings, "system:retention", tenant=tenant)
        except Exception:  # a failed purge is retried next time; the server goes on
            log.exception("the retention purge failed")
        await asyncio.sleep(settings.retention_interval_s)
