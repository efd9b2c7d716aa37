"""``citypilot users …`` and ``citypilot devices …``: people and device gateways, on the
store the settings name (the same operations as the admin API, ``security.accounts``)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from citypilot.cli_secrets import add_secret_options, read_secret
from citypilot.config import Settings
from citypilot.security.mqtt_devices import dynamic_security
from citypilot.security.roles import ROLES

console = Console(stderr=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _on_store(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(store)`` on the opened store of these settings."""
    from citypilot.store.factory import opened_store

    async def run() -> Any:
        async with opened_store(settings) as store:
            return await work(store)

    return asyncio.run(run())


# -- people --------------------------------------------------------------------------
def users_add(args: argparse.Namespace, settings: Settings) -> int:
    """Create or replace a person's account; the password comes from the terminal,
    ``--password-stdin`` or ``--password-file``, never from the command line."""
    from citypilot.security import accounts

    password = read_secret(args, f"Password for {args.name}: ")
    _on_store(
        settings,
        lambda store: accounts.add_user(store, _actor(), args.name, password, args.role),
    )
    console.print(f"User [bold]{args.name}[/] ({args.role}) saved.")
    return 0


def users_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print every account: name, role, disabled, grants."""
    from citypilot.security import accounts

    people = _on_store(settings, accounts.list_users)
    table = Table("user", "role", "disabled", "grants")
    for a in people:
        grants = ", ".join(
            "/".join(filter(None, (g.role, g.municipality, g.department))) for g in a.grants
        )
        table.add_row(a.username, a.role, "yes" if a.disabled else "", grants or "(metropole)")
    Console().print(table)
    return 0


def _update(args: argparse.Namespace, settings: Settings, **change: Any) -> int:
    from citypilot.security import accounts

    account = _on_store(
        settings, lambda store: accounts.update_user(store, _actor(), args.name, **change)
    )
    state = "disabled" if account.disabled else "enabled"
    console.print(f"User [bold]{account.username}[/]: {account.role}, {state}.")
    return 0


def users_disable(args: argparse.Namespace, settings: Settings) -> int:
    """Disable an account: its logins and tokens are refused."""
    return _update(args, settings, disabled=True)


def users_enable(args: argparse.Namespace, settings: Settings) -> int:
    """Enable a disabled account again."""
    return _update(args, settings, disabled=False)


def users_set_role(args: argparse.Namespace, settings: Settings) -> int:
    """Change a person's role."""
    return _update(args, settings, role=args.role)


def users_reset_password(args: argparse.Namespace, settings: Settings) -> int:
    """Give a person a new password (read like ``users add``'s)."""
    from citypilot.security import accounts

    password = read_secret(args, f"New password for {args.name}: ")
    _on_store(settings, lambda store: accounts.reset_password(store, _actor(), args.name, password))
    console.print(f"Password of [bold]{args.name}[/] changed.")
    return 0


# -- device gateways -------------------------------------------------------------------
def _print_key(name: str, key: str) -> None:
    console.print(f"Device key for [bold]{name}[/] (shown once; send it as X-Device-Key):")
    print(key)


def devices_add(args: argparse.Namespace, settings: Settings) -> int:
    """Register a device gateway with a generated key, bound to what the options name."""
    from citypilot.security import accounts
    from citypilot.security.devices import binding_from_json

    binding = binding_from_json(
        {"entities": args.entity or [], "type": args.type, "municipality": args.municipality},
        "--entity/--type/--municipality",
    )
    mqtt = dynamic_security(settings)
    key = _on_store(
        settings,
        lambda store: accounts.add_device(store, _actor(), args.name, binding, mqtt=mqtt),
    )
    if binding.is_open:
        console.print("[yellow]Not bound: this key may write any entity.[/]")
    _print_key(args.name, key)
    return 0


