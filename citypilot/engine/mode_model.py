"""What a city mode is: a named bundle of policies for a scope, read from a data file.

A mode (``engine/modes/<name>.toml``) lists:

* ``level`` — the operational level (1–5) the city is at while the mode is on;
* ``[[steps]]`` — what to do on entry: either send a command to every entity a
  selection matches in the scope (``select`` = type + optional ``q`` condition in the
  NGSI-LD query language, ``via`` a relationship whose target must match, ``near`` a
  map layer's lines, ``inZones`` zones of some categories), or ``action =
  "closeRoads"`` (close the streets inside zones of some categories). Each command
  step says how to restore (``[steps.restore]``: the command and arguments that bring
  the device back to what it reported before the mode), and may be sent again every
  ``renewEvery`` seconds while the mode is on (a command whose effect lapses by itself,
  such as a signal priority request);
* ``[rules]`` ``enable``/``disable`` — rule ids switched while the mode is on;
* ``[[suppress]]`` — alarms suppressed by design while the mode is on (by rule id).

Everything is checked when the file is read, against the registered types and their
commands, so a mode that loads can be entered: an unknown type, command, argument
or attribute is a :class:`ModeDefinitionError` naming the file and the field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from citypilot.model.errors import BadRequestData
from citypilot.model.types import EntityType, TypeRegistry
from citypilot.store.query import QueryNode, parse_q

#: Operational levels, after the stages a city operations centre runs at.
LEVELS: dict[int, str] = {
    1: "normal",
    2: "mobilisation",
    3: "attention",
    4: "alert",
    5: "beyond capacity",
}
#: Values an argument template can take besides constants (``{ref = ...}``).
REFS = ("command", "approach")
STEP_ACTIONS = ("command", "closeRoads")


class ModeDefinitionError(ValueError):
    """A mode file that cannot be used: which file, which field, what is wrong."""


@dataclass(frozen=True)
class Near:
    """Entities within ``distance_m`` of a map layer's lines (features matching ``where``)."""

    layer: str
    where: Mapping[str, Any]
    distance_m: float


@dataclass(frozen=True)
class Via:
    """Entities whose relationship ``attr`` points at an entity of ``type`` matching ``q``."""

    attr: str
    type: str
    q: QueryNode | None
    q_text: str | None


