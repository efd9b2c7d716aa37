"""Alarm-management figures after ISA-18.2 (and EEMUA 191), from the alarms of a window.

* alarms per operator per 10 minutes (average and peak), target about 1;
* the share of 10-minute periods *in flood* (more than 10 alarms), target < 1 %;
* the ten most frequent alarms (rule, entity) and their share of the load;
* *chattering* alarms: 3 or more transitions (raised, cleared) within 60 s, target none;
* *stale* alarms: active for more than 24 hours;
* the priority split: the share of each severity among the alarms raised.

An *annunciation* is an alarm being raised (first, or again after it cleared);
repeats of an alarm still active are counted on the alarm, not annunciated again.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from citypilot.engine.alarm_model import SEVERITIES, Alarm
from citypilot.store.base import EntityScope

PERIOD_S = 600.0
FLOOD_ABOVE = 10
CHATTER_TRANSITIONS = 3
CHATTER_WITHIN_S = 60.0
STALE_AFTER_S = 86400.0
TARGETS = {"perOperatorPer10Min": 1.0, "floodPercent": 1.0, "chattering": 0}


@dataclass(frozen=True)
class Annunciation:
    """One alarm raised: when, by which rule, about which entity, how severe, and the
    entity's (type, municipality, department), which decides who may count it."""

    at: float
    rule: str
    source: str
    severity: str
    scope: EntityScope = ("", None, None)


def _chattering(transitions: Sequence[tuple[float, str]]) -> list[str]:
    """Alarm ids with at least 3 transitions inside some 60-second span."""
    times: dict[str, list[float]] = defaultdict(list)
    for at, alarm_id in transitions:
        times[alarm_id].append(at)
    found = []
    for alarm_id, ats in times.items():
        ats.sort()
        n = CHATTER_TRANSITIONS - 1
        if any(ats[k + n] - ats[k] <= CHATTER_WITHIN_S for k in range(len(ats) - n)):
            found.append(alarm_id)
    return sorted(found)


def alarm_figures(
    annunciations: Sequence[Annunciation],
    transitions: Sequence[tuple[float, str]],
    active: Sequence[Alarm],
    *,
    now: float,
    window_s: float,
    operators: int = 1,
) -> dict[str, Any]:
    """The figures of the window ending at ``now``, with the ISA-18.2 targets beside them."""
    periods = max(1, math.ceil(window_s / PERIOD_S))
    buckets = [0] * periods
    for a in annunciations:
        k = int((now - a.at) // PERIOD_S)
        if 0 <= k < periods:
            buckets[k] += 1
    total = sum(buckets)
    operators = max(1, operators)
    per_key = Counter((a.rule, a.source) for a in annunciations)
    top = per_key.most_common(10)
    by_severity = Counter(a.severity for a in annunciations)
    chattering = _chattering(transitions)
    stale = sorted(a.id for a in active if now - a.raised_at > STALE_AFTER_S)
    flood_periods = sum(1 for b in buckets if b > FLOOD_ABOVE)
    per_operator = total / periods / operators
    flood_percent = 100.0 * flood_periods / periods
    return {
        "windowSeconds": window_s,
        "operators": operators,
        "alarms": total,
        "perOperatorPer10Min": round(per_operator, 3),
        "peakPer10Min": max(buckets),
        "floodPeriods": flood_periods,
        "floodPercent": round(flood_percent, 3),
        "top10": [{"rule": rule, "entity": source, "count": n} for (rule, source), n in top],
        "top10SharePercent": round(100.0 * sum(n for _, n in top) / total, 3) if total else 0.0,
        "chattering": chattering,
        "stale": stale,
        "prioritySplit": {
            s: round(100.0 * by_severity[s] / total, 3) if total else 0.0 for s in SEVERITIES
        },
        "targets": TARGETS,
        "meetsTargets": {
            "perOperatorPer10Min": per_operator <= TARGETS["perOperatorPer10Min"],
            "floodPercent": flood_percent < TARGETS["floodPercent"],
            "chattering": not chattering,
        },
    }
