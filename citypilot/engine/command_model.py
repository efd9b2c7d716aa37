"""What a device command is: its states, its checked arguments, what confirms it.

A command asks one entity's device to change something. Its lifecycle::

    pending → sent → acknowledged → confirmed
            ↘ rejected (the device said no) · failed (undeliverable after retries)
            ↘ timed_out (no ack or no confirming report within the type's timeout)
            ↘ expired (not delivered before its deadline) · superseded (a newer command
              for the same property)

``confirmed`` is reached only when the device's own report, not older than its
acknowledgement, shows every attribute the command's type declares as confirming
it (:class:`citypilot.model.types.CommandSpec.confirms`) at the commanded value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from citypilot.model.errors import BadRequestData
from citypilot.model.timeutil import format_instant
from citypilot.model.types import CommandSpec, EntityType, ValueRefused, compile_checker

PENDING, SENT, ACKNOWLEDGED, CONFIRMED = "pending", "sent", "acknowledged", "confirmed"
REJECTED, FAILED, TIMED_OUT, EXPIRED, SUPERSEDED = (
    "rejected",
    "failed",
    "timed_out",
    "expired",
    "superseded",
)
ACTIVE_STATES = frozenset({PENDING, SENT, ACKNOWLEDGED})
STATES = (PENDING, SENT, ACKNOWLEDGED, CONFIRMED, REJECTED, FAILED, TIMED_OUT, EXPIRED, SUPERSEDED)
#: States whose command still says what is desired of the device.
DESIRED_STATES = frozenset({PENDING, SENT, ACKNOWLEDGED, CONFIRMED, TIMED_OUT})
MAX_ARRAY_ITEMS = 100
MAX_ITEM_CHARS = 256


@dataclass
class Command:
    """One command and everything known about it (its JSON form is what the API shows).

    ``expected`` maps each confirming attribute to ``{"value", "tolerance"}``;
    ``before`` holds what the device reported for those attributes when the
    command was made (for restoring it later); ``last_reported`` what it reported
    since the command was sent; ``ack_at`` the device's instant of the ack.
    """

    id: str
    entity_id: str
    entity_type: str
    command: str
    args: dict[str, Any]
    reason: str
    requested_by: str
    created_at: float
    deadline: float
    timeout_s: float
    expected: dict[str, dict[str, Any]]
    idempotency_key: str | None = None
    state: str = PENDING
    updated_at: float = 0.0
    attempts: int = 0
    next_attempt_at: float = 0.0
    sent_at: float | None = None
    ack_at: float | None = None
    answer: str | None = None
    channel: str | None = None
    queued_at: float | None = None  # handed to a relay that reports the send (bus channel)
    before: dict[str, Any] = field(default_factory=dict)
    last_reported: dict[str, Any] = field(default_factory=dict)
    diverged: bool = False
    superseded_by: str | None = None
    early_report: bool = False  # the device reported before its ack was in

    @property
    def timeout_at(self) -> float | None:
        """When the device's confirmation is due (from the first send)."""
        return None if self.sent_at is None else self.sent_at + self.timeout_s

    def to_doc(self) -> dict[str, Any]:
        """Everything, for the store (read back by :meth:`from_doc`).

        A copy one level deep: the dicts a command changes later (``last_reported``) are
        replaced or updated at their top level only, and the rest is never changed in
        place — cheaper than ``dataclasses.asdict``'s deep copy on the write path.
        """
        return {
            name: dict(value) if isinstance(value, dict) else value
            for name in _FIELDS
            for value in (getattr(self, name),)
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Command:
        """A command as the store kept it."""
        return cls(**doc)

    def to_json(self) -> dict[str, Any]:
        """The API's view: instants in ISO 8601, names in camelCase."""

        def when(t: float | None) -> str | None:
            return None if t is None else format_instant(t)

        return {
            "id": self.id,
            "entityId": self.entity_id,
            "entityType": self.entity_type,
            "command": self.command,
            "args": self.args,
            "reason": self.reason,
            "requestedBy": self.requested_by,
            "idempotencyKey": self.idempotency_key,
            "state": self.state,
            "createdAt": when(self.created_at),
            "updatedAt": when(self.updated_at),
            "deadline": when(self.deadline),
            "timeoutAt": when(self.timeout_at),
            "attempts": self.attempts,
            "channel": self.channel,
            "answer": self.answer,
            "expected": {k: v["value"] for k, v in self.expected.items()},
            "before": self.before,
            "lastReported": self.last_reported,
            "diverged": self.diverged,
            "supersededBy": self.superseded_by,
        }


_FIELDS = tuple(f.name for f in fields(Command))


def command_spec(entity_type: EntityType, name: object) -> CommandSpec:
    """The declared command ``name`` of a type; BadRequestData naming ``command``."""
    spec = entity_type.commands.get(name) if isinstance(name, str) else None
    if spec is None:
        known = ", ".join(entity_type.commands) or "none"
        raise BadRequestData(
            f"command {str(name)[:60]!r} is not a command of {entity_type.name} "
            f"(its commands: {known})",
            "command",
        )
    if not spec.confirms:
        raise BadRequestData(
            f"command {spec.name!r} of {entity_type.name} declares no reported attribute "
            "that confirms it, so it cannot be carried out",
            "command",
        )
    return spec


def check_args(spec: CommandSpec, args: Any) -> dict[str, Any]:
    """The command's arguments checked against its parameters (all required, no others)."""
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequestData("args must be a JSON object", "args")
    for name in args:
        if name not in spec.parameters:
            known = ", ".join(spec.parameters) or "none"
            raise BadRequestData(
                f"args.{str(name)[:60]} is not a parameter of {spec.name} (parameters: {known})",
                f"args.{str(name)[:60]}",
            )
    out: dict[str, Any] = {}
    for name, param in spec.parameters.items():
        where = f"args.{name}"
        if name not in args:
            raise BadRequestData(f"{where} is required by {spec.name}", where)
        try:
            value, _ = compile_checker(param)(args[name])
        except ValueRefused as exc:
            raise BadRequestData(f"{where} {exc.reason}", where) from None
        if param.value == "array":
            _check_items(value, where)
        out[name] = value
    return out


def _check_items(items: list[Any], where: str) -> None:
    if len(items) > MAX_ARRAY_ITEMS:
        raise BadRequestData(f"{where} has more than {MAX_ARRAY_ITEMS} items", where)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not 0 < len(item) <= MAX_ITEM_CHARS:
            raise BadRequestData(
                f"{where}[{i}] must be a non-empty string of at most {MAX_ITEM_CHARS} characters",
                f"{where}[{i}]",
            )


def expected_values(spec: CommandSpec, args: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per confirming attribute, the value the device must report (and its tolerance)."""
    return {
        attr: {"value": how.expected(args), "tolerance": how.tolerance}
        for attr, how in spec.confirms.items()
    }


def shows(expected: Mapping[str, Any], reported: Any) -> bool:
    """Whether a reported value is the expected one (numbers within the tolerance)."""
    want = expected["value"]
    if isinstance(want, bool) or isinstance(reported, bool):
        return want is reported
    if isinstance(want, int | float) and isinstance(reported, int | float):
        return abs(want - reported) <= expected.get("tolerance", 0.0) + 1e-9
    return want == reported