@dataclass(frozen=True)
class Selection:
    """Which entities a step acts on, within the scope the mode is entered for."""

    type: str
    q: QueryNode | None = None
    q_text: str | None = None
    via: Via | None = None
    near: Near | None = None
    in_zones: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The selection as ``GET /api/v1/modes/catalogue`` shows it."""
        out: dict[str, Any] = {"type": self.type}
        if self.q_text:
            out["q"] = self.q_text
        if self.via is not None:
            out["via"] = {"attr": self.via.attr, "type": self.via.type, "q": self.via.q_text}
        if self.near is not None:
            out["near"] = {
                "layer": self.near.layer,
                "where": dict(self.near.where),
                "distanceM": self.near.distance_m,
            }
        if self.in_zones:
            out["inZones"] = list(self.in_zones)
        return out


@dataclass(frozen=True)
class Restore:
    """The command that brings a device back, with argument templates; ``when_unknown``
    gives the arguments to use when the device never reported the attribute before."""

    command: str
    args: Mapping[str, Any] = field(default_factory=dict)
    when_unknown: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One thing a mode does on entry (and undoes on leaving)."""

    id: str
    action: str
    description: str
    select: Selection | None = None
    command: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    restore: Restore | None = None
    zones: tuple[str, ...] = ()
    #: Seconds between sending the command again while the mode is on (None: once).
    renew_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The step as the catalogue shows it."""
        out: dict[str, Any] = {
            "id": self.id,
            "action": self.action,
            "description": self.description,
        }
        if self.select is not None:
            out["select"] = self.select.to_json()
        if self.command is not None:
            out["command"] = self.command
            out["args"] = dict(self.args)
        if self.restore is not None:
            out["restore"] = {"command": self.restore.command, "args": dict(self.restore.args)}
        if self.renew_s is not None:
            out["renewEvery"] = self.renew_s
        if self.zones:
            out["zones"] = list(self.zones)
        return out


@dataclass(frozen=True)
class ModeDefinition:
    """A mode as its file declares it (checked)."""

    name: str
    title: str
    description: str
    level: int
    steps: tuple[Step, ...]
    rules_enable: tuple[str, ...] = ()
    rules_disable: tuple[str, ...] = ()
    suppress: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The mode as ``GET /api/v1/modes/catalogue`` shows it."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "level": self.level,
            "levelName": LEVELS[self.level],
            "steps": [s.to_json() for s in self.steps],
            "rules": {"enable": list(self.rules_enable), "disable": list(self.rules_disable)},
            "suppress": [{"rule": r} for r in self.suppress],
            "notes": list(self.notes),
        }


def _err(where: str, message: str) -> ModeDefinitionError:
    return ModeDefinitionError(f"{where}: {message}")


def _text(doc: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or not value:
        raise _err(f"{where}.{key}", "must be a non-empty string")
    return value


def _texts(doc: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(f"{where}.{key}", "must be a list of non-empty strings")
    return tuple(value)


def _only(doc: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(doc) - keys)
    if unknown:
        raise _err(f"{where}.{unknown[0]}", "is not a field here")


def _query(text: Any, where: str) -> QueryNode | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise _err(where, "must be a query string (NGSI-LD q)")
    try:
        return parse_q(text)
    except BadRequestData as exc:
        raise _err(where, str(exc)) from None


def _check_attrs(node: QueryNode | None, entity_type: EntityType, where: str) -> None:
    from citypilot.store.query import attr_names

    if node is None:
        return
    for name in sorted(attr_names(node)):
        if name not in entity_type.attributes:
            raise _err(where, f"{entity_type.name} has no attribute {name!r}")


def _type(registry: TypeRegistry, name: Any, where: str) -> EntityType:
    if not isinstance(name, str) or name not in registry:
        raise _err(where, f"{str(name)[:60]!r} is not a registered type")
    return registry.get(name)


def _selection(doc: Any, registry: TypeRegistry, where: str) -> Selection:
    if not isinstance(doc, dict):
        raise _err(where, "must be a table with type (and q, via, near, inZones)")
    _only(doc, {"type", "q", "via", "near", "inZones"}, where)
    entity_type = _type(registry, doc.get("type"), f"{where}.type")
    q = _query(doc.get("q"), f"{where}.q")
    _check_attrs(q, entity_type, f"{where}.q")
    via = None
    if "via" in doc:
        v = doc["via"]
        vw = f"{where}.via"
        if not isinstance(v, dict):
            raise _err(vw, "must be a table with attr, type and q")
        _only(v, {"attr", "type", "q"}, vw)
        attr = _text(v, "attr", vw)
        spec = entity_type.attributes.get(attr)
        if spec is None or spec.kind != "Relationship":
            raise _err(f"{vw}.attr", f"{entity_type.name} has no relationship {attr!r}")
        target = _type(registry, v.get("type"), f"{vw}.type")
        vq = _query(v.get("q"), f"{vw}.q")
        _check_attrs(vq, target, f"{vw}.q")
        via = Via(attr, target.name, vq, v.get("q"))
    near = None
    if "near" in doc:
        n = doc["near"]
        nw = f"{where}.near"
        if not isinstance(n, dict):
            raise _err(nw, "must be a table with layer, where and distanceM")
        _only(n, {"layer", "where", "distanceM"}, nw)
        distance = n.get("distanceM", 30)
        if isinstance(distance, bool) or not isinstance(distance, int | float):
            raise _err(f"{nw}.distanceM", "must be a number of metres")
        if not 0 < distance <= 1000:
            raise _err(f"{nw}.distanceM", "must lie in (0, 1000] metres")
        match = n.get("where", {})
        if not isinstance(match, dict):
            raise _err(f"{nw}.where", "must be a table of feature properties")
        near = Near(_text(n, "layer", nw), match, float(distance))
    zones = _texts(doc, "inZones", where)
    return Selection(entity_type.name, q, doc.get("q"), via, near, zones)


def _check_template(value: Any, where: str) -> None:
    if isinstance(value, dict):
        _only(value, {"ref", "before"}, where)
        if "ref" in value:
            if value["ref"] not in REFS:
                raise _err(f"{where}.ref", f"must be one of {', '.join(REFS)}")
        elif not isinstance(value.get("before"), str):
            raise _err(where, "a template needs ref or before (an attribute name)")


def _sample_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments with templates replaced by a plausible value, to check them once."""
    out: dict[str, Any] = {}
    for name, value in args.items():
        if isinstance(value, dict):
            out[name] = {"command": "cmd-sample", "approach": "north"}.get(value.get("ref"))
        else:
            out[name] = value
    return {k: v for k, v in out.items() if v is not None}


def _command(
    entity_type: EntityType, name: Any, args: Any, where: str, check_values: bool = True
) -> dict[str, Any]:
    from citypilot.engine.command_model import check_args, command_spec

    if not isinstance(args, dict):
        raise _err(f"{where}.args", "must be a table")
    try:
        spec = command_spec(entity_type, name)
    except BadRequestData as exc:
        raise _err(f"{where}.command", str(exc)) from None
    for arg, value in args.items():
        _check_template(value, f"{where}.args.{arg}")
    missing = sorted(set(spec.parameters) - set(args))
    if missing:
        raise _err(f"{where}.args.{missing[0]}", f"is required by {spec.name}")
    if check_values:
        sample = _sample_args(args)
        try:
            check_args(spec, sample | {k: v for k, v in args.items() if k not in sample})
        except BadRequestData as exc:
            raise _err(where, str(exc)) from None
    return dict(args)


