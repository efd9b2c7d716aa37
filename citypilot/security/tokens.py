"""Bearer tokens for people (JWT, HS256) and keys for device gateways."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

from citypilot.model.errors import Unauthorized
from citypilot.security.scopes import Grant

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a person with a role, or a device gateway (role ``device``).

    ``grants`` are the person's scoped roles (empty: ``role`` over the whole metropole).
    """

    name: str
    role: str
    grants: tuple[Grant, ...] = ()


def issue_token(username: str, role: str, key: str, ttl_s: int) -> str:
    """A signed bearer token for a person, valid ``ttl_s`` seconds."""
    now = int(time.time())
    return jwt.encode(
        {"sub": username, "role": role, "iat": now, "exp": now + ttl_s}, key, algorithm=ALGORITHM
    )


def read_token(token: str, key: str) -> tuple[Principal, float]:
    """The person a token names and when it expires; Unauthorized if forged or expired."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the bearer token has expired; log in again") from None
    except jwt.PyJWTError:
        raise Unauthorized("the bearer token is not valid") from None
    principal = Principal(str(claims["sub"]), str(claims.get("role", "viewer")))
    return principal, float(claims["exp"])


def new_device_key() -> str:
    """A fresh random device key (shown once; only its hash is kept)."""
    return "cpd_" + secrets.token_urlsafe(32)


def hash_device_key(key: str) -> str:
    """The stored form of a device key: SHA-256 is enough for 256 random bits."""
    return hashlib.sha256(key.encode()).hexdigest()
