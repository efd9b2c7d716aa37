"""Logging in: OAuth2 password form in, bearer token out."""

from __future__ import annotations

from dataclasses import replace
from math import ceil
from typing import Annotated

import orjson
from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from citypilot.api.deps import CityDep, Viewer, checked, token_claims
from citypilot.api.openapi import answer, problem
from citypilot.model.errors import TooManyRequests, Unauthorized
from citypilot.security import audit
from citypilot.security.passwords import needs_rehash
from citypilot.security.tokens import REFRESH, issue_token
from citypilot.store.base import Account

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


TOKEN_SCHEMA = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in", "refresh_token", "role"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"enum": ["bearer"]},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": "string"},
        "refresh_expires_in": {"type": "integer"},
        "role": {"type": "string"},
    },
}


@router.post(
    "/token",
    summary="Log in",
    responses={
        **answer(200, "An access token and a refresh token", TOKEN_SCHEMA),
        **problem(401, "Unknown user name or wrong password"),
        **problem(429, "Too many failed logins for this account or address: see Retry-After"),
    },
)
async def token(
    request: Request,
    city: CityDep,
    username: Annotated[str, Form(max_length=128)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    """Exchange a user name and password for a bearer token (OAuth2 password grant).

    Failed logins back off per account and per client address (429 with Retry-After).
    """
    address = request.client.host if request.client else None
    wait = city.logins.wait_s(username, address)
    if wait > 0:
        raise TooManyRequests(
            f"too many failed logins for this account or address; retry in {ceil(wait)} s",
            ceil(wait),
            "username",
        )
    account = await city.broker.store.get_account(username)
    ok = await city.hashing.verify(account.password_hash if account else None, password)
    if not ok or account is None or account.disabled:
        city.logins.failed(username, address)
        await record_login(request, city, username, ok=False)
        raise Unauthorized("unknown user name or wrong password", "username")
    city.logins.succeeded(username)
    if needs_rehash(account.password_hash):
        new_hash = await city.hashing.hash(password)
        await city.broker.store.put_account(replace(account, password_hash=new_hash))
    await record_login(request, city, username, ok=True)
    return _tokens(city, account)


def _tokens(city: CityDep, account: Account) -> Response:
    """A fresh access token and refresh token for the account, as it stands."""
    settings, key = city.settings, city.signing_key
    name, role, version = account.username, account.role, account.token_version
    body = {
        "access_token": issue_token(name, role, key, settings.token_ttl_s, version),
        "token_type": "bearer",
        "expires_in": settings.token_ttl_s,
        "refresh_token": issue_token(name, role, key, settings.refresh_ttl_s, version, REFRESH),
        "refresh_expires_in": settings.refresh_ttl_s,
        "role": role,
    }
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"}
    )


@router.post(
    "/refresh",
    summary="Refresh an access token",
    responses={
        **answer(200, "A new access token and refresh token", TOKEN_SCHEMA),
        **problem(401, "The refresh token expired or was revoked: log in again"),
    },
)
async def refresh(city: CityDep, refresh_token: Annotated[str, Form(max_length=4096)]) -> Response:
    """Exchange a refresh token for a new access token (and a new refresh token), as
    long as the account is enabled and unchanged since the login (OAuth2 refresh grant)."""
    claims = token_claims(city, refresh_token, REFRESH)
    city.forget_account(claims.username)  # a refresh reads the account afresh
    await checked(city, claims)
    account = await city.broker.store.get_account(claims.username)
    assert account is not None  # checked just now
    return _tokens(city, account)


async def record_login(request: Request, city: CityDep, username: str, ok: bool) -> None:
    """Put a login attempt on the audit log (``login`` or ``login.failed``)."""
    await audit.record(
        city.broker.store,
        username,
        "login" if ok else "login.failed",
        client=request.client.host if request.client else None,
        outcome="ok" if ok else "denied",
    )


@router.get("/me", summary="Who am I")
async def me(who: Viewer) -> Response:
    """The name and role behind the bearer token."""
    return Response(
        orjson.dumps({"username": who.name, "role": who.role}), media_type="application/json"
    )