def _step(doc: Any, registry: TypeRegistry, where: str) -> Step:
    if not isinstance(doc, dict):
        raise _err(where, "must be a table")
    action = doc.get("action", "command")
    if action not in STEP_ACTIONS:
        raise _err(f"{where}.action", f"must be one of {', '.join(STEP_ACTIONS)}")
    step_id = _text(doc, "id", where)
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise _err(f"{where}.description", "must be a string")
    if action == "closeRoads":
        _only(doc, {"id", "action", "description", "zones"}, where)
        zones = _texts(doc, "zones", where)
        if not zones:
            raise _err(f"{where}.zones", "names the zone categories whose roads close")
        return Step(step_id, action, description, zones=zones)
    _only(
        doc,
        {"id", "action", "description", "select", "command", "args", "restore", "renewEvery"},
        where,
    )
    renew = doc.get("renewEvery")
    if renew is not None and (
        isinstance(renew, bool) or not isinstance(renew, int | float) or not 10 <= renew <= 86400
    ):
        raise _err(f"{where}.renewEvery", "must be seconds, 10 to 86,400")
    select = _selection(doc.get("select"), registry, f"{where}.select")
    entity_type = registry.get(select.type)
    args = _command(entity_type, doc.get("command"), doc.get("args", {}), where)
    r = doc.get("restore")
    rw = f"{where}.restore"
    if not isinstance(r, dict):
        raise _err(rw, "says how to bring each device back (command, args, whenUnknown)")
    _only(r, {"command", "args", "whenUnknown"}, rw)
    r_args = _command(entity_type, r.get("command"), r.get("args", {}), rw, check_values=False)
    unknown = r.get("whenUnknown", {})
    if not isinstance(unknown, dict) or set(unknown) - set(r_args):
        raise _err(f"{rw}.whenUnknown", "gives fallback values for restore arguments only")
    restore = Restore(r["command"], r_args, unknown)
    renew_s = None if renew is None else float(renew)
    return Step(step_id, action, description, select, doc["command"], args, restore, (), renew_s)


def parse_mode(doc: Mapping[str, Any], registry: TypeRegistry, where: str) -> ModeDefinition:
    """A checked mode from its parsed file; ModeDefinitionError naming the field."""
    _only(
        doc, {"name", "title", "description", "level", "steps", "rules", "suppress", "notes"}, where
    )
    name = _text(doc, "name", where)
    level = doc.get("level")
    if isinstance(level, bool) or level not in LEVELS:
        raise _err(f"{where}.level", "must be an operational level 1..5")
    raw_steps = doc.get("steps", [])
    if not isinstance(raw_steps, list):
        raise _err(f"{where}.steps", "must be an array of tables")
    steps = tuple(_step(s, registry, f"{where}.steps[{i}]") for i, s in enumerate(raw_steps))
    ids = [s.id for s in steps]
    if len(set(ids)) != len(ids):
        raise _err(f"{where}.steps", "step ids must differ")
    rules = doc.get("rules", {})
    if not isinstance(rules, dict):
        raise _err(f"{where}.rules", "must be a table with enable and disable")
    _only(rules, {"enable", "disable"}, f"{where}.rules")
    enable, disable = (
        _texts(rules, "enable", f"{where}.rules"),
        _texts(rules, "disable", f"{where}.rules"),
    )
    if set(enable) & set(disable):
        raise _err(f"{where}.rules", "a rule cannot be both enabled and disabled")
    suppress = doc.get("suppress", [])
    if not isinstance(suppress, list):
        raise _err(f"{where}.suppress", "must be an array of tables with rule")
    suppressed = []
    for i, s in enumerate(suppress):
        sw = f"{where}.suppress[{i}]"
        if not isinstance(s, dict):
            raise _err(sw, "must be a table with rule")
        _only(s, {"rule"}, sw)
        suppressed.append(_text(s, "rule", sw))
    return ModeDefinition(
        name,
        _text(doc, "title", where, name),
        doc.get("description", "") if isinstance(doc.get("description"), str) else "",
        level,
        steps,
        enable,
        disable,
        tuple(suppressed),
        _texts(doc, "notes", where),
    )


def builtin_mode_files() -> list[Path]:
    """The mode files shipped with CityPilot (``engine/modes/*.toml``), by name."""
    folder = Path(str(files("citypilot.engine").joinpath("modes")))
    return sorted(folder.glob("*.toml"))


def load_modes(
    registry: TypeRegistry, paths: list[Path] | None = None
) -> dict[str, ModeDefinition]:
    """Every mode of ``paths`` (default: the built-in ones), checked; name → mode."""
    out: dict[str, ModeDefinition] = {}
    for path in builtin_mode_files() if paths is None else paths:
        try:
            doc = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ModeDefinitionError(f"{path.name}: {exc}") from None
        mode = parse_mode(doc, registry, path.name)
        if mode.name in out:
            raise ModeDefinitionError(f"{path.name}: a mode {mode.name!r} is defined twice")
        out[mode.name] = mode
    return out
