"""Logging in: OAuth2 password form in, bearer token out; refresh tokens that rotate
(a reused one revokes its session, ``security.sessions``); logging out."""

from __future__ import annotations

import time
from dataclasses import replace
from math import ceil
from typing import Annotated

import orjson
from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from citypilot.api.audit import client_address
from citypilot.api.deps import CityDep, Viewer, checked, token_claims
from citypilot.api.openapi import answer, problem
from citypilot.model.errors import TooManyRequests, Unauthorized
from citypilot.security import audit, sessions
from citypilot.security.passwords import needs_rehash
from citypilot.security.tokens import REFRESH, issue_token
from citypilot.store.base import Account, Session

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
    session = await sessions.start(
        city.broker.store, account.username, city.settings.refresh_ttl_s, time.time()
    )
    return _tokens(city, account, session)


def _tokens(city: CityDep, account: Account, session: Session) -> Response:
    """A fresh access token, and the session's newest refresh token, for the account as
    it stands; the refresh token ends with the session."""
    settings, key = city.settings, city.signing_key
    name, role, version = account.username, account.role, account.token_version
    left = max(1, round(session.expires_at - time.time()))
    sid = session.id
    body = {
        "access_token": issue_token(name, role, key, settings.token_ttl_s, version, session=sid),
        "token_type": "bearer",
        "expires_in": settings.token_ttl_s,
        "refresh_token": issue_token(
            name, role, key, left, version, REFRESH, session=sid, token_id=session.token_id
        ),
        "refresh_expires_in": left,
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
        **problem(
            401,
            "The refresh token expired, was revoked, or was used already (which revokes "
            "its session): log in again",
        ),
    },
)
async def refresh(
    request: Request, city: CityDep, refresh_token: Annotated[str, Form(max_length=4096)]
) -> Response:
    """Exchange a refresh token for a new access token and a new refresh token, as long
    as the account is enabled and unchanged since the login (OAuth2 refresh grant). Each
    refresh token is good for one exchange: presenting it again revokes the session."""
    claims = token_claims(city, refresh_token, REFRESH)
    if claims.session is None:
        raise Unauthorized("this refresh token is from before sessions: log in again")
    city.forget_account(claims.username)  # a refresh reads the account afresh
    city.forget_session(claims.session)
    await checked(city, claims)
    try:
        session = await sessions.rotate(
            city.broker.store, claims, time.time(), client_address(request.scope)
        )
    finally:
        city.forget_session(claims.session)
    account = await city.broker.store.get_account(claims.username)
    assert account is not None  # checked just now
    return _tokens(city, account, session)


@router.post(
    "/logout",
    status_code=204,
    summary="Log out",
    responses=problem(401, "The refresh token is not valid"),
)
async def logout(
    request: Request, city: CityDep, refresh_token: Annotated[str, Form(max_length=4096)]
) -> Response:
    """End the session of a refresh token: it and every token of the session (the access
    tokens too, within ``account_check_s`` in other API processes) are refused from now.
    Ending an ended session again is no error."""
    claims = token_claims(city, refresh_token, REFRESH)
    await sessions.end(city.broker.store, claims, time.time(), client_address(request.scope))
    city.forget_session(claims.session)
    return Response(status_code=204)


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
