"""Login sessions: refresh tokens that rotate, with reuse detection.

A login starts a *session* (a refresh token family, OAuth 2.0 Security BCP, RFC 9700
§4.14.2): each refresh token names its session (``sid``) and its own id (``jti``), and
only the newest one of the session may be exchanged. An exchange rotates it: the answer
holds a new refresh token and the old one is spent. Presenting a spent one means two
parties hold the session's tokens (a thief and the person), so the whole session is
revoked — every refresh token of it, and the access tokens naming it — and the reuse is
on the audit log. A logout revokes the session too. The store keeps one small row per
session (``sessions``: id, person, newest token id, times, revocation).
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from citypilot.model.errors import Unauthorized
from citypilot.security import audit
from citypilot.security.tokens import TokenClaims
from citypilot.store.base import Session, Store

#: Why a session ended.
LOGOUT, REUSE = "logout", "refresh token reused"


def _token_id() -> str:
    return secrets.token_urlsafe(16)


async def start(store: Store, username: str, lifetime_s: int, now: float) -> Session:
    """A new session for a person who just logged in, lasting ``lifetime_s``."""
    session = Session(_token_id(), username, _token_id(), now, now + lifetime_s)
    await store.put_session(session)
    return session


async def _live(store: Store, claims: TokenClaims) -> Session:
    """The unrevoked session a refresh token names (Unauthorized otherwise)."""
    session = None if claims.session is None else await store.get_session(claims.session)
    if session is None or session.username != claims.username:
        raise Unauthorized("the refresh token belongs to no session; log in again")
    if session.revoked_at is not None:
        raise Unauthorized(f"this session has ended ({session.revoked_reason}); log in again")
    return session


async def rotate(
    store: Store, claims: TokenClaims, now: float, client: str | None = None
) -> Session:
    """Spend the refresh token of ``claims`` for the session with a new newest token.

    A token that is not the session's newest — spent already, or beaten to it by a
    concurrent exchange of the same token — revokes the session (Unauthorized).
    """
    session = await _live(store, claims)
    fresh = _token_id()
    if claims.token_id == session.token_id and await store.rotate_session(
        session.id, session.token_id, fresh
    ):
        return replace(session, token_id=fresh)
    if await store.revoke_session(session.id, REUSE, now):
        await audit.record(
            store,
            claims.username,
            "session.reuse",
            target=session.id,
            client=client,
            outcome="denied",
            detail={"reason": "a spent refresh token was presented: the session is revoked"},
        )
    raise Unauthorized("this refresh token was used already: its session is revoked; log in again")


async def end(store: Store, claims: TokenClaims, now: float, client: str | None = None) -> None:
    """Log out: revoke the session the refresh token names (once; again is no error)."""
    session = None if claims.session is None else await store.get_session(claims.session)
    if session is None or session.username != claims.username:
        raise Unauthorized("the refresh token belongs to no session")
    if await store.revoke_session(session.id, LOGOUT, now):
        await audit.record(store, claims.username, "logout", target=session.id, client=client)


async def is_revoked(store: Store, session_id: str) -> bool:
    """Whether the session was revoked (a session the store does not hold counts as
    revoked: its tokens were issued against another store or it expired and went)."""
    session = await store.get_session(session_id)
    return session is None or session.revoked_at is not None
