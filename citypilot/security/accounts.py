"""Managing people and device gateways: the operations behind ``citypilot users|devices``
and the admin API, each checked, applied whole and put on the audit log.

People: add, list, disable, enable, set-role, reset-password (passwords must pass
``password_policy``); disabling, a new role or grants, and a new password move the
account's ``token_version`` on, which revokes every token issued before. Devices: add
(the key is generated, shown once, stored hashed), list, rotate (a new key; the old one
stops working at once), revoke.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from citypilot.model.errors import AlreadyExists, BadRequestData, ResourceNotFound
from citypilot.security import audit
from citypilot.security.devices import UNBOUND, Device, DeviceBinding
from citypilot.security.mqtt_devices import DynamicSecurity, scopes_for
from citypilot.security.password_policy import check_password
from citypilot.security.passwords import hash_password
from citypilot.security.roles import ROLES
from citypilot.security.scopes import Grant
from citypilot.security.tokens import hash_device_key, new_device_key
from citypilot.store.base import Account, Store

MAX_NAME = 128


def _check_name(name: str, field: str) -> None:
    if not name or len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        raise BadRequestData(
            f"{field} must be 1 to {MAX_NAME} printable characters without surrounding spaces",
            field,
        )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise BadRequestData(f"role must be one of {', '.join(ROLES)}", "role")


async def _checked_hash(password: str, username: str) -> str:
    """Check the password's strength and hash it, on a worker thread (both take CPU)."""

    def run() -> str:
        check_password(password, username)
        return hash_password(password)

    return await asyncio.to_thread(run)


async def _account(store: Store, username: str) -> Account:
    account = await store.get_account(username)
    if account is None:
        raise ResourceNotFound(f"there is no user {username!r}", "username")
    return account


async def add_user(
    store: Store,
    actor: str,
    username: str,
    password: str,
    role: str,
    grants: tuple[Grant, ...] = (),
    *,
    replace_existing: bool = True,
    client: str | None = None,
) -> Account:
    """Create (or, with ``replace_existing``, replace) a person's account."""
    _check_name(username, "username")
    _check_role(role)
    before = await store.get_account(username)
    if before is not None and not replace_existing:
        raise AlreadyExists(f"the user {username!r} exists already", "username")
    version = before.token_version + 1 if before is not None else 0  # replaced: revoked
    account = Account(
        username, await _checked_hash(password, username), role, False, grants, version
    )
    await store.put_account(account)
    await audit.record_permission_change(store, actor, username, before, account, client)
    return account


async def list_users(store: Store) -> list[Account]:
    """Every account, by name."""
    return sorted(await store.list_accounts(), key=lambda a: a.username)


async def update_user(
    store: Store,
    actor: str,
    username: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    grants: tuple[Grant, ...] | None = None,
    client: str | None = None,
) -> Account:
    """Change a person's role, grants or whether the account is disabled."""
    before = await _account(store, username)
    if role is not None:
        _check_role(role)
    after = replace(
        before,
        role=before.role if role is None else role,
        disabled=before.disabled if disabled is None else disabled,
        grants=before.grants if grants is None else grants,
    )
    if after != before:
        # a changed role or grants, or a disabling, revokes every token issued before
        # (enabling again revokes nothing: the disabled account's tokens stay revoked)
        if (after.role, after.grants) != (before.role, before.grants) or after.disabled:
            after = replace(after, token_version=before.token_version + 1)
        await store.put_account(after)
        await audit.record_permission_change(store, actor, username, before, after, client)
    return after


async def reset_password(
    store: Store, actor: str, username: str, password: str, client: str | None = None
) -> Account:
    """Give a person a new password (checked like any chosen one)."""
    before = await _account(store, username)
    after = replace(
        before,
        password_hash=await _checked_hash(password, username),
        token_version=before.token_version + 1,  # a new password ends every session
    )
    await store.put_account(after)
    await audit.record(store, actor, "account.password", target=username, client=client)
    return after


async def add_device(
    store: Store,
    actor: str,
    name: str,
    binding: DeviceBinding = UNBOUND,
    client: str | None = None,
    mqtt: DynamicSecurity | None = None,
) -> str:
    """Register a new device gateway; its key, generated here and returned once. With
    ``mqtt``, the key is made an MQTT client of the broker first (nothing is stored if
    the broker refuses)."""
    _check_name(name, "name")
    if any(d.name == name for d in await store.list_devices()):
        raise AlreadyExists(
            f"the device {name!r} exists already: rotate its key or revoke it first", "name"
        )
    key = new_device_key()
    if mqtt is not None:
        await mqtt.put_device(name, key, binding, await scopes_for(store, binding))
    await store.put_device_key(name, hash_device_key(key), binding)
    await audit.record(
        store, actor, "device.add", target=name, client=client, after=binding.to_json()
    )
    return key


async def rotate_device(
    store: Store,
    actor: str,
    name: str,
    client: str | None = None,
    reason: str | None = None,
    mqtt: DynamicSecurity | None = None,
) -> str:
    """A new key for a device gateway (same binding); the old key stops working at once,
    on the MQTT broker too with ``mqtt`` (its connection is closed)."""
    device = await _device(store, name)
    key = new_device_key()
    if mqtt is not None:
        await mqtt.put_device(name, key, device.binding, await scopes_for(store, device.binding))
    await store.put_device_key(name, hash_device_key(key), device.binding)
    detail = {"reason": reason} if reason else None
    await audit.record(store, actor, "device.rotate", target=name, client=client, detail=detail)
    return key


async def revoke_device(
    store: Store,
    actor: str,
    name: str,
    client: str | None = None,
    mqtt: DynamicSecurity | None = None,
) -> None:
    """Remove a device gateway; its key stops working at once, on the MQTT broker too
    with ``mqtt`` (removed there first: nothing changes if the broker cannot be told)."""
    device = await _device(store, name)
    if mqtt is not None:
        await mqtt.remove_device(name)
    await store.delete_device(name)
    await audit.record(
        store, actor, "device.revoke", target=name, client=client, before=device.binding.to_json()
    )


async def _device(store: Store, name: str) -> Device:
    for device in await store.list_devices():
        if device.name == name:
            return device
    raise ResourceNotFound(f"there is no device {name!r}", "name")
