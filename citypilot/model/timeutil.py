"""Timestamps: parsing ISO 8601 into epoch seconds and formatting them back.

Internally every instant is a float of seconds since the Unix epoch (UTC); at
the edges it is an ISO 8601 string with a ``Z`` suffix.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from citypilot.model.errors import BadRequestData

#: How far in the future a reported ``observedAt`` may lie (clock skew of devices).
MAX_FUTURE_SKEW_S = 300.0
#: The instants CityPilot accepts at its edges: from 1900-01-01 to before 2200-01-01 UTC.
EARLIEST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
_EARLIEST_S = EARLIEST_INSTANT.timestamp()
_LATEST_S = LATEST_INSTANT.timestamp()
#: What ``datetime`` can represent (years 1 to 9999): stored instants are clamped to it.
_FIRST_S = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_LAST_S = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp()


def now() -> float:
    """The current instant as epoch seconds."""
    return time.time()


def parse_instant(
    text: object, field: str, *, max_future: float | None = None, bounded: bool = True
) -> float:
    """Parse an ISO 8601 date-time with a time zone into epoch seconds.

    Raises BadRequestData naming ``field`` when the text is not a string, is not
    a date-time, has no time zone, lies outside 1900-01-01 .. 2200-01-01 UTC
    (unless not ``bounded``), or lies more than ``max_future`` seconds ahead.
    """
    if not isinstance(text, str):
        raise BadRequestData(f"{field} must be an ISO 8601 date-time string", field=field)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestData(
            f"{field} is not an ISO 8601 date-time: {text[:64]!r}", field=field
        ) from None
    if parsed.tzinfo is None:
        raise BadRequestData(f"{field} needs a time zone (e.g. 'Z'): {text[:64]!r}", field=field)
    instant = parsed.timestamp()
    if bounded and not _EARLIEST_S <= instant < _LATEST_S:
        raise BadRequestData(
            f"{field} lies outside the accepted range 1900-01-01T00:00:00Z .. "
            f"2200-01-01T00:00:00Z: {text[:64]!r}",
            field=field,
        )
    if max_future is not None and instant > time.time() + max_future:
        raise BadRequestData(f"{field} lies in the future: {text[:64]!r}", field=field)
    return instant


def format_instant(instant: float) -> str:
    """Format epoch seconds as ISO 8601 UTC with millisecond precision and a ``Z``.

    Never fails: an instant stored before the edges refused it (outside years
    1 .. 9999, or not a number) is shown clamped to the nearest representable one.
    """
    if not _FIRST_S <= instant <= _LAST_S:
        instant = _LAST_S if instant > 0 else _FIRST_S
    return (
        datetime.fromtimestamp(instant, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
