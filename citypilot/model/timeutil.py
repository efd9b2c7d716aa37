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


def now() -> float:
    """The current instant as epoch seconds."""
    return time.time()


def parse_instant(text: object, field: str, *, max_future: float | None = None) -> float:
    """Parse an ISO 8601 date-time with a time zone into epoch seconds.

    Raises BadRequestData naming ``field`` when the text is not a string, is not
    a date-time, has no time zone, or lies more than ``max_future`` seconds ahead.
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
    if max_future is not None and instant > time.time() + max_future:
        raise BadRequestData(f"{field} lies in the future: {text[:64]!r}", field=field)
    return instant


def format_instant(instant: float) -> str:
    """Format epoch seconds as ISO 8601 UTC with millisecond precision and a ``Z``."""
    return (
        datetime.fromtimestamp(instant, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
