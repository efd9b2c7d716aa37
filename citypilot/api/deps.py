"""Dependencies the routers share: the running city, and who is calling with which role."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from citypilot.api.openapi import BEARER, DEVICE_KEY, gate
from citypilot.broker import Broker
from citypilot.config import Settings
from citypilot.model.errors import CityPilotError, Forbidden, ServiceUnavailable, Unauthorized
from citypilot.publish.gtfs_static import StaticFeed
from citypilot.security import sessions
from citypilot.security.login_limits import Limit, LoginLimiter
from citypilot.security.oidc import OidcVerifier, group_grants, is_external
from citypilot.security.passwords import HashSlots
from citypilot.security.public import ANONYMOUS, is_anonymous, public_visibility
from citypilot.security.roles import role_allows
from citypilot.security.scopes import (
    TypePolicy,
    Visibility,
    effective_grants,
    sees_personal,
    visibility,
)
from citypilot.security.tokens import ACCESS, Principal, TokenClaims, hash_device_key, read_token
from citypilot.store.base import Account

log = logging.getLogger(__name__)
T = TypeVar("T")
DEVICE_KEY_HEADER = "x-device-key"
_TOKEN_CACHE_SIZE = 10_000


@dataclass
class City:
    """Everything a request handler may need, built once at start-up."""

    settings: Settings
    broker: Broker
    signing_key: str
    # -- device commands (engine/commands.py, ingest/http_commands.py) --
    commands: Any = None
    command_callbacks: Any = None
    # -- alarms and rules (engine/alarms.py, engine/rules.py) --
    alarms: Any = None
    rules: Any = None
    # -- city modes (engine/modes.py) --
    modes: Any = None
    # -- the road graph (ops/routing.py) and its closures (ops/closures.py), when present --
    routing: Any = None
    closures: Any = None
    # -- the NGSI-LD data space (api/tenants.py): its tenant (None: the default one),
    # its rendered entities (api/entity_cache.py, None: not cached) and its notifier --
    tenant: str | None = None
    entity_cache: Any = None
    notifier: Any = None
    #: token -> its verified claims (until it expires): one signature check per token
    token_cache: dict[str, TokenClaims] = field(default_factory=dict)
    #: username -> (account or None, monotonic expiry): accounts as last read
    account_cache: dict[str, tuple[Account | None, float]] = field(default_factory=dict)
    #: session id -> (revoked, monotonic expiry): login sessions as last read
    session_cache: dict[str, tuple[bool, float]] = field(default_factory=dict)
    #: running parts other than the store and bus, by name ("mqtt"), for health checks
    components: dict[str, Any] = field(default_factory=dict)
    #: failed-login back-off per account and per address (security/login_limits.py)
    logins: LoginLimiter = field(init=False)
    #: argon2 off the event loop, a few at a time
    hashing: HashSlots = field(init=False)
    #: the identity provider's token checks, when one is configured
    oidc: OidcVerifier | None = field(init=False)

    def forget_account(self, username: str) -> None:
        """Read the account afresh on its next request (it was just changed here)."""
        self.account_cache.pop(username, None)

    def forget_session(self, session_id: str | None) -> None:
        """Read the session afresh on its next request (it was just revoked here)."""
        if session_id is not None:
            self.session_cache.pop(session_id, None)

    def __post_init__(self) -> None:
        s = self.settings
        self.logins = LoginLimiter(
            Limit(s.login_free_failures_per_account, max_s=s.login_max_backoff_s),
            Limit(s.login_free_failures_per_address, max_s=s.login_max_backoff_s),
        )
        self.hashing = HashSlots(s.password_hash_slots)
        self.oidc = None
        if s.oidc_issuer:
            self.oidc = OidcVerifier(
                s.oidc_issuer,
                s.oidc_audience,
                s.oidc_jwks_url,
                group_grants(s.oidc_group_grants),
                s.oidc_groups_claim,
                s.oidc_username_claim,
                jwks_cache_s=s.oidc_jwks_cache_s,
            )


async def resolved(value: T | Awaitable[T]) -> T:
    """The result of an engine service's read: synchronous when the engine runs in this
    process, a call to the engine worker otherwise (``engine/remote.py``)."""
    return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]


def static_feed(app: Any) -> StaticFeed:
    """The static GTFS of this app's data directory (zip and index, made on first use)."""
    state = app.state
    feed = getattr(state, "gtfs_static", None)
    if feed is None:
        feed = state.gtfs_static = StaticFeed(state.city.settings.data_path / "gtfs")
    return feed


