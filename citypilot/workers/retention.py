"""The retention worker: folds raw history past each type's retention into hourly aggregates."""

from __future__ import annotations

import logging
import time

from rich.console import Console
from rich.table import Table

from citypilot.config import Settings
from citypilot.model.errors import BadRequestData
from citypilot.store.retention import RetentionOutcome, apply_retention

log = logging.getLogger(__name__)


def _show(outcomes: list[RetentionOutcome], dry_run: bool) -> None:
    table = Table(title="retention (dry run: nothing changed)" if dry_run else "retention")
    for column in ("type", "raw days kept", "raw rows past it", "hourly rows"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(o.type, str(o.keep_days), f"{o.raw_rows:,}", f"{o.hourly_rows:,}")
    Console().print(table)


def run_retention(settings: Settings, *, dry_run: bool, once: bool) -> int:
    """Run the policy now (and, unless ``once`` or ``dry_run``, every retention_interval_s)."""
    if settings.store != "postgres":
        raise BadRequestData('retention needs store = "postgres"', "store")
    if not settings.retention_days:
        raise BadRequestData(
            'no retention_days set (e.g. retention_days = {"*" = 90})', "retention_days"
        )
    while True:
        outcomes = apply_retention(settings.postgres_dsn, settings.retention_days, dry_run=dry_run)
        if outcomes is None:
            log.info("another retention run holds the lock; skipped")
        else:
            _show(outcomes, dry_run)
        if once or dry_run:
            return 0
        time.sleep(settings.retention_interval_s)
