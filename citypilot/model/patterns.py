"""Untrusted regular expressions (``idPattern``, ``q`` ``~=``) in linear time, with RE2.

Python's ``re`` backtracks: ``(a+)+b`` against a few dozen characters runs for
seconds, holding the interpreter lock. RE2 (google-re2) matches in time linear in
the subject and refuses what it cannot do that way (back-references,
look-arounds). Every pattern is compiled with RE2 when the request is parsed,
so one RE2 refuses is a 400 naming the parameter; SQLite's ``regexp`` function
runs RE2 too (PostgreSQL bounds its own engine with a statement timeout, see
``store.postgres``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from citypilot.model.errors import BadRequestData

#: Longest pattern accepted.
MAX_PATTERN_LENGTH = 1000
#: Memory RE2 may use for one compiled pattern (bounds the automaton of a huge repetition).
_MAX_MEM = 8 << 20


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _MAX_MEM
    return options


_OPTIONS = _options()


@lru_cache(maxsize=512)
def compiled(pattern: str) -> Any:
    """The RE2 program of a pattern (re2.error when RE2 refuses it)."""
    return re2.compile(pattern, _OPTIONS)


def check_pattern(pattern: str, field: str) -> str:
    """Return ``pattern`` if RE2 accepts it; BadRequestData naming ``field`` otherwise."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise BadRequestData(
            f"{field}: the pattern is longer than {MAX_PATTERN_LENGTH} characters", field
        )
    try:
        compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise BadRequestData(
            f"{field}: not a regular expression CityPilot accepts (RE2 syntax: no "
            f"back-references or look-arounds): {reason}",
            field,
        ) from None
    return pattern


def regexp(pattern: str, value: Any) -> bool:
    """SQLite's ``regexp(pattern, value)``: whether ``pattern`` matches somewhere in ``value``."""
    return value is not None and compiled(pattern).search(str(value)) is not None
