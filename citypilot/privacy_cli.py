"""``citypilot privacy``: data-subject requests, retention purge and key rotation."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

import orjson
from rich.console import Console

from citypilot.config import Settings

console = Console(stderr=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


async def _with_store(settings: Settings, work: Any) -> Any:
    from citypilot.store.factory import opened_store

    async with opened_store(settings) as store:
        return await work(store)


async def _in_tenants(settings: Settings, city_store: Any, work: Any) -> dict[str, Any]:
    """``work(name, store)`` on the store of every NGSI-LD tenant there is, by name."""
    from citypilot.store.factory import open_store
    from citypilot.store.tenants import existing_tenants

    done = {}
    for name in await existing_tenants(settings, city_store):
        store = open_store(settings, name)
        await store.open()
        try:
            done[name] = await work(name, store)
        finally:
            await store.close()
    return done


async def _kept_in_tenant(store: Any, keys: Any, subject: str) -> dict[str, Any]:
    from citypilot.security.privacy import export_subject

    found = await export_subject(store, keys, subject)
    return {"state": found["state"], "history": found["history"]}


def privacy_export(args: argparse.Namespace, settings: Settings) -> int:
    """Print (as JSON) everything kept about a data subject (what NGSI-LD tenants keep
    about them under ``tenants``, by tenant, where any does)."""
    from citypilot.security import audit
    from citypilot.security.privacy import export_subject, load_keys

    keys = load_keys(settings.data_path)

    async def work(store: Any) -> dict[str, Any]:
        found = await export_subject(store, keys, args.subject)
        count = sum(len(found[k]) for k in ("state", "history", "deadLetters", "audit"))
        # a tenant keeps entities and history; the audit log is the city's
        tenants = await _in_tenants(
            settings, store, lambda _name, s: _kept_in_tenant(s, keys, args.subject)
        )
        held = {n: t for n, t in tenants.items() if t["state"] or t["history"]}
        if held:
            found["tenants"] = held
            count += sum(len(t["state"]) + len(t["history"]) for t in held.values())
        await audit.record(store, _actor(), "privacy.export", detail={"values": count})
        return found

    found = asyncio.run(_with_store(settings, work))
    sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def privacy_erase(args: argparse.Namespace, settings: Settings) -> int:
    """Erase a data subject's identifiers from state and history, the city's and every
    NGSI-LD tenant's."""
    from citypilot.security import audit
    from citypilot.security.privacy import erase_subject, load_keys

    keys = load_keys(settings.data_path)

    async def work(store: Any) -> int:
        erased = await erase_subject(store, keys, args.subject)
        tenants = await _in_tenants(
            settings, store, lambda _name, s: erase_subject(s, keys, args.subject)
        )
        detail: dict[str, Any] = {"values": erased + sum(tenants.values())}
        if any(tenants.values()):
            detail["tenants"] = {n: count for n, count in tenants.items() if count}
        await audit.record(store, _actor(), "privacy.erase", detail=detail)
        return detail["values"]

    erased = asyncio.run(_with_store(settings, work))
    console.print(f"{erased} stored values no longer hold the subject's identifier.")
    return 0


def privacy_purge(args: argparse.Namespace, settings: Settings) -> int:
    """Purge personal identifiers and audit entries past their retention now."""
    from citypilot.api.app import build_registry
    from citypilot.security.retention import purge_expired

    registry = build_registry(settings)

    async def work(store: Any) -> dict[str, int]:
        from citypilot.model.types import entity_type_from_json

        for doc in await store.list_types():
            registry.register(entity_type_from_json(doc))
        removed = await purge_expired(store, registry, settings, _actor())
        tenants = await _in_tenants(
            settings,
            store,
            lambda name, s: purge_expired(s, registry, settings, _actor(), tenant=(name, store)),
        )
        removed["personalValues"] += sum(t["personalValues"] for t in tenants.values())
        return removed

    removed = asyncio.run(_with_store(settings, work))
    console.print(
        f"Purged {removed['personalValues']} personal values and "
        f"{removed['auditEntries']} audit entries."
    )
    return 0


def privacy_rotate_key(args: argparse.Namespace, settings: Settings) -> int:
    """Start pseudonymising with a new key (the old ones stay for requests)."""
    from citypilot.security.privacy import rotate_keys

    key_id = rotate_keys(settings.data_path)
    console.print(f"New pseudonymisation key [bold]{key_id}[/]; restart the server to use it.")
    return 0


def add_privacy_commands(sub: Any) -> None:
    """Register ``citypilot privacy export|erase|purge|rotate-key``."""
    privacy = sub.add_parser("privacy", help="personal data: requests, retention, keys")
    actions = privacy.add_subparsers(dest="action", required=True)
    p = actions.add_parser("export", help="everything kept about a data subject (JSON)")
    p.add_argument("subject", help="the raw identifier (badge id, plate) or its pseudonym")
    p.set_defaults(func=privacy_export)
    p = actions.add_parser("erase", help="erase a data subject's identifiers")
    p.add_argument("subject", help="the raw identifier (badge id, plate) or its pseudonym")
    p.set_defaults(func=privacy_erase)
    p = actions.add_parser("purge", help="purge what is past its retention now")
    p.set_defaults(func=privacy_purge)
    p = actions.add_parser("rotate-key", help="pseudonymise with a new key from now on")
    p.set_defaults(func=privacy_rotate_key)
