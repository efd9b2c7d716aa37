"""What a rule is, checked and compiled: its trigger, CEL condition and actions.

A rule is data (a YAML file or a JSON body, see docs/rules.md)::

    id: river-above-alert          # [a-z0-9][a-z0-9-]*, at most 64 characters
    owner: water                   # the department that owns it
    enabled: true
    type: WaterLevelSensor         # the entity type it watches (not for cron)
    attributes: [waterLevel]       # the attributes it watches (default: any)
    condition: "entity.status != 'maintenance'"   # CEL, optional
    trigger: {kind: threshold, attribute: waterLevel, above: 3.0, clearBelow: 2.8}
    actions:
      - {kind: alarm, severity: high, message: "River at {value} m"}

Conditions are Common Expression Language (CEL, through the ``cel`` binding of the
Rust implementation), never Python ``eval``. They see ``change`` (``id``, ``type``,
``attrs``, ``observedAt`` in epoch seconds), ``entity`` (``id``, ``type`` and the
entity's current attribute values) and ``now``. :func:`compile_rule` refuses a rule
that does not compile with :class:`RuleError` giving the field and the line and
column of the fault, and one naming an attribute its type does not have.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import cel

from citypilot.engine.alarm_model import ALARM_TYPE, SEVERITIES
from citypilot.engine.command_model import check_args, command_spec
from citypilot.model.builtin_types import COMMON_ATTRIBUTES
from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import validate_geometry
from citypilot.model.types import EntityType, TypeRegistry

RULE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
TRIGGER_KINDS = ("change", "threshold", "held", "zone", "silent", "cron", "command")
COMMAND_END_STATES = ("rejected", "failed", "timed_out", "expired")
ACTION_KINDS = ("alarm", "command", "webhook", "incident", "mode")
RULE_FIELDS = frozenset(
    {
        "id",
        "version",
        "owner",
        "enabled",
        "description",
        "type",
        "attributes",
        "condition",
        "trigger",
        "actions",
        "loopGuard",
    }
)
MAX_EXPRESSION = 4000
MAX_ACTIONS = 20
MAX_DURATION_S = 30 * 86400.0
DEFAULT_GUARD = {"max": 20, "within": 10.0}
_POSITION = re.compile(r"<input>:(\d+):(\d+)")
_REFERENCE = re.compile(r"\b(entity|change\.attrs)\.([A-Za-z_][A-Za-z0-9_]*)")
_ENTITY_KEYS = frozenset({"id", "type"})


class RuleError(BadRequestData):
    """A rule that cannot be used: the field at fault and, in an expression, where."""


@dataclass(frozen=True)
class Expression:
    """A compiled CEL expression and the attributes it reads (None: it reads them all)."""

    source: str
    program: Any
    entity_attrs: tuple[str, ...] | None
    change_attrs: tuple[str, ...] | None
    #: ``(name, literal)`` when the expression is ``change.attrs.<name> == <literal> && ...``
    #: with no ``||`` or ``?:``: a report whose ``name`` is another value is false at once
    guard: tuple[str, Any] | None = None
    uses_entity: bool = True


@dataclass(frozen=True)
class Action:
    """One thing a rule does when it fires (or, with ``on: reset``, when it resets)."""

    kind: str
    on: str
    spec: dict[str, Any]
    select: Expression | None = None


@dataclass
class Rule:
    """A checked, compiled rule; ``doc`` is its definition as given (and stored)."""

    id: str
    version: int
    owner: str
    enabled: bool
    type: str | None
    attributes: tuple[str, ...]
    trigger: dict[str, Any]
    condition: Expression | None
    actions: tuple[Action, ...]
    guard_max: int
    guard_within_s: float
    doc: dict[str, Any] = field(default_factory=dict)
    #: the entity's attributes the rule reads beyond the report (None: all of them)
    needs: tuple[str, ...] | None = ()

    @property
    def kind(self) -> str:
        """The trigger's kind."""
        return self.trigger["kind"]


