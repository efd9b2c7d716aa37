"""``citypilot demo``: the embedded city, a demo login, the server — in one process."""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console

from citypilot.config import Settings

console = Console(stderr=True)
DEMO_USER, DEMO_PASSWORD = "demo", "demo-operator"


async def ensure_demo_account(settings: Settings) -> None:
    """Create the demo operator account if it does not exist yet."""
    from citypilot.security.passwords import hash_password
    from citypilot.store.base import Account
    from citypilot.store.factory import open_store

    store = open_store(settings)
    await store.open()
    try:
        if await store.get_account(DEMO_USER) is None:
            await store.put_account(Account(DEMO_USER, hash_password(DEMO_PASSWORD), "operator"))
    finally:
        await store.close()


def demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the demo: embedded store, demo login printed, server in the foreground."""
    from citypilot.cli import serve

    asyncio.run(ensure_demo_account(settings))
    console.print(f"Demo login: [bold]{DEMO_USER}[/] / [bold]{DEMO_PASSWORD}[/] (operator)")
    return serve(args, settings)


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    """Register ``citypilot demo`` on the CLI."""
    p = sub.add_parser("demo", help="run the demo city in one process")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=demo)