def city_of(request: Request) -> City:
    """The running city of this app."""
    return request.app.state.city


async def get_city(request: Request) -> City:
    """The running city, as a dependency (async: FastAPI runs a sync one on a thread)."""
    return request.app.state.city


CityDep = Annotated[City, Depends(get_city)]


def token_claims(city: City, token: str | None, kind: str = ACCESS) -> TokenClaims:
    """The verified claims of a bearer token (Unauthorized when absent, bad or expired).

    Verified access tokens are remembered until they expire, so a busy client does not
    pay for a signature check on every request.
    """
    if not token:
        raise Unauthorized("this needs a bearer token: POST /api/v1/auth/token to get one")
    cached = city.token_cache.get(token) if kind == ACCESS else None
    if cached is not None and cached.expires > time.time():
        return cached
    claims = read_token(token, city.signing_key, kind)
    if kind == ACCESS:
        if len(city.token_cache) >= _TOKEN_CACHE_SIZE:
            city.token_cache.clear()
        city.token_cache[token] = claims
    return claims


#: Retry-After of a request whose credential cannot be checked (the store is away).
_CREDENTIAL_RETRY_S = 1


async def _from_store(lookup: Awaitable[T]) -> T:
    """A credential lookup in the store; 503 with Retry-After while the store does not
    answer (a restart), never a 500 nor a credential taken on trust."""
    try:
        return await lookup
    except CityPilotError:
        raise
    except Exception as exc:
        log.warning("credential lookup failed (%s): answering 503", type(exc).__name__)
        raise ServiceUnavailable(
            "the credential cannot be checked right now (the store does not answer); "
            f"retry in {_CREDENTIAL_RETRY_S} s",
            _CREDENTIAL_RETRY_S,
        ) from None


async def account_of(city: City, username: str) -> Account | None:
    """The account as stored, read at most every ``account_check_s`` per person (and at
    once after a change made through this process)."""
    now = time.monotonic()
    cached = city.account_cache.get(username)
    if cached is None or cached[1] < now:
        account = await _from_store(city.broker.store.get_account(username))
        if len(city.account_cache) >= _TOKEN_CACHE_SIZE:
            city.account_cache.clear()
        cached = city.account_cache[username] = (
            account,
            now + city.settings.account_check_s,
        )
    return cached[0]


async def session_revoked(city: City, session_id: str) -> bool:
    """Whether a login session was revoked (logout, refresh token reuse), read at most
    every ``account_check_s`` per session (and at once after a revocation here)."""
    now = time.monotonic()
    cached = city.session_cache.get(session_id)
    if cached is None or cached[1] < now:
        revoked = await _from_store(sessions.is_revoked(city.broker.store, session_id))
        if len(city.session_cache) >= _TOKEN_CACHE_SIZE:
            city.session_cache.clear()
        cached = city.session_cache[session_id] = (revoked, now + city.settings.account_check_s)
    return cached[0]


async def checked(city: City, claims: TokenClaims) -> Principal:
    """The person behind verified claims, as their account stands now: its role and
    grants, not the token's; Unauthorized when the account is gone or disabled, or was
    changed since the token was issued (role, grants, password: its tokens are revoked),
    or the token's login session was revoked (signed out, or a refresh token reused)."""
    account = await account_of(city, claims.username)
    if account is None or account.disabled:
        raise Unauthorized(f"the account {claims.username!r} is disabled or no longer exists")
    if account.token_version != claims.version:
        raise Unauthorized(
            "this token was revoked (the account's role, grants or password changed); log in again"
        )
    if claims.session is not None and await session_revoked(city, claims.session):
        raise Unauthorized(
            "this session has ended (signed out, or a refresh token was reused); log in again"
        )
    return Principal(account.username, account.role, account.grants)


