"""Bearer tokens for people (JWT, HS256) and keys for device gateways.

A person holds a short-lived access token and a longer-lived refresh token; both name
the account's ``token_version`` at issue, and the account's version moves on when it
is disabled or its role, grants or password change, which revokes every token made
before (see ``api.deps.checked``).
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


def issue_token(
    username: str, role: str, key: str, ttl_s: int, version: int = 0, kind: str = ACCESS
) -> str:
    """A signed bearer token (``kind`` access or refresh) for a person, valid ``ttl_s``
    seconds and only while the account's ``token_version`` is ``version``."""
    now = int(time.time())
    claims = {"sub": username, "role": role, "ver": version, "typ": kind, "iat": now}
    claims["exp"] = now + ttl_s
    if kind == REFRESH:
        claims["jti"] = secrets.token_urlsafe(12)  # two refreshes in one second differ
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
    return TokenClaims(
        str(claims["sub"]),
        str(claims.get("role", "viewer")),
        version if isinstance(version, int) else -1,
        float(claims["exp"]),
    )


def new_device_key() -> str:
    """A fresh random device key (shown once; only its hash is kept)."""
    return "cpd_" + secrets.token_urlsafe(32)


def hash_device_key(key: str) -> str:
    """The stored form of a device key: SHA-256 is enough for 256 random bits."""
    return hashlib.sha256(key.encode()).hexdigest()
