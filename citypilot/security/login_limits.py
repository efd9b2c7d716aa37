"""Failed-login limits per account and per address, with exponential back-off.

Each failed attempt counts against the account name tried and the client address.
Once ``free`` failures are spent, a key is blocked for ``base_s`` seconds, doubling with each
further failure up to ``max_s``; while blocked, logins for it are refused before any
password is hashed, so a flood of guesses costs the server almost nothing. A success
clears the account's count (not the address's: an attacker holding one account must
not reset the count of an address guessing at others). A key quiet for ``forget_s``
is forgotten, and at most ``max_keys`` keys are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


@dataclass(frozen=True)
class Limit:
    """How many failures are free, and the back-off after them."""

    free: int
    base_s: float = 1.0
    max_s: float = 300.0


class BackOff:
    """Failure counts of one kind of key (account names, or addresses)."""

    def __init__(
        self,
        limit: Limit,
        forget_s: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.forget_s = forget_s
        self.max_keys = max_keys
        self.clock = clock
        self._keys: dict[str, _Failures] = {}

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        entry = self._keys.get(key)
        return max(0.0, entry.blocked_until - self.clock()) if entry else 0.0

    def failed(self, key: str) -> None:
        """Count a failure of ``key``; past the free ones, block it (doubling)."""
        now = self.clock()
        entry = self._keys.get(key)
        if entry is None or now - entry.last > self.forget_s:
            if len(self._keys) >= self.max_keys:
                self._prune(now)
            entry = self._keys[key] = _Failures()
        entry.count += 1
        entry.last = now
        over = entry.count - self.limit.free + 1
        if over > 0:
            delay = min(self.limit.max_s, self.limit.base_s * 2 ** min(over - 1, 30))
            entry.blocked_until = now + delay

    def clear(self, key: str) -> None:
        """Forget the failures of ``key``."""
        self._keys.pop(key, None)

    def _prune(self, now: float) -> None:
        self._keys = {k: v for k, v in self._keys.items() if now - v.last <= self.forget_s}
        if len(self._keys) >= self.max_keys:  # all recent: drop the oldest half
            keep = sorted(self._keys.items(), key=lambda kv: kv[1].last)[self.max_keys // 2 :]
            self._keys = dict(keep)


class LoginLimiter:
    """The failed-login limits of one server: per account name and per client address."""

    def __init__(
        self,
        per_account: Limit,
        per_address: Limit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accounts = BackOff(per_account, clock=clock)
        self.addresses = BackOff(per_address, clock=clock)

    def wait_s(self, username: str, address: str | None) -> float:
        """Seconds until this account may be tried from this address (0: now)."""
        by_address = self.addresses.wait_s(address) if address else 0.0
        return max(self.accounts.wait_s(username.casefold()), by_address)

    def failed(self, username: str, address: str | None) -> None:
        """Count a failed login of ``username`` from ``address``."""
        self.accounts.failed(username.casefold())
        if address:
            self.addresses.failed(address)

    def succeeded(self, username: str) -> None:
        """A successful login clears the account's failures."""
        self.accounts.clear(username.casefold())