async def authenticate(city: City, token: str | None) -> tuple[Principal, float]:
    """The person behind a bearer token and when it expires: a local access token
    checked against its account, or an identity provider's token (``security.oidc``)."""
    if token and city.oidc is not None and is_external(token):
        return await city.oidc.principal(token)
    claims = token_claims(city, token)
    return await checked(city, claims), claims.expires


async def principal_from_token(city: City, token: str | None) -> Principal:
    """The person behind a bearer token (see ``authenticate``)."""
    return (await authenticate(city, token))[0]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def person_in_role(request: Request, role: str) -> Principal:
    """The person behind the request's bearer token, if their role allows ``role``."""
    principal = await principal_from_token(city_of(request), _bearer(request))
    request.state.principal = principal  # who is calling, for the audit log
    if not role_allows(principal.role, role):
        raise Forbidden(f"this needs the role {role!r}; {principal.name!r} is {principal.role!r}")
    return principal


def require_role(role: str):
    """A dependency that admits people whose role allows ``role``."""

    @gate(role, BEARER)
    async def dependency(request: Request) -> Principal:
        return await person_in_role(request, role)

    return Depends(dependency)


@gate("viewer", BEARER, public=True)
async def viewer_or_public(request: Request) -> Principal:
    """Admit a person with the viewer role or, where the city opened reads of some
    types (``public_read_types``), a caller without any credential, as ANONYMOUS."""
    if city_of(request).settings.public_read_types and "authorization" not in request.headers:
        request.state.principal = ANONYMOUS
        return ANONYMOUS
    return await person_in_role(request, "viewer")


# -- authorization: what the caller's grants cover ------------------------------
def require_metropole_admin(who: Principal, what: str) -> None:
    """Forbidden unless ``who`` is an admin over the whole metropole."""
    grants = effective_grants(who.role, who.grants)
    if not any(g.is_metropole and role_allows(g.role, "admin") for g in grants):
        raise Forbidden(f"{what} is for admins of the whole metropole; {who.name!r} is not")


def access(city: City, principal: Principal, needed: str) -> Visibility:
    """The entities ``principal`` may see (``viewer``) or change (``operator``); an
    anonymous caller sees the public types only (``security.public``)."""
    policy = TypePolicy.of(city.broker.registry)
    if is_anonymous(principal):
        return public_visibility(city.settings.public_read_types, policy, needed)
    return visibility(principal.role, principal.grants, needed, policy)


def personal_access(city: City, principal: Principal) -> Visibility:
    """The entities whose personal identifiers ``principal`` may see unmasked."""
    return sees_personal(principal.role, principal.grants, TypePolicy.of(city.broker.registry))


@gate("operator", BEARER, DEVICE_KEY)
async def device_or_operator(request: Request) -> Principal:
    """Admit a device gateway by its key, or a person with the operator role."""
    city = city_of(request)
    key = request.headers.get(DEVICE_KEY_HEADER)
    if key:
        # looked up on every request (a primary-key read; ingest requests are batches),
        # so a rotated or revoked key is refused at once, whoever changed it
        device = await _from_store(city.broker.store.get_device(hash_device_key(key)))
        if device is None:
            raise Unauthorized("the device key is not valid")
        request.state.principal = Principal(device.name, "device", binding=device.binding)
        return request.state.principal
    token = _bearer(request)
    if not token:
        raise Unauthorized(
            f"ingest needs a device key in the {DEVICE_KEY_HEADER} header "
            "or an operator's bearer token"
        )
    principal = await principal_from_token(city, token)
    if not role_allows(principal.role, "operator"):
        raise Forbidden(
            f"ingest needs a device key or the role 'operator'; {principal.name!r} "
            f"is {principal.role!r}"
        )
    request.state.principal = principal
    return principal


Viewer = Annotated[Principal, require_role("viewer")]
#: a viewer, or an anonymous caller where the city made some types public
Reader = Annotated[Principal, Depends(viewer_or_public)]
Operator = Annotated[Principal, require_role("operator")]
Admin = Annotated[Principal, require_role("admin")]
Ingestor = Annotated[Principal, Depends(device_or_operator)]
