"""Creating logins in a store: people with a password and a role, gateways with a key."""

from __future__ import annotations

from collections.abc import Iterable

from citypilot.security.passwords import hash_password
from citypilot.security.tokens import hash_device_key
from citypilot.store.base import Account, Store


async def add_logins(
    store: Store,
    people: Iterable[tuple[str, str, str]] = (),
    devices: Iterable[tuple[str, str]] = (),
) -> None:
    """Create or replace people ``(name, password, role)`` and device keys ``(name, key)``."""
    for name, password, role in people:
        await store.put_account(Account(name, hash_password(password), role))
    for name, key in devices:
        await store.put_device_key(name, hash_device_key(key))