def _needs(condition: Expression | None, trigger: dict[str, Any]) -> tuple[str, ...] | None:
    names: list[str] = []
    if condition is not None:
        if condition.entity_attrs is None:
            return None
        names.extend(condition.entity_attrs)
    for key in ("above", "below", "clearBelow", "clearAbove"):
        level = trigger.get(key)
        if isinstance(level, str):
            names.append(level)
    return tuple(dict.fromkeys(names))


def _where(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _need(doc: dict[str, Any], name: str, where: str) -> Any:
    if name not in doc:
        raise RuleError(f"{_where(where, name)} is required", _where(where, name))
    return doc[name]


def _text(value: Any, where: str, limit: int = 1000) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise RuleError(f"{where} must be a non-empty text of at most {limit} characters", where)
    return value


def _number(value: Any, where: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuleError(f"{where} must be a number", where)
    if not lo <= value <= hi:
        raise RuleError(f"{where} must lie between {lo:g} and {hi:g}", where)
    return float(value)


def _object(value: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RuleError(f"{where} must be an object", where)
    for key in value:
        if key not in allowed:
            raise RuleError(
                f"{_where(where, str(key)[:60])} is not a known field", _where(where, key)
            )
    return value


def compile_expression(
    source: Any, where: str, entity_type: EntityType | None, registry: TypeRegistry
) -> Expression:
    """Compile a CEL expression; RuleError with ``position`` (line, column) when it does
    not parse or names an attribute ``entity_type`` does not have."""
    text = _text(source, where, MAX_EXPRESSION)
    try:
        program = cel.compile(text)
    except (ValueError, RuntimeError) as exc:
        message = str(exc).split("\n", 1)[0]
        found = _POSITION.search(str(exc))
        position = {"line": int(found[1]), "column": int(found[2])} if found else None
        detail = message.split("ERROR: <input>:", 1)[-1] if found else message
        raise RuleError(f"{where} does not compile: {detail}", where, position=position) from None
    entity_attrs: set[str] = set()
    change_attrs: set[str] = set()
    for match in _REFERENCE.finditer(text):
        holder, name = match[1], match[2]
        if entity_type is not None and not _has_attribute(entity_type, name, holder == "entity"):
            line = text.count("\n", 0, match.start(2)) + 1
            column = match.start(2) - (text.rfind("\n", 0, match.start(2)) + 1) + 1
            raise RuleError(
                f"{where}: {entity_type.name} has no attribute {name!r}",
                where,
                position={"line": line, "column": column},
            )
        (entity_attrs if holder == "entity" else change_attrs).add(name)
    whole_entity = re.search(r"\bentity\b(?!\s*\.)", text) is not None
    uses_entity = re.search(r"\bentity\b", text) is not None
    whole_change = re.search(r"\bchange\.attrs\b(?!\s*\.)", text) is not None
    return Expression(
        text,
        program,
        None if whole_entity else tuple(sorted(entity_attrs)),
        None if whole_change else tuple(sorted(change_attrs)),
        _guard(text),
        uses_entity,
    )


_GUARD = re.compile(
    r"\s*change\.attrs\.([A-Za-z_][A-Za-z0-9_]*)\s*==\s*"
    r"('([^'\\]*)'|\"([^\"\\]*)\"|true|false|-?\d+(?:\.\d+)?)\s*(&&|$)"
)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _guard(text: str) -> tuple[str, Any] | None:
    """The constant test a condition starts with, when it is one of a plain && chain."""
    found = _GUARD.match(text)
    bare = _STRINGS.sub("''", text)
    if found is None or "||" in bare or "?" in bare:
        return None
    literal = found[2]
    if found[3] is not None or found[4] is not None:
        value: Any = found[3] if found[3] is not None else found[4]
    elif literal in ("true", "false"):
        value = literal == "true"
    else:
        value = float(literal)
    return found[1], value


def _has_attribute(entity_type: EntityType, name: str, on_entity: bool) -> bool:
    return (
        name in entity_type.attributes
        or name in COMMON_ATTRIBUTES
        or (on_entity and name in _ENTITY_KEYS)
    )


def _numeric(entity_type: EntityType, name: Any, where: str) -> str:
    """The name of a numeric attribute of the type (RuleError otherwise)."""
    spec = entity_type.attributes.get(name) if isinstance(name, str) else None
    if spec is None or spec.value not in ("number", "integer"):
        raise RuleError(
            f"{where}: {entity_type.name} has no numeric attribute {str(name)[:60]!r}", where
        )
    return name  # type: ignore[return-value]


def _level(entity_type: EntityType, value: Any, where: str) -> float | str:
    """A threshold level: a number, or the name of a numeric attribute holding it."""
    if isinstance(value, str):
        return _numeric(entity_type, value, where)
    return _number(value, where)


def _check_area(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in ("Polygon", "MultiPolygon"):
        raise RuleError(f"{where} must be a GeoJSON Polygon or MultiPolygon", where)
    try:
        validate_geometry(value, where)
    except BadRequestData as exc:
        raise RuleError(exc.detail, where) from None
    return value


def _trigger(doc: Any, entity_type: EntityType | None, has_condition: bool) -> dict[str, Any]:
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind not in TRIGGER_KINDS:
        raise RuleError(f"trigger.kind must be one of {', '.join(TRIGGER_KINDS)}", "trigger.kind")
    fields = {
        "change": {"kind"},
        "threshold": {
            "kind",
            "attribute",
            "above",
            "clearBelow",
            "below",
            "clearAbove",
            "clearMargin",
        },
        "command": {"kind", "states", "diverged"},
        "held": {"kind", "for"},
        "zone": {"kind", "area", "on"},
        "silent": {"kind", "after"},
        "cron": {"kind", "schedule"},
    }[kind]
    doc = _object(doc, "trigger", frozenset(fields))
    out: dict[str, Any] = {"kind": kind}
    if kind != "cron" and entity_type is None:
        raise RuleError(f"a {kind} trigger needs the entity type it watches", "type")
    if kind == "threshold":
        assert entity_type is not None
        out["attribute"] = _numeric(entity_type, doc.get("attribute"), "trigger.attribute")
        if ("above" in doc) == ("below" in doc):
            raise RuleError("trigger needs either above (with clearBelow) or below", "trigger")
        raise_at, clear_at = ("above", "clearBelow") if "above" in doc else ("below", "clearAbove")
        out[raise_at] = _level(entity_type, doc[raise_at], f"trigger.{raise_at}")
        out[clear_at] = _level(entity_type, doc.get(clear_at, doc[raise_at]), f"trigger.{clear_at}")
        levels = (out[raise_at], out[clear_at])
        if all(isinstance(v, float) for v in levels) and (
            levels[1] > levels[0] if raise_at == "above" else levels[1] < levels[0]
        ):
            word = "exceed above" if raise_at == "above" else "be under below"
            raise RuleError(f"trigger.{clear_at} must not {word}", f"trigger.{clear_at}")
        out["clearMargin"] = _number(doc.get("clearMargin", 0), "trigger.clearMargin", 0)
    elif kind == "held":
        if not has_condition:
            raise RuleError("a held trigger needs the condition that must hold", "condition")
        out["for"] = _number(_need(doc, "for", "trigger"), "trigger.for", 1, MAX_DURATION_S)
    elif kind == "zone":
        out["area"] = _check_area(_need(doc, "area", "trigger"), "trigger.area")
        out["on"] = doc.get("on", "enter")
        if out["on"] not in ("enter", "leave"):
            raise RuleError("trigger.on must be enter or leave", "trigger.on")
    elif kind == "silent":
        out["after"] = _number(_need(doc, "after", "trigger"), "trigger.after", 1, MAX_DURATION_S)
    elif kind == "command":
        states = doc.get("states", ["timed_out"])
        if (
            not isinstance(states, list)
            or not states
            or any(st not in COMMAND_END_STATES for st in states)
        ):
            raise RuleError(
                f"trigger.states must list some of {', '.join(COMMAND_END_STATES)}",
                "trigger.states",
            )
        out["states"] = tuple(states)
        diverged = doc.get("diverged", False)
        if not isinstance(diverged, bool):
            raise RuleError("trigger.diverged must be true or false", "trigger.diverged")
        out["diverged"] = diverged
    elif kind == "cron":
        from croniter import croniter

        schedule = _text(_need(doc, "schedule", "trigger"), "trigger.schedule", 200)
        if not croniter.is_valid(schedule):
            raise RuleError(
                f"trigger.schedule {schedule!r} is not a cron expression", "trigger.schedule"
            )
        out["schedule"] = schedule
    return out


_ACTION_FIELDS = {
    "alarm": {"kind", "severity", "message"},
    "command": {"kind", "on", "command", "args", "reason", "target"},
    "webhook": {"kind", "on", "url"},
    "incident": {"kind", "on", "incidentType", "severity", "description"},
    "mode": {"kind", "on", "enter", "leave", "scope", "reason"},
}


def _action(
    doc: Any, k: int, rule: dict[str, Any], entity_type: EntityType | None, registry: TypeRegistry
) -> Action:
    where = f"actions[{k}]"
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind not in ACTION_KINDS:
        raise RuleError(f"{where}.kind must be one of {', '.join(ACTION_KINDS)}", f"{where}.kind")
    doc = _object(doc, where, frozenset(_ACTION_FIELDS[kind]))
    on = doc.get("on", "fire")
    if on not in ("fire", "reset"):
        raise RuleError(f"{where}.on must be fire or reset", f"{where}.on")
    spec = {k2: v for k2, v in doc.items() if k2 not in ("kind", "on")}
    select = None
    if kind == "alarm":
        if doc.get("severity") not in SEVERITIES:
            raise RuleError(
                f"{where}.severity must be one of {', '.join(SEVERITIES)}", f"{where}.severity"
            )
        _text(_need(doc, "message", where), f"{where}.message")
        if entity_type is None:
            raise RuleError(f"{where}: an alarm is about an entity; cron rules raise none", where)
        if entity_type.name == ALARM_TYPE:
            raise RuleError(f"{where}: a rule on alarms raising alarms would trigger itself", where)
    elif kind == "command":
        target = doc.get("target", "self")
        if target == "self":
            if entity_type is None:
                raise RuleError(
                    f"{where}.target: a cron rule must select its targets", f"{where}.target"
                )
            target_type = entity_type
        else:
            target = _object(target, f"{where}.target", frozenset({"type", "zone", "condition"}))
            name = _need(target, "type", f"{where}.target")
            if not isinstance(name, str) or name not in registry:
                raise RuleError(
                    f"{where}.target.type: no type {str(name)[:60]!r}", f"{where}.target.type"
                )
            target_type = registry.get(name)
            if "zone" in target:
                zone = target["zone"]
                if not (isinstance(zone, str) and zone.startswith("urn:ngsi-ld:Zone:")):
                    _check_area(zone, f"{where}.target.zone")
            if "condition" in target:
                select = compile_expression(
                    target["condition"], f"{where}.target.condition", target_type, registry
                )
        try:
            spec["args"] = check_args(
                command_spec(target_type, doc.get("command")), doc.get("args")
            )
        except BadRequestData as exc:
            raise RuleError(exc.detail, f"{where}.{exc.field}") from None
        spec["target"] = target
    elif kind == "webhook":
        url = _text(_need(doc, "url", where), f"{where}.url", 2000)
        if not re.match(r"https?://[^/\s]+", url):
            raise RuleError(f"{where}.url must be an http:// or https:// URL", f"{where}.url")
    elif kind == "incident":
        from citypilot.ops.incidents import INCIDENT_KINDS
        from citypilot.ops.incidents import SEVERITIES as INCIDENT_SEVERITIES

        if doc.get("incidentType") not in INCIDENT_KINDS:
            raise RuleError(
                f"{where}.incidentType must be one of {', '.join(INCIDENT_KINDS)}",
                f"{where}.incidentType",
            )
        if doc.get("severity", "moderate") not in INCIDENT_SEVERITIES:
            raise RuleError(
                f"{where}.severity must be one of {', '.join(INCIDENT_SEVERITIES)}",
                f"{where}.severity",
            )
        if entity_type is None:
            raise RuleError(
                f"{where}: an incident needs a located entity; cron rules open none", where
            )
    elif kind == "mode":
        if ("enter" in doc) == ("leave" in doc):
            raise RuleError(f"{where} needs either enter or leave (a mode's name)", where)
        _text(
            doc.get("enter") or doc.get("leave"),
            f"{where}.{'enter' if 'enter' in doc else 'leave'}",
            100,
        )
        if "scope" in doc and not isinstance(doc["scope"], dict):
            raise RuleError(f"{where}.scope must be an object", f"{where}.scope")
    return Action(kind, on, spec, select)


def compile_rule(doc: Any, registry: TypeRegistry) -> Rule:
    """Check and compile a rule definition; RuleError naming the field otherwise."""
    doc = _object(doc, "", RULE_FIELDS)
    rule_id = _need(doc, "id", "")
    if not isinstance(rule_id, str) or not RULE_ID.fullmatch(rule_id):
        raise RuleError("id must be 1-64 lower-case letters, digits and hyphens", "id")
    if rule_id == "test":
        raise RuleError("id 'test' is reserved (POST /api/v1/rules/test is the dry run)", "id")
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 10**9:
        raise RuleError("version must be a positive integer", "version")
    owner = _text(_need(doc, "owner", ""), "owner", 100)
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError("enabled must be true or false", "enabled")
    if "description" in doc:
        _text(doc["description"], "description", 2000)
    entity_type = None
    if "type" in doc:
        if not isinstance(doc["type"], str) or doc["type"] not in registry:
            raise RuleError(f"type: there is no entity type {str(doc['type'])[:60]!r}", "type")
        entity_type = registry.get(doc["type"])
    attributes = doc.get("attributes", [])
    if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
        raise RuleError("attributes must be a list of attribute names", "attributes")
    for k, name in enumerate(attributes):
        if entity_type is None or not _has_attribute(entity_type, name, False):
            owner_name = entity_type.name if entity_type else "a rule without type"
            raise RuleError(
                f"attributes[{k}]: {owner_name} has no attribute {name!r}", f"attributes[{k}]"
            )
    condition = None
    if "condition" in doc:
        condition = compile_expression(doc["condition"], "condition", entity_type, registry)
    trigger = _trigger(_need(doc, "trigger", ""), entity_type, condition is not None)
    if trigger["kind"] == "cron" and condition is not None:
        raise RuleError("a cron rule has no change to test a condition on", "condition")
    if trigger["kind"] == "threshold" and attributes and trigger["attribute"] not in attributes:
        attributes = [*attributes, trigger["attribute"]]
    actions = _need(doc, "actions", "")
    if not isinstance(actions, list) or not 0 < len(actions) <= MAX_ACTIONS:
        raise RuleError(f"actions must be a list of 1 to {MAX_ACTIONS} actions", "actions")
    compiled = tuple(_action(a, k, doc, entity_type, registry) for k, a in enumerate(actions))
    guard = _object(doc.get("loopGuard", DEFAULT_GUARD), "loopGuard", frozenset({"max", "within"}))
    guard_max = int(_number(guard.get("max", DEFAULT_GUARD["max"]), "loopGuard.max", 1, 10_000))
    guard_within = _number(
        guard.get("within", DEFAULT_GUARD["within"]), "loopGuard.within", 1, 3600
    )
    return Rule(
        id=rule_id,
        version=version,
        owner=owner,
        enabled=enabled,
        type=None if entity_type is None else entity_type.name,
        attributes=tuple(attributes),
        trigger=trigger,
        condition=condition,
        actions=compiled,
        guard_max=guard_max,
        guard_within_s=guard_within,
        doc=dict(doc),
        needs=_needs(condition, trigger),
    )
