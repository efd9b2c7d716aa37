"""Logging in: OAuth2 password form in, bearer token out."""

from __future__ import annotations

from dataclasses import replace
from math import ceil
from typing import Annotated

import orjson
from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from citypilot.api.deps import CityDep, Viewer
from citypilot.api.openapi import problem
from citypilot.model.errors import TooManyRequests, Unauthorized
from citypilot.security import audit
from citypilot.security.passwords import needs_rehash
from citypilot.security.tokens import issue_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post(
    "/token",
    summary="Log in",
    responses={
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
    ttl = city.settings.token_ttl_s
    body = {
        "access_token": issue_token(account.username, account.role, city.signing_key, ttl),
        "token_type": "bearer",
        "expires_in": ttl,
        "role": account.role,
    }
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"}
    )


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
