"""Checks of a whole column of values of one attribute at once (the ingest fast path).

A batch of observations is checked attribute by attribute: the values of one
attribute across the batch go through C-level built-ins (``set(map(type, …))``,
``min``, ``max``, ``sum``) instead of one Python call per value. A column check
either accepts every value of the column as sent, returning each value's number
(None where the attribute is not numeric), or returns None: then each value goes
through the attribute's own checker, which normalises it or names the reason of a
refusal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

#: Accepts a column as sent (each value's number, or None) or declines (None).
ColumnCheck = Callable[[Sequence[Any]], "list[float | None] | None"]

_NUMBERS = frozenset({int, float})
_INTS = frozenset({int})
_STRS = frozenset({str})
_BOOLS = frozenset({bool})


def numbers(lo: float, hi: float, integer: bool) -> ColumnCheck:
    """Numbers within ``lo``..``hi`` (integers only if ``integer``); bools never."""
    allowed = _INTS if integer else _NUMBERS

    def check(values: Sequence[Any]) -> list[float | None] | None:
        if not allowed.issuperset(map(type, values)):
            return None  # bools, strings, or floats of an integer attribute
        try:
            if not math.isfinite(sum(values)):
                return None  # NaN or infinity somewhere: each on its own
            if not (lo <= min(values) and max(values) <= hi):
                return None
            return list(map(float, values))
        except OverflowError:  # an integer too large for a float: refused on its own
            return None

    return check


def strings(choices: frozenset[str] | None, longest: int) -> ColumnCheck:
    """Strings of at most ``longest`` characters, among ``choices`` if given."""

    def check(values: Sequence[Any]) -> list[float | None] | None:
        if not _STRS.issuperset(map(type, values)):
            return None
        if choices is not None and not choices.issuperset(values):
            return None
        if max(map(len, values)) > longest:
            return None
        return [None] * len(values)

    return check


def booleans(values: Sequence[Any]) -> list[float | None] | None:
    """true or false, as 1.0 or 0.0."""
    if not _BOOLS.issuperset(map(type, values)):
        return None
    return list(map(float, values))
