"""A live stream ends with its credential (when the token expires, or when its account
is disabled or changed), and a credential the store cannot check is refused with 503."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from citypilot.api.stream import _credential_end
from citypilot.security.tokens import issue_token
from citypilot.store.base import Account

KEY = "k" * 40


class Accounts:
    def __init__(self, account: Account) -> None:
        self.account = account

    async def get_account(self, username: str) -> Account | None:
        return self.account


def city(account: Account) -> SimpleNamespace:
    return SimpleNamespace(
        settings=SimpleNamespace(account_check_s=0.0),
        signing_key=KEY,
        token_cache={},
        account_cache={},
        oidc=None,
        broker=SimpleNamespace(store=Accounts(account)),
    )


def test_the_stream_credential_ends_when_the_token_expires():
    account = Account("ana", "h", "viewer")
    token = issue_token("ana", "viewer", KEY, ttl_s=1)
    error = asyncio.run(asyncio.wait_for(_credential_end(city(account), token), 10))
    assert error.status == 401 and "expired" in error.detail


def test_the_stream_credential_ends_when_the_account_is_disabled():
    account = Account("ana", "h", "viewer")
    here = city(account)
    token = issue_token("ana", "viewer", KEY, ttl_s=600)

    async def scenario():
        watcher = asyncio.create_task(_credential_end(here, token))
        await asyncio.sleep(0.1)
        assert not watcher.done()  # still valid
        here.broker.store.account = Account("ana", "h", "viewer", disabled=True)
        return await asyncio.wait_for(watcher, 10)

    error = asyncio.run(scenario())
    assert error.status == 401 and "disabled" in error.detail


def test_a_credential_that_cannot_be_checked_is_a_503_not_a_500_nor_trusted():
    from citypilot.api.deps import account_of

    class Away:
        async def get_account(self, username: str) -> Account | None:
            raise ConnectionError("the database is restarting")

    here = city(Account("ana", "h", "viewer"))
    here.broker.store = Away()
    try:
        asyncio.run(account_of(here, "ana"))
    except Exception as exc:
        assert exc.status == 503 and exc.extra["retryAfter"] == 1
    else:
        raise AssertionError("an unreachable store admitted the credential")
