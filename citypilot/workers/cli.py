"""``citypilot worker ingest | writer | engine | retention``: worker processes (docs/deploy.md)."""

from __future__ import annotations

import argparse
from typing import Any

from citypilot.config import Settings


def _run(role: str) -> Any:
    def command(args: argparse.Namespace, settings: Settings) -> int:
        from citypilot.workers.runtime import run_worker

        if args.id:
            settings = settings.model_copy(update={"worker_id": args.id})
        if args.metrics_port is not None:
            settings = settings.model_copy(update={"metrics_port": args.metrics_port})
        if role == "ingest":
            from citypilot.workers.ingest import run_ingest as main
        elif role == "writer":
            from citypilot.workers.writer import run_writer as main
        else:
            from citypilot.workers.engine import run_engine as main
        return run_worker(settings, role, lambda: main(settings))

    return command


def add_worker_commands(sub: Any) -> None:
    """Add ``worker ingest|writer|engine`` to the CLI."""
    workers = sub.add_parser("worker", help="run one worker process (bus = nats)")
    kinds = workers.add_subparsers(dest="role", required=True)
    for role, text in (
        ("ingest", "MQTT (shared subscription) → validate → JetStream"),
        ("writer", "JetStream → PostgreSQL in batches, then change events"),
        ("engine", "commands, alarms, rules, modes: one leads (lease), the others stand by"),
    ):
        p = kinds.add_parser(role, help=text)
        p.add_argument("--id", help="stable worker name (default: worker_id, else host name)")
        p.add_argument("--metrics-port", type=int, help="port of /metrics (0: none)")
        p.set_defaults(func=_run(role))
    p = kinds.add_parser("retention", help="raw history past retention_days → hourly aggregates")
    p.add_argument("--dry-run", action="store_true", help="count what would change; change nothing")
    p.add_argument("--once", action="store_true", help="one run, then exit")
    p.set_defaults(func=_retention)


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    from citypilot.workers.retention import run_retention

    return run_retention(settings, dry_run=args.dry_run, once=args.once)
