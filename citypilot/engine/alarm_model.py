"""What an alarm is: its states after ISA-18.2, and its forms as an entity and in the API.

An alarm is *active* while its condition holds and *cleared* once it no longer does;
independently an operator *acknowledges* it. That gives four states, and the alarm
is closed (``cleared``) only when it is both cleared and acknowledged. Shelving (by
an operator, for a time) and suppression by design (by a city mode) hide an alarm
from the list of what needs attention without changing its state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citypilot.model.entity import Attribute, Entity
from citypilot.model.timeutil import format_instant, parse_instant

ALARM_TYPE = "Alarm"
ACTIVE_UNACK = "active-unacknowledged"
ACTIVE_ACK = "active-acknowledged"
CLEARED_UNACK = "cleared-unacknowledged"
CLEARED = "cleared"
STATES = (ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK, CLEARED)
OPEN_STATES = (ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK)
ACTIVE_STATES = (ACTIVE_UNACK, ACTIVE_ACK)
SEVERITIES = ("critical", "high", "medium", "low")
MAX_LOG = 200
MAX_COMMENTS = 200
MAX_MESSAGE = 1000


@dataclass
class Alarm:
    """One alarm, as the alarm service holds it (times are epoch seconds)."""

    id: str
    rule: str
    source: str
    source_type: str
    severity: str
    message: str
    state: str = ACTIVE_UNACK
    reading: dict[str, Any] = field(default_factory=dict)
    count: int = 1
    raised_at: float = 0.0
    last_raised_at: float = 0.0
    cleared_at: float | None = None
    acknowledged: dict[str, Any] | None = None
    shelved: dict[str, Any] | None = None
    suppressed: dict[str, Any] | None = None
    comments: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    location: dict[str, Any] | None = None
    municipality: str | None = None
    department: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(rule, entity): at most one open alarm per key."""
        return self.rule, self.source

    @property
    def is_open(self) -> bool:
        """Whether the alarm still needs something (active, or cleared but unacknowledged)."""
        return self.state != CLEARED

    def shelved_until(self) -> float | None:
        """When the shelving ends, or None when the alarm is not shelved."""
        return None if self.shelved is None else parse_instant(self.shelved["until"], "until")

    def note(self, at: float, by: str, action: str, **detail: Any) -> None:
        """Append a transition to the alarm's log (the oldest go past :data:`MAX_LOG`)."""
        entry = {"at": format_instant(at), "by": by, "action": action, "state": self.state}
        if detail:
            entry["detail"] = detail
        self.log = [*self.log, entry][-MAX_LOG:]

    def to_json(self) -> dict[str, Any]:
        """The alarm as the API and the bus (``alarms.changed``) show it."""
        return {
            "id": self.id,
            "rule": self.rule,
            "entity": self.source,
            "entityType": self.source_type,
            "severity": self.severity,
            "state": self.state,
            "message": self.message,
            "reading": self.reading,
            "count": self.count,
            "raisedAt": format_instant(self.raised_at),
            "lastRaisedAt": format_instant(self.last_raised_at),
            "clearedAt": None if self.cleared_at is None else format_instant(self.cleared_at),
            "acknowledged": self.acknowledged,
            "shelved": self.shelved,
            "suppressed": self.suppressed,
            "comments": self.comments,
            "log": self.log,
            "location": self.location,
            "municipality": self.municipality,
        }

    def attributes(self) -> dict[str, Any]:
        """The alarm's attributes as an entity fragment (NGSI-LD normalised form)."""
        values: dict[str, Any] = {
            "severity": self.severity,
            "state": self.state,
            "rule": self.rule,
            "alarmSource": self.source,
            "alarmSourceType": self.source_type,
            "message": self.message,
            "reading": self.reading,
            "count": self.count,
            "raisedAt": format_instant(self.raised_at),
            "lastRaisedAt": format_instant(self.last_raised_at),
            "acknowledged": self.acknowledged or {},
            "shelved": self.shelved or {},
            "suppressed": self.suppressed or {},
            "comments": self.comments,
            "log": self.log,
        }
        if self.cleared_at is not None:
            values["clearedAt"] = format_instant(self.cleared_at)
        if self.department:
            values["department"] = self.department
        doc = {name: {"type": "Property", "value": v} for name, v in values.items()}
        if self.location is not None:
            doc["location"] = {"type": "GeoProperty", "value": self.location}
        if self.municipality:
            doc["refMunicipality"] = {"type": "Relationship", "object": self.municipality}
        return doc


def _value(attrs: dict[str, Attribute], name: str, default: Any = None) -> Any:
    attr = attrs.get(name)
    return default if attr is None else attr.value


def _instant(attrs: dict[str, Attribute], name: str) -> float | None:
    text = _value(attrs, name)
    return None if text is None else parse_instant(text, name, bounded=False)


def alarm_from_entity(entity: Entity) -> Alarm:
    """The alarm an ``Alarm`` entity holds."""
    a = entity.attrs
    return Alarm(
        id=entity.id,
        rule=_value(a, "rule", ""),
        source=_value(a, "alarmSource", ""),
        source_type=_value(a, "alarmSourceType", ""),
        severity=_value(a, "severity", "low"),
        message=_value(a, "message", ""),
        state=_value(a, "state", ACTIVE_UNACK),
        reading=_value(a, "reading", {}),
        count=_value(a, "count", 1),
        raised_at=_instant(a, "raisedAt") or 0.0,
        last_raised_at=_instant(a, "lastRaisedAt") or 0.0,
        cleared_at=_instant(a, "clearedAt"),
        acknowledged=_value(a, "acknowledged") or None,
        shelved=_value(a, "shelved") or None,
        suppressed=_value(a, "suppressed") or None,
        comments=list(_value(a, "comments", [])),
        log=list(_value(a, "log", [])),
        location=_value(a, "location"),
        municipality=_value(a, "refMunicipality"),
        department=_value(a, "department"),
    )
