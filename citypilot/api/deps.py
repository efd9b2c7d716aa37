"""Dependencies the routers share: the running city, and who is calling with which role."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import Depends, Request

from citypilot.api.openapi import BEARER, DEVICE_KEY, gate
from citypilot.broker import Broker
from citypilot.config import Settings
from citypilot.model.errors import Forbidden, Unauthorized
from citypilot.publish.gtfs_static import StaticFeed
from citypilot.security.login_limits import Limit, LoginLimiter
from citypilot.security.passwords import HashSlots
from citypilot.security.roles import role_allows
from citypilot.security.scopes import TypePolicy, Visibility, sees_personal, visibility
from citypilot.security.tokens import Principal, hash_device_key, read_token

DEVICE_KEY_HEADER = "x-device-key"
_DEVICE_CACHE_S = 60.0
_TOKEN_CACHE_SIZE = 10_000


@dataclass
class City:
    """Everything a request handler may need, built once at start-up."""

    settings: Settings
    broker: Broker
    signing_key: str
    device_cache: dict[str, tuple[str, float]] = field(default_factory=dict)
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
    token_cache: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    #: username -> (grants, monotonic expiry): scoped grants read from the store
    grant_cache: dict[str, tuple[tuple, float]] = field(default_factory=dict)
    #: running parts other than the store and bus, by name ("mqtt"), for health checks
    components: dict[str, Any] = field(default_factory=dict)
    #: failed-login back-off per account and per address (security/login_limits.py)
    logins: LoginLimiter = field(init=False)
    #: argon2 off the event loop, a few at a time
    hashing: HashSlots = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.logins = LoginLimiter(
            Limit(s.login_free_failures_per_account, max_s=s.login_max_backoff_s),
            Limit(s.login_free_failures_per_address, max_s=s.login_max_backoff_s),
        )
        self.hashing = HashSlots(s.password_hash_slots)


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


def principal_from_token(city: City, token: str | None) -> Principal:
    """The person behind a bearer token (Unauthorized when absent or bad).

    Verified tokens are remembered until they expire, so a busy client does not
    pay for a signature check on every request.
    """
    if not token:
        raise Unauthorized("this needs a bearer token: POST /api/v1/auth/token to get one")
    cached = city.token_cache.get(token)
    if cached is not None and cached[1] > time.time():
        return cached[0]
    principal, expires = read_token(token, city.signing_key)
    if len(city.token_cache) >= _TOKEN_CACHE_SIZE:
        city.token_cache.clear()
    city.token_cache[token] = (principal, expires)
    return principal


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def require_role(role: str):
    """A dependency that admits people whose role allows ``role``."""

    @gate(role, BEARER)
    async def dependency(request: Request) -> Principal:
        city = city_of(request)
        principal = await with_grants(city, principal_from_token(city, _bearer(request)))
        request.state.principal = principal  # who is calling, for the audit log
        if not role_allows(principal.role, role):
            raise Forbidden(
                f"this needs the role {role!r}; {principal.name!r} is {principal.role!r}"
            )
        return principal

    return Depends(dependency)


# -- authorization: what the caller's grants cover ------------------------------
_GRANT_CACHE_S = 5.0


async def with_grants(city: City, principal: Principal) -> Principal:
    """The principal with the scoped grants of its account (as kept in the store; read
    at most every few seconds per person, so a changed grant applies within them)."""
    if principal.grants or principal.role == "device":
        return principal
    now = time.monotonic()
    cached = city.grant_cache.get(principal.name)
    if cached is None or cached[1] < now:
        account = await city.broker.store.get_account(principal.name)
        grants = account.grants if account is not None else ()
        if len(city.grant_cache) >= _TOKEN_CACHE_SIZE:
            city.grant_cache.clear()
        cached = city.grant_cache[principal.name] = (grants, now + _GRANT_CACHE_S)
    return replace(principal, grants=cached[0]) if cached[0] else principal


def access(city: City, principal: Principal, needed: str) -> Visibility:
    """The entities ``principal`` may see (``viewer``) or change (``operator``)."""
    policy = TypePolicy.of(city.broker.registry)
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
        key_hash = hash_device_key(key)
        cached = city.device_cache.get(key_hash)
        if cached is not None and cached[1] > time.monotonic():
            request.state.principal = Principal(cached[0], "device")
            return request.state.principal
        name = await city.broker.store.device_for_key(key_hash)
        if name is None:
            raise Unauthorized("the device key is not valid")
        city.device_cache[key_hash] = (name, time.monotonic() + _DEVICE_CACHE_S)
        request.state.principal = Principal(name, "device")
        return request.state.principal
    token = _bearer(request)
    if not token:
        raise Unauthorized(
            f"ingest needs a device key in the {DEVICE_KEY_HEADER} header "
            "or an operator's bearer token"
        )
    principal = principal_from_token(city, token)
    if not role_allows(principal.role, "operator"):
        raise Forbidden(
            f"ingest needs a device key or the role 'operator'; {principal.name!r} "
            f"is {principal.role!r}"
        )
    principal = await with_grants(city, principal)
    request.state.principal = principal
    return principal


Viewer = Annotated[Principal, require_role("viewer")]
Operator = Annotated[Principal, require_role("operator")]
Admin = Annotated[Principal, require_role("admin")]
Ingestor = Annotated[Principal, Depends(device_or_operator)]
