"""User and device-key management for admins of the whole metropole: the same operations
as ``citypilot users|devices`` (``security.accounts``), each on the audit log."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.audit import client_address
from citypilot.api.body import read_json
from citypilot.api.deps import Admin, CityDep, require_metropole_admin
from citypilot.api.openapi import answer, array_of, json_body, problem
from citypilot.model.errors import BadRequestData
from citypilot.security import accounts
from citypilot.security.devices import Device, binding_from_json
from citypilot.security.mqtt_devices import dynamic_security
from citypilot.security.roles import ROLES
from citypilot.security.scopes import grant_from_json
from citypilot.store.base import Account

router = APIRouter(prefix="/api/v1", tags=["accounts"])

_STRING = {"type": "string"}
_GRANT = {
    "type": "object",
    "required": ["role"],
    "properties": {"role": {"enum": list(ROLES)}, "municipality": _STRING, "department": _STRING},
}
USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["username", "role", "disabled", "grants"],
    "properties": {
        "username": _STRING,
        "role": {"enum": list(ROLES)},
        "disabled": {"type": "boolean"},
        "grants": array_of(_GRANT),
    },
}
BINDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "entities": array_of(_STRING),
        "type": _STRING,
        "municipality": _STRING,
    },
}
DEVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "binding"],
    "properties": {"name": _STRING, "binding": BINDING_SCHEMA},
}
DEVICE_KEY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "key", "binding"],
    "properties": {
        "name": _STRING,
        "key": {**_STRING, "description": "The device key, shown this once"},
        "binding": BINDING_SCHEMA,
    },
}


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _user(account: Account) -> dict[str, Any]:
    return {
        "username": account.username,
        "role": account.role,
        "disabled": account.disabled,
        "grants": [g.to_json() for g in account.grants],
    }


def _device(device: Device) -> dict[str, Any]:
    return {"name": device.name, "binding": device.binding.to_json()}


async def _object(request: Request, city: CityDep, allowed: set[str]) -> dict[str, Any]:
    doc = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(doc, dict):
        raise BadRequestData("the body must be a JSON object", "body")
    extra = set(doc) - allowed
    if extra:
        raise BadRequestData(f"unknown members {sorted(extra)}", sorted(extra)[0])
    return doc


def _string(doc: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequestData(f"{key} must be a string", key)
    return value


def _grants(doc: dict[str, Any]) -> tuple | None:
    value = doc.get("grants")
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequestData("grants must be a list", "grants")
    return tuple(grant_from_json(g, f"grants[{i}]") for i, g in enumerate(value))


# -- people ------------------------------------------------------------------------
@router.get(
    "/users", summary="Every user", responses=answer(200, "The users", array_of(USER_SCHEMA))
)
async def list_users(city: CityDep, who: Admin) -> Response:
    """Every account: name, role, whether disabled, grants (never a password hash)."""
    require_metropole_admin(who, "user management")
    return _json([_user(a) for a in await accounts.list_users(city.broker.store)])


_NEW_USER = {
    "type": "object",
    "required": ["username", "password", "role"],
    "properties": {
        "username": _STRING,
        "password": _STRING,
        "role": {"enum": list(ROLES)},
        "grants": array_of(_GRANT),
    },
}


@router.post(
    "/users",
    status_code=201,
    summary="Create a user",
    responses={**answer(201, "The new user", USER_SCHEMA), **problem(409, "The user exists")},
    openapi_extra=json_body(_NEW_USER),
)
async def create_user(request: Request, city: CityDep, who: Admin) -> Response:
    """A new account; the password must be at least 10 characters and hard to guess."""
    require_metropole_admin(who, "user management")
    doc = await _object(request, city, {"username", "password", "role", "grants"})
    account = await accounts.add_user(
        city.broker.store,
        who.name,
        _string(doc, "username") or "",
        _string(doc, "password") or "",
        _string(doc, "role") or "",
        _grants(doc) or (),
        replace_existing=False,
        client=client_address(request.scope),
    )
    city.forget_account(account.username)
    return _json(_user(account), 201)


_USER_CHANGE = {
    "type": "object",
    "properties": {
        "role": {"enum": list(ROLES)},
        "disabled": {"type": "boolean"},
        "grants": array_of(_GRANT),
    },
}


@router.patch(
    "/users/{username}",
    summary="Change a user's role, grants or disabled flag",
    responses=answer(200, "The user as changed", USER_SCHEMA),
    openapi_extra=json_body(_USER_CHANGE),
)
async def change_user(username: str, request: Request, city: CityDep, who: Admin) -> Response:
    """Set ``role``, ``grants`` and/or ``disabled``; the rest stays."""
    require_metropole_admin(who, "user management")
    doc = await _object(request, city, {"role", "disabled", "grants"})
    disabled = doc.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        raise BadRequestData("disabled must be true or false", "disabled")
    account = await accounts.update_user(
        city.broker.store,
        who.name,
        username,
        role=_string(doc, "role", required=False),
        disabled=disabled,
        grants=_grants(doc),
        client=client_address(request.scope),
    )
    city.forget_account(username)  # its tokens are checked against the change at once
    return _json(_user(account))


@router.put(
    "/users/{username}/password",
    status_code=204,
    summary="Set a user's password",
    openapi_extra=json_body(
        {"type": "object", "required": ["password"], "properties": {"password": _STRING}}
    ),
)
async def set_password(username: str, request: Request, city: CityDep, who: Admin) -> Response:
    """A new password for the user (at least 10 characters, hard to guess)."""
    require_metropole_admin(who, "user management")
    doc = await _object(request, city, {"password"})
    await accounts.reset_password(
        city.broker.store,
        who.name,
        username,
        _string(doc, "password") or "",
        client_address(request.scope),
    )
    city.forget_account(username)
    return Response(status_code=204)


# -- device keys ---------------------------------------------------------------------
@router.get(
    "/devices",
    summary="Every device gateway",
    responses=answer(200, "The devices and their bindings", array_of(DEVICE_SCHEMA)),
)
async def list_devices(city: CityDep, who: Admin) -> Response:
    """Every device gateway and what its key may write (never the key)."""
    require_metropole_admin(who, "device management")
    devices = sorted(await city.broker.store.list_devices(), key=lambda d: d.name)
    return _json([_device(d) for d in devices])


@router.post(
    "/devices",
    status_code=201,
    summary="Register a device gateway",
    responses={
        **answer(201, "The device and its key (shown once)", DEVICE_KEY_SCHEMA),
        **problem(409, "The device exists"),
    },
    openapi_extra=json_body(
        {
            "type": "object",
            "required": ["name"],
            "properties": {"name": _STRING, "binding": BINDING_SCHEMA},
        }
    ),
)
async def create_device(request: Request, city: CityDep, who: Admin) -> Response:
    """A new device gateway with a generated key, bound to what ``binding`` names."""
    require_metropole_admin(who, "device management")
    doc = await _object(request, city, {"name", "binding"})
    name = _string(doc, "name") or ""
    binding = binding_from_json(doc.get("binding"))
    key = await accounts.add_device(
        city.broker.store,
        who.name,
        name,
        binding,
        client_address(request.scope),
        dynamic_security(city.settings),
    )
    return _json({"name": name, "key": key, "binding": binding.to_json()}, 201)


_REASON = {"type": "object", "properties": {"reason": {**_STRING, "maxLength": 500}}}


@router.post(
    "/devices/{name}/rotate",
    summary="Give a device gateway a new key",
    responses=answer(200, "The new key (shown once); the old one is refused", DEVICE_KEY_SCHEMA),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _REASON}},
        }
    },
)
async def rotate_device(name: str, request: Request, city: CityDep, who: Admin) -> Response:
    """A new key for the device; the old one is refused from this moment. An optional
    ``reason`` goes on the audit log."""
    require_metropole_admin(who, "device management")
    reason = None
    if await request.body():
        doc = await _object(request, city, {"reason"})
        reason = _string(doc, "reason", required=False)
        if reason is not None and len(reason) > 500:
            raise BadRequestData("reason has at most 500 characters", "reason")
    store = city.broker.store
    key = await accounts.rotate_device(
        store,
        who.name,
        name,
        client_address(request.scope),
        reason,
        dynamic_security(city.settings),
    )
    device = next(d for d in await store.list_devices() if d.name == name)
    return _json({"name": name, "key": key, "binding": device.binding.to_json()})


@router.delete("/devices/{name}", status_code=204, summary="Revoke a device gateway")
async def revoke_device(name: str, request: Request, city: CityDep, who: Admin) -> Response:
    """Remove the device; its key is refused from this moment."""
    require_metropole_admin(who, "device management")
    await accounts.revoke_device(
        city.broker.store,
        who.name,
        name,
        client_address(request.scope),
        dynamic_security(city.settings),
    )
    return Response(status_code=204)
