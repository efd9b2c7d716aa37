"""The ``citypilot`` command: serve, users, devices, bench, and (from the twin) demo tools.

Every command reads the same settings as the server: ``--config FILE`` (TOML)
then ``CITYPILOT_*`` environment variables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from citypilot.config import Settings, load_settings
from citypilot.model.errors import CityPilotError

if TYPE_CHECKING:
    from citypilot.api.deps import City

console = Console(stderr=True)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP API until interrupted; print where the console is and what connected."""
    import uvicorn

    from citypilot.api.app import create_app
    from citypilot.security.redact import logging_config

    where = settings.postgres_dsn if settings.store == "postgres" else settings.data_path
    console.print(f"CityPilot {settings.store} store: [bold]{where}[/]")
    config = uvicorn.Config(
        create_app(settings, on_ready=lambda city, built: _started(settings, city, built)),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level),
        access_log=False,
        ws_max_size=1 << 20,
    )
    # The socket is bound before the city opens: a port in use fails at once, before
    # the store is touched, and a client that connects as soon as the console URL is
    # announced waits in the listen backlog instead of being refused. (uvicorn logs a
    # bind error and exits with its startup-failure status.)
    listening = config.bind_socket()
    uvicorn.Server(config).run(sockets=[listening])
    return 0


def _started(settings: Settings, city: City, console_built: bool) -> None:
    """Once the city runs: settle the heap (``citypilot.heap``), then say where it is (the
    announcement is the last thing before the API listens)."""
    from citypilot.heap import settle_heap

    settle_heap()
    _announce(settings, city, console_built)


def _announce(settings: Settings, city: City, console_built: bool) -> None:
    """What ``serve`` prints once the city runs: the console URL, the API, and MQTT."""
    base = f"http://{settings.host}:{settings.port}"
    if console_built:
        console.print(f"Console at [bold]{base}/[/]")
    else:
        console.print("Console not built (scripts/setup.sh builds it); serving the API only")
    console.print(f"API on {base}/api/v1  (explorer at {base}/docs)")
    mqtt = city.components.get("mqtt")
    if not settings.mqtt_url:
        console.print("MQTT: off (set mqtt_url to receive device topics)")
    elif settings.bus != "memory":
        console.print("MQTT: received by the ingest workers (bus = nats)")
    elif mqtt is not None and mqtt.connected:
        console.print(f"MQTT: [green]connected[/] to {_without_password(settings.mqtt_url)}")
    else:
        where = _without_password(settings.mqtt_url)
        console.print(f"MQTT: [red]not connected[/] to {where} (retrying in the background)")


def _without_password(url: str) -> str:
    """``url`` with the password of its user part masked."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="citypilot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML settings file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=serve)

    from citypilot.accounts_cli import add_account_commands

    add_account_commands(sub)

    from citypilot.bench.cli import add_bench_commands
    from citypilot.demo import add_demo_command
    from citypilot.privacy_cli import add_privacy_commands
    from citypilot.twin.commands import add_twin_commands

    add_bench_commands(sub)
    add_demo_command(sub)
    add_twin_commands(sub)
    add_privacy_commands(sub)

    from citypilot.workers.cli import add_worker_commands

    add_worker_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``citypilot`` command."""
    args = build_parser().parse_args(argv)
    overrides = {k: getattr(args, k, None) for k in ("host", "port")}
    try:
        settings = load_settings(args.config, **overrides)
    except (OSError, ValueError) as exc:
        console.print(f"[red]Cannot read the settings:[/] {exc}")
        return 2
    try:
        return args.func(args, settings)
    except CityPilotError as exc:
        console.print(f"[red]{exc.detail}[/]")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
