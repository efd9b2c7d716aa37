"""Sign-in with an external identity provider (OpenID Connect), beside local users.

A client signs in at the provider and sends its token (an ID or access token, a JWT
signed with the provider's keys) as ``Authorization: Bearer``. CityPilot checks the
signature against the provider's JWKS, the issuer, the audience and the expiry, then
maps the token's groups to CityPilot grants (``oidc_group_grants``): the person holds
the grants of every group they are in, and a role no higher than the highest of them.
A token none of whose groups maps to a grant is refused (403).

The JWKS is fetched from ``oidc_jwks_url`` (or the ``jwks_uri`` of the issuer's
``/.well-known/openid-configuration``), kept ``oidc_jwks_cache_s``, and fetched again
(at most every 30 s) when a token names a key it does not hold, so the provider can
roll its keys. Revocation is the provider's: its tokens are short-lived.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from citypilot.model.errors import Forbidden, Unauthorized
from citypilot.security.roles import ROLES
from citypilot.security.scopes import Grant, grant_from_json
from citypilot.security.tokens import Principal

#: Local tokens are HS256; a token signed otherwise is the provider's.
LOCAL_ALGORITHM = "HS256"
_REFETCH_S = 30.0


def is_external(token: str) -> bool:
    """Whether a bearer token is signed by an identity provider (not by CityPilot)."""
    try:
        return jwt.get_unverified_header(token).get("alg") != LOCAL_ALGORITHM
    except jwt.PyJWTError:
        return False


def group_grants(mapping: dict[str, Any]) -> dict[str, tuple[Grant, ...]]:
    """``oidc_group_grants`` read: each group's grants (ValueError naming a bad one)."""
    out = {}
    for group, grants in mapping.items():
        docs = grants if isinstance(grants, list) else [grants]
        try:
            out[group] = tuple(grant_from_json(g, f"oidc_group_grants.{group}") for g in docs)
        except Exception as exc:
            raise ValueError(getattr(exc, "detail", str(exc))) from None
    return out


class OidcVerifier:
    """Checks provider tokens and maps their groups to grants."""

    def __init__(
        self,
        issuer: str,
        audience: str | None,
        jwks_url: str | None,
        grants_by_group: dict[str, tuple[Grant, ...]],
        groups_claim: str = "groups",
        username_claim: str = "preferred_username",
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        jwks_cache_s: float = 300.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.grants_by_group = grants_by_group
        self.groups_claim = groups_claim
        self.username_claim = username_claim
        self.algorithms = [a for a in algorithms if a != LOCAL_ALGORITHM]
        self.jwks_cache_s = jwks_cache_s
        self._keys: dict[str, Any] = {}
        self._fetched = -1e9
        #: token -> (principal, expiry): one signature check per token
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def _jwks(self, refetch: bool) -> dict[str, Any]:
        now = time.monotonic()
        stale = now - self._fetched > self.jwks_cache_s
        if stale or (refetch and now - self._fetched > _REFETCH_S):
            self._fetched = now
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    url = self.jwks_url or await self._discover(client)
                    answer = await client.get(url)
                    answer.raise_for_status()
                    keys = jwt.PyJWKSet.from_dict(answer.json()).keys
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                if not self._keys:
                    raise Unauthorized(
                        f"the identity provider's keys cannot be fetched: {exc}"
                    ) from None
                return self._keys  # keep the keys we have
            self._keys = {k.key_id: k for k in keys if k.key_id}
        return self._keys

    async def _discover(self, client: httpx.AsyncClient) -> str:
        answer = await client.get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        answer.raise_for_status()
        return str(answer.json()["jwks_uri"])

    async def principal(self, token: str) -> tuple[Principal, float]:
        """The person a provider token names, with the grants of their groups, and when
        the token expires; Unauthorized (bad token) or Forbidden (no mapped group)."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not valid") from None
        keys = await self._jwks(refetch=False)
        if kid not in keys:
            keys = await self._jwks(refetch=True)
        if kid not in keys:
            raise Unauthorized("the token is signed with a key the identity provider does not list")
        try:
            claims = jwt.decode(
                token,
                keys[kid].key,
                algorithms=self.algorithms,
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iss", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the identity provider's token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the identity provider's token is not valid: {exc}") from None
        result = (self._map(claims), float(claims["exp"]))
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = result
        return result

    def _map(self, claims: dict[str, Any]) -> Principal:
        name = str(claims.get(self.username_claim) or claims["sub"])
        groups = claims.get(self.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        grants = tuple(
            g
            for group in groups
            if isinstance(group, str)
            for g in self.grants_by_group.get(group, ())
        )
        if not grants:
            raise Forbidden(
                f"none of the groups of {name!r} ({', '.join(map(str, groups)) or 'none'}) "
                "maps to a CityPilot role"
            )
        role = max((g.role for g in grants), key=ROLES.index)
        return Principal(f"oidc:{name}", role, tuple(dict.fromkeys(grants)))