def devices_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print every device gateway and what its key may write."""
    devices = _on_store(settings, lambda store: store.list_devices())
    table = Table("device", "may write")
    for d in sorted(devices, key=lambda d: d.name):
        b = d.binding
        parts = [f"{len(b.entities)} entities"] if b.entities else []
        parts += [f"type {b.type}"] if b.type else []
        parts += [f"municipality {b.municipality}"] if b.municipality else []
        table.add_row(d.name, ", ".join(parts) or "any entity")
    Console().print(table)
    return 0


def devices_rotate(args: argparse.Namespace, settings: Settings) -> int:
    """A new key for a device gateway; the old one stops working at once."""
    from citypilot.security import accounts

    mqtt = dynamic_security(settings)
    key = _on_store(
        settings, lambda store: accounts.rotate_device(store, _actor(), args.name, mqtt=mqtt)
    )
    _print_key(args.name, key)
    return 0


def devices_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Remove a device gateway; its key stops working at once."""
    from citypilot.security import accounts

    mqtt = dynamic_security(settings)
    _on_store(settings, lambda store: accounts.revoke_device(store, _actor(), args.name, mqtt=mqtt))
    console.print(f"Device [bold]{args.name}[/] revoked.")
    return 0


def devices_sync_mqtt(args: argparse.Namespace, settings: Settings) -> int:
    """Make the MQTT broker's dynamic security agree with the store: every device's ACL
    as its binding says now, no client of a revoked device, and the ingest client of
    ``mqtt_url``. A device the broker has no client for is listed: rotate its key."""
    from urllib.parse import unquote, urlsplit

    mqtt = dynamic_security(settings)
    if mqtt is None:
        console.print("[red]mqtt_dynsec_url (CITYPILOT_MQTT_DYNSEC_URL) is not set.[/]")
        return 2
    ingest = None
    if settings.mqtt_url:
        parts = urlsplit(settings.mqtt_url)
        if parts.username and parts.password:
            ingest = (unquote(parts.username), unquote(parts.password))

    async def sync(store: Any) -> Any:
        scopes = await store.entity_scopes()
        return await mqtt.sync(await store.list_devices(), scopes, ingest)

    report = _on_store(settings, sync)
    console.print(
        f"MQTT broker: {len(report.updated)} roles written, {len(report.removed)} clients "
        f"and roles removed."
    )
    for name in report.missing:
        console.print(
            f"[yellow]{name}: no MQTT client (its key is not kept): "
            f"`citypilot devices rotate {name}` provisions it.[/]"
        )
    return 0


def add_account_commands(sub: Any) -> None:
    """Register ``users`` and ``devices`` with their actions."""
    users = sub.add_parser("users", help="people who log in").add_subparsers(
        dest="action", required=True
    )
    p = users.add_parser("add", help="create or replace a user")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, default="viewer")
    add_secret_options(p)
    p.set_defaults(func=users_add)
    users.add_parser("list", help="every user").set_defaults(func=users_list)
    for action, func, help_ in (
        ("disable", users_disable, "refuse the user's logins and tokens"),
        ("enable", users_enable, "admit the user again"),
    ):
        p = users.add_parser(action, help=help_)
        p.add_argument("name")
        p.set_defaults(func=func)
    p = users.add_parser("set-role", help="change a user's role")
    p.add_argument("name")
    p.add_argument("role", choices=ROLES)
    p.set_defaults(func=users_set_role)
    p = users.add_parser("reset-password", help="give a user a new password")
    p.add_argument("name")
    add_secret_options(p)
    p.set_defaults(func=users_reset_password)

    devices = sub.add_parser("devices", help="device gateway keys").add_subparsers(
        dest="action", required=True
    )
    p = devices.add_parser("add", help="register a device gateway; prints its new key")
    p.add_argument("name")
    p.add_argument("--entity", action="append", help="an entity it may write (repeatable)")
    p.add_argument("--type", help="the type of entity it may write")
    p.add_argument("--municipality", help="the municipality whose entities it may write")
    p.set_defaults(func=devices_add)
    devices.add_parser("list", help="every device and what it may write").set_defaults(
        func=devices_list
    )
    devices.add_parser(
        "sync-mqtt", help="make the MQTT broker's dynamic security agree with the store"
    ).set_defaults(func=devices_sync_mqtt)
    for action, func, help_ in (
        ("rotate", devices_rotate, "a new key; the old one stops working at once"),
        ("revoke", devices_revoke, "remove the device; its key stops working at once"),
    ):
        p = devices.add_parser(action, help=help_)
        p.add_argument("name")
        p.set_defaults(func=func)
