"""Bearer tokens for people (JWT, HS256) and keys for device gateways.

A person holds a short-lived access token and a longer-lived refresh token; both name
the account's ``token_version`` at issue, and the account's version moves on when it
is disabled or its role, grants or password change, which revokes every token made
before (see ``api.deps.checked``). Both name the login's session too (``sid``), and a
refresh token its own id (``jti``): see ``security.sessions``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

from citypilot.model.errors import Unauthorized
from citypilot.security.devices import DeviceBinding
from citypilot.security.scopes import Grant

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a person with a role, or a device gateway (role ``device``).

    ``grants`` are the person's scoped roles (empty: ``role`` over the whole metropole);
    ``binding`` what a device may write (None for a person).
    """

    name: str
    role: str
    grants: tuple[Grant, ...] = ()
    binding: DeviceBinding | None = None


ACCESS, REFRESH = "access", "refresh"


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: whose it is, of which account version, until when."""

    username: str
    role: str
    version: int
    expires: float
    #: the login session (None: a token from before sessions existed)
    session: str | None = None
    #: a refresh token's own id within its session
    token_id: str | None = None


def issue_token(
    username: str,
    role: str,
    key: str,
    ttl_s: int,
    version: int = 0,
    kind: str = ACCESS,
    session: str | None = None,
    token_id: str | None = None,
) -> str:
    """A signed bearer token (``kind`` access or refresh) for a person, valid ``ttl_s``
    seconds and only while the account's ``token_version`` is ``version`` (and, naming
    ``session``, while that session is not revoked)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": username, "role": role, "ver": version, "typ": kind}
    claims.update(iat=now, exp=now + ttl_s)
    if session is not None:
        claims["sid"] = session
    if kind == REFRESH:
        claims["jti"] = token_id or secrets.token_urlsafe(12)
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def read_token(token: str, key: str, kind: str = ACCESS) -> TokenClaims:
    """The claims of a token of ``kind``; Unauthorized if forged, expired or of the
    other kind (a refresh token is no access token)."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        what = "refresh token" if kind == REFRESH else "bearer token"
        raise Unauthorized(f"the {what} has expired; log in again") from None
    except jwt.PyJWTError:
        raise Unauthorized("the bearer token is not valid") from None
    if claims.get("typ", ACCESS) != kind:
        raise Unauthorized(f"this is not an {kind} token")
    version = claims.get("ver", 0)
    session, token_id = claims.get("sid"), claims.get("jti")
    return TokenClaims(
        str(claims["sub"]),
        str(claims.get("role", "viewer")),
        version if isinstance(version, int) else -1,
        float(claims["exp"]),
        session if isinstance(session, str) else None,
        token_id if isinstance(token_id, str) else None,
    )


def new_device_key() -> str:
    """A fresh random device key (shown once; only its hash is kept)."""
    return "cpd_" + secrets.token_urlsafe(32)


def hash_device_key(key: str) -> str:
    """The stored form of a device key: SHA-256 is enough for 256 random bits."""
    return hashlib.sha256(key.encode()).hexdigest()
