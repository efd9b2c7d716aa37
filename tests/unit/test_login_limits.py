"""Failed-login back-off per account and per address, on a clock the test moves."""

from __future__ import annotations

import asyncio
import threading

from citypilot.security import passwords
from citypilot.security.login_limits import Limit, LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> LoginLimiter:
    return LoginLimiter(Limit(3, base_s=1, max_s=8), Limit(5, base_s=1, max_s=8), clock=clock)


def test_an_account_backs_off_after_its_free_failures_doubling_up_to_the_maximum():
    clock = Clock()
    limits = limiter(clock)
    waits = []
    for _ in range(8):
        limits.failed("alice", None)
        waits.append(limits.wait_s("alice", None))
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8]
    assert limits.wait_s("bob", None) == 0  # another account is not held back
    clock.now += 8
    assert limits.wait_s("alice", None) == 0


def test_a_success_clears_the_account_but_not_the_address():
    clock = Clock()
    limits = limiter(clock)
    for name in ("a", "b", "c", "d", "e", "alice", "alice"):
        limits.failed(name, "203.0.113.9")
    assert limits.wait_s("zed", "203.0.113.9") == 4  # 7 failures from it, 5 free
    limits.succeeded("alice")
    assert limits.accounts.wait_s("alice") == 0
    assert limits.wait_s("zed", "203.0.113.9") == 4
    assert limits.wait_s("zed", "198.51.100.1") == 0


def test_account_names_are_counted_whatever_their_case():
    clock = Clock()
    limits = limiter(clock)
    for name in ("Alice", "ALICE", "aLiCe"):
        limits.failed(name, None)
    assert limits.wait_s("alice", None) == 1


def test_failures_are_forgotten_after_a_quiet_while():
    clock = Clock()
    limits = limiter(clock)
    for _ in range(2):
        limits.failed("alice", None)
    clock.now += limits.accounts.forget_s + 1
    limits.failed("alice", None)
    assert limits.wait_s("alice", None) == 0  # a first failure again


def test_the_table_of_keys_stays_bounded():
    clock = Clock()
    limits = limiter(clock)
    limits.addresses.max_keys = 100
    for i in range(1000):
        clock.now += 0.001
        limits.failed(f"user{i}", f"10.0.{i // 256}.{i % 256}")
    assert len(limits.addresses._keys) <= 100


def test_passwords_are_checked_off_the_event_loop(monkeypatch):
    threads = []

    def verify(password_hash, password):
        threads.append(threading.get_ident())
        return password == "right"

    monkeypatch.setattr(passwords, "verify_password", verify)

    async def check() -> tuple[bool, bool]:
        slots = passwords.HashSlots(1)
        return await asyncio.gather(slots.verify("h", "right"), slots.verify("h", "wrong"))

    assert asyncio.run(check()) == [True, False]
    assert threads and threading.get_ident() not in threads


def test_a_hash_of_older_parameters_is_replaced_at_the_next_login():
    from argon2 import PasswordHasher

    older = PasswordHasher().hash("an-old-password")  # argon2-cffi's defaults
    assert passwords.verify_password(older, "an-old-password")
    assert passwords.needs_rehash(older)
    assert not passwords.needs_rehash(passwords.hash_password("an-old-password"))
