"""Password hashing with argon2id, at OWASP's recommended minimum cost: 19 MiB of memory,
2 passes, 1 lane (about 35 ms of one core). argon2-cffi's default (64 MiB, 3 passes, 4
lanes on 4 threads) took 7 times the CPU and every core at once, so that a few logins a
second slowed every other request (docs/benchmarks.md, ``bench login``).

A hash made with other parameters still verifies, and is replaced at its next
successful login (``needs_rehash``). The server hashes on worker threads, a few at a
time (``HashSlots``), never on the event loop.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
#: A hash checked when the user does not exist, so timing does not reveal user names.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    """The argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches the hash (None: an unknown user, always False)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with other parameters than today's."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


class HashSlots:
    """At most ``slots`` password hashes at once, each on a worker thread."""

    def __init__(self, slots: int) -> None:
        self._slots = asyncio.Semaphore(slots)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """``verify_password`` off the event loop."""
        async with self._slots:
            return await asyncio.to_thread(verify_password, password_hash, password)

    async def hash(self, password: str) -> str:
        """``hash_password`` off the event loop."""
        async with self._slots:
            return await asyncio.to_thread(hash_password, password)
