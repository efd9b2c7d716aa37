"""The parameters of the NGSI-LD temporal API (ETSI GS CIM 009, clauses 4.11 and 6.18-6.19),
read and checked into the query a store answers and the bounds its periods show.

``timerel``: ``before`` selects instants < ``timeAt``, ``after`` instants >= ``timeAt``,
``between`` instants in [``timeAt``, ``endTimeAt``). Aggregation periods
(``aggrPeriodDuration``, ISO 8601, default ``PT0S`` = the whole range) are counted from
``timeAt`` for ``after``/``between``, from the epoch otherwise (so ``PT1H`` gives
whole hours).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast, get_args

from citypilot.model.errors import BadRequestData
from citypilot.model.observation import DEFAULT_DATASET
from citypilot.model.timeutil import parse_instant
from citypilot.store.base import AggrMethod

#: Instances (or periods) per attribute in one answer; more gives 206 Partial Content.
MAX_INSTANCES = 10_000
AGGR_METHODS: tuple[str, ...] = get_args(AggrMethod)
_OPTIONS = {"temporalValues", "aggregatedValues"}
_DURATION = re.compile(
    r"^P(?!$)(?:(\d{1,6})Y)?(?:(\d{1,6})M)?(?:(\d{1,6})W)?(?:(\d{1,6})D)?"
    r"(?:T(?=\d)(?:(\d{1,9})H)?(?:(\d{1,9})M)?(?:(\d{1,12}(?:\.\d{1,6})?)S)?)?$"
)
#: Longest aggregation period: 100 years.
MAX_PERIOD_S = 36_500 * 86_400


def parse_duration(text: str) -> float:
    """An ISO 8601 duration (``PT1H``, ``P1D``, ``P2W``, ``PT0S``) in seconds.

    Years and months have no fixed length and are refused, as is any other form.
    """
    match = _DURATION.match(text)
    if match is None:
        raise BadRequestData(
            f"aggrPeriodDuration is not an ISO 8601 duration like PT1H or P1D: {text[:40]!r}",
            "aggrPeriodDuration",
        )
    years, months, weeks, days, hours, minutes, seconds = match.groups()
    if years or months:
        raise BadRequestData(
            "aggrPeriodDuration: years and months have no fixed length; give weeks, days,"
            " hours, minutes or seconds",
            "aggrPeriodDuration",
        )
    total = (
        int(weeks or 0) * 604_800
        + int(days or 0) * 86_400
        + int(hours or 0) * 3600
        + int(minutes or 0) * 60
        + float(seconds or 0)
    )
    if total > MAX_PERIOD_S:
        raise BadRequestData("aggrPeriodDuration is longer than 100 years", "aggrPeriodDuration")
    return total


@dataclass(frozen=True)
class TemporalParams:
    """What a temporal request asks: the range, instances or aggregation, and the form."""

    start: float | None = None
    end: float | None = None
    timerel: str | None = None
    last_n: int | None = None
    methods: tuple[AggrMethod, ...] = ()
    period_s: float | None = None
    origin: float = 0.0
    simplified: bool = False
    datasets: tuple[str, ...] | None = None

    def period_bounds(
        self, index: int, first: float | None, last: float | None
    ) -> tuple[float, float]:
        """Start and end of an aggregation period; with no period, of the whole range
        (from the first to the last instance seen, where the query leaves it open)."""
        if self.period_s:
            start = self.origin + index * self.period_s
            end = start + self.period_s
            return start, end if self.end is None else min(end, self.end)
        start = self.start if self.start is not None else first
        end = self.end if self.end is not None else last
        if start is None or end is None:
            raise ValueError("a whole-range period needs its first and last instants")
        return start, end


def _range(
    timerel: str | None, time_at: str | None, end_time_at: str | None
) -> tuple[float | None, float | None]:
    if timerel is None:
        if time_at is not None or end_time_at is not None:
            raise BadRequestData("timeAt and endTimeAt need timerel", "timerel")
        return None, None
    if timerel not in ("before", "after", "between"):
        raise BadRequestData("timerel must be before, after or between", "timerel")
    if time_at is None:
        raise BadRequestData(f"timerel={timerel} needs timeAt", "timeAt")
    at = parse_instant(time_at, "timeAt")
    if timerel != "between":
        if end_time_at is not None:
            raise BadRequestData("endTimeAt goes only with timerel=between", "endTimeAt")
        return (None, at) if timerel == "before" else (at, None)
    if end_time_at is None:
        raise BadRequestData("timerel=between needs endTimeAt", "endTimeAt")
    end = parse_instant(end_time_at, "endTimeAt")
    if end <= at:
        raise BadRequestData("endTimeAt must be after timeAt", "endTimeAt")
    return at, end


def _methods(aggr_methods: str) -> tuple[AggrMethod, ...]:
    names = [m.strip() for m in aggr_methods.split(",") if m.strip()]
    if not names:
        raise BadRequestData("aggrMethods is empty", "aggrMethods")
    for name in names:
        if name not in AGGR_METHODS:
            raise BadRequestData(
                f"aggrMethods: {name[:40]!r} is not one of {', '.join(AGGR_METHODS)}",
                "aggrMethods",
            )
    return tuple(cast(AggrMethod, n) for n in dict.fromkeys(names))


def _datasets(dataset_id: str | None) -> tuple[str, ...] | None:
    """The ``datasetId`` parameter: the datasets wanted (``@none``: the default instance)."""
    if dataset_id is None:
        return None
    names = [d.strip() for d in dataset_id.split(",") if d.strip()]
    if not names:
        raise BadRequestData("datasetId is empty", "datasetId")
    return tuple(dict.fromkeys(DEFAULT_DATASET if d == "@none" else d for d in names))


def parse_temporal(
    *,
    timerel: str | None,
    time_at: str | None,
    end_time_at: str | None,
    timeproperty: str | None,
    last_n: int | None,
    aggr_methods: str | None,
    aggr_period: str | None,
    options: str | None,
    format: str | None,
    dataset_id: str | None = None,
) -> TemporalParams:
    """Check the temporal parameters together; BadRequestData naming the wrong one."""
    if timeproperty not in (None, "observedAt"):
        raise BadRequestData("timeproperty: history is kept by observedAt only", "timeproperty")
    start, end = _range(timerel, time_at, end_time_at)
    opts = {o.strip() for o in (options or "").split(",") if o.strip()}
    unknown = opts - _OPTIONS
    if unknown:
        raise BadRequestData(
            f"options: {sorted(unknown)[0][:40]!r} is not temporalValues or aggregatedValues",
            "options",
        )
    if format is not None:
        if format not in _OPTIONS:
            raise BadRequestData("format must be temporalValues or aggregatedValues", "format")
        opts.add(format)
    if opts == _OPTIONS:
        raise BadRequestData("ask for temporalValues or aggregatedValues, not both", "options")
    aggregated = "aggregatedValues" in opts or aggr_methods is not None
    if not aggregated:
        if aggr_period is not None:
            raise BadRequestData("aggrPeriodDuration needs aggrMethods", "aggrPeriodDuration")
        return TemporalParams(
            start,
            end,
            timerel,
            last_n,
            simplified="temporalValues" in opts,
            datasets=_datasets(dataset_id),
        )
    if aggr_methods is None:
        raise BadRequestData("aggregatedValues needs aggrMethods", "aggrMethods")
    if last_n is not None:
        raise BadRequestData("lastN goes with instances, not aggregatedValues", "lastN")
    period = parse_duration(aggr_period) if aggr_period is not None else 0.0
    origin = start if start is not None and timerel in ("after", "between") else 0.0
    return TemporalParams(
        start,
        end,
        timerel,
        None,
        _methods(aggr_methods),
        period or None,
        origin,
        datasets=_datasets(dataset_id),
    )
