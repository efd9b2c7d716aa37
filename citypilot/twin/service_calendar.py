"""Which timetable runs on a day: weekday service, or weekend service on Saturdays,
Sundays and French public holidays (from the ``holidays`` library).

The static GTFS writes the holidays as ``calendar_dates`` (weekday service removed,
weekend service added) and the simulated fleet follows the same rule, so the
vehicles run the trips the published timetable says they run.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

FEED_START = date(2025, 1, 1)
FEED_END = date(2030, 12, 31)
_EPOCH = date(1970, 1, 1)


@lru_cache(maxsize=1)
def public_holidays() -> dict[date, str]:
    """France's public holidays over the feed's validity, by date."""
    found = holidays.country_holidays("FR", years=range(FEED_START.year, FEED_END.year + 1))
    return {d: str(name) for d, name in sorted(found.items())}


def service_of(day: date) -> str:
    """``weekday`` or ``weekend`` (Saturdays, Sundays and public holidays)."""
    if day.weekday() >= 5 or day in public_holidays():
        return "weekend"
    return "weekday"


@lru_cache(maxsize=64)
def service_of_epoch_day(day: int) -> str:
    """:func:`service_of` for a local day counted from 1970-01-01."""
    return service_of(_EPOCH + timedelta(days=day))


def holiday_exceptions() -> list[tuple[str, str, int]]:
    """GTFS ``calendar_dates`` rows: on a weekday holiday, weekday service off (2) and
    weekend service on (1)."""
    rows = []
    for day in public_holidays():
        if day.weekday() < 5 and FEED_START <= day <= FEED_END:
            stamp = day.strftime("%Y%m%d")
            rows += [("weekday", stamp, 2), ("weekend", stamp, 1)]
    return rows
