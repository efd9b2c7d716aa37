"""The type registry: which entity types the city has, their attributes, units, ranges, commands.

A type is declared once (built in, through the admin API, or in a config file) and
compiled into fast per-attribute validators used on the ingest hot path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from citypilot.model import columns
from citypilot.model.columns import ColumnCheck
from citypilot.model.errors import BadRequestData

ValueKind = Literal["number", "integer", "string", "boolean", "object", "array", "datetime"]
AttrKind = Literal["Property", "Relationship", "GeoProperty"]
VALUE_KINDS: frozenset[str] = frozenset(
    {"number", "integer", "string", "boolean", "object", "array", "datetime"}
)
ATTR_KINDS: frozenset[str] = frozenset({"Property", "Relationship", "GeoProperty"})
MAX_STRING = 1024

#: Validates one attribute value and returns (normalised value, numeric value or None);
#: raises ValueRefused with the reason (the caller knows where the value sits).
Checker = Callable[[Any], tuple[Any, float | None]]

#: What ingest checks one Property with: its checker, its unit, its column check.
IngestCheck = tuple[Checker, "str | None", "ColumnCheck | None"]


class ValueRefused(ValueError):
    """A value does not fit its attribute; ``reason`` reads after the field path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_value(checker: Checker, value: Any, where: str) -> tuple[Any, float | None]:
    """Run a checker; BadRequestData naming ``where`` when the value is refused."""
    try:
        return checker(value)
    except ValueRefused as exc:
        raise BadRequestData(f"{where} {exc.reason}", where) from None


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute of a type: kind, value kind, unit (UN/CEFACT code), range or choices."""

    name: str
    kind: AttrKind = "Property"
    value: ValueKind = "number"
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    description: str = ""
    target: str | None = None  # entity type a Relationship points to
    max_length: int | None = None  # longest string allowed (default MAX_STRING)
    #: Personal identifiers (pseudonymised at ingest, masked for most roles): None if
    #: the attribute holds none; () if its whole value is one; else the members of its
    #: object value that are (``("badge",)``).
    personal: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of this attribute, as served by the types API."""
        out: dict[str, Any] = {"kind": self.kind, "value": self.value}
        for key in ("unit", "minimum", "maximum", "description", "target"):
            val = getattr(self, key)
            if val not in (None, ""):
                out[key] = val
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.personal is not None:
            out["personal"] = list(self.personal) if self.personal else True
        return out


@dataclass(frozen=True)
class Confirmation:
    """How a reported attribute confirms a command: the value the device must report.

    The value is ``value`` (a constant), or taken from the argument ``arg`` — through
    ``choices`` (argument value → reported value) or multiplied by ``scale``. Numbers
    match within ``tolerance``.
    """

    value: Any = None
    arg: str | None = None
    scale: float | None = None
    choices: Mapping[str, Any] | None = None
    tolerance: float = 0.0

    def expected(self, args: Mapping[str, Any]) -> Any:
        """The reported value that confirms a command with these (checked) arguments."""
        if self.arg is None:
            return self.value
        given = args.get(self.arg)
        if self.choices is not None:
            return self.choices.get(given)
        if self.scale is not None and isinstance(given, int | float):
            return round(given * self.scale, 6)
        return given

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of this confirmation, as served by the types API."""
        out: dict[str, Any] = {}
        if self.arg is None:
            out["value"] = self.value
        else:
            out["arg"] = self.arg
        if self.scale is not None:
            out["scale"] = self.scale
        if self.choices is not None:
            out["choices"] = dict(self.choices)
        if self.tolerance:
            out["tolerance"] = self.tolerance
        return out


DEFAULT_COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CommandSpec:
    """A command an entity of the type accepts: its parameters, which reported attributes
    confirm it, how long the device has to confirm it, and whether it is destructive
    (``destructive``: always; ``destructive_when``: for these argument values)."""

    name: str
    parameters: Mapping[str, AttributeSpec] = field(default_factory=dict)
    description: str = ""
    confirms: Mapping[str, Confirmation] = field(default_factory=dict)
    timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    destructive: bool = False
    destructive_when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of this command, as served by the types API."""
        out: dict[str, Any] = {
            "description": self.description,
            "parameters": {n: p.to_json() for n, p in self.parameters.items()},
            "confirms": {n: c.to_json() for n, c in self.confirms.items()},
            "timeoutS": self.timeout_s,
            "destructive": self.destructive,
        }
        if self.destructive_when:
            out["destructiveWhen"] = {k: list(v) for k, v in self.destructive_when.items()}
        return out


@dataclass(frozen=True)
class EntityType:
    """A registered entity type: its silo (department), attributes and commands."""

    name: str
    department: str
    description: str = ""
    data_model: str | None = None  # FIWARE Smart Data Model it follows
    attributes: Mapping[str, AttributeSpec] = field(default_factory=dict)
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)
    #: Visible only to grants that name this type's department (CCTV, police units).
    restricted: bool = False
    version: int = 1  # counts the registered declarations of this name (see type_changes)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of this type, as served by the types API and read back by it."""
        return {
            "name": self.name,
            "version": self.version,
            "department": self.department,
            "description": self.description,
            "dataModel": self.data_model,
            "restricted": self.restricted,
            "attributes": {n: a.to_json() for n, a in self.attributes.items()},
            "commands": {n: c.to_json() for n, c in self.commands.items()},
        }


def _number_checker(spec: AttributeSpec) -> Checker:
    lo = -math.inf if spec.minimum is None else spec.minimum
    hi = math.inf if spec.maximum is None else spec.maximum
    integer = spec.value == "integer"
    unit = f" {spec.unit}" if spec.unit else ""

    def check(value: Any) -> tuple[Any, float | None]:
        cls = type(value)
        if cls is int or (cls is float and not integer):
            if not (lo <= value <= hi):  # NaN fails both comparisons
                raise ValueRefused(
                    f"= {value} is outside the range {spec.minimum}..{spec.maximum}{unit}"
                )
            return value, float(value)
        if cls is float and integer and value.is_integer():
            return check(int(value))
        raise ValueRefused(f"must be {'an integer' if integer else 'a number'}")

    return check


def _string_checker(spec: AttributeSpec) -> Checker:
    choices = frozenset(spec.choices) if spec.choices else None
    longest = spec.max_length or MAX_STRING

    def check(value: Any) -> tuple[Any, float | None]:
        if type(value) is not str:
            raise ValueRefused("must be a string")
        if choices is not None and value not in choices:
            raise ValueRefused(f"= {value[:40]!r} is not one of {sorted(choices)}")
        if len(value) > longest:
            raise ValueRefused(f"is longer than {longest} characters")
        return value, None

    return check


def _datetime_checker(spec: AttributeSpec) -> Checker:
    from citypilot.model.timeutil import parse_instant

    def check(value: Any) -> tuple[Any, float | None]:
        try:
            parse_instant(value, "", bounded=False)  # kept as text, never converted
        except BadRequestData as exc:
            raise ValueRefused(exc.detail.lstrip()) from None
        return value, None

    return check


def _plain_checker(py_type: type, label: str) -> Callable[[AttributeSpec], Checker]:
    def build(spec: AttributeSpec) -> Checker:
        def check(value: Any) -> tuple[Any, float | None]:
            if type(value) is not py_type:
                raise ValueRefused(f"must be {label}")
            if py_type is bool:
                return value, 1.0 if value else 0.0
            return value, None

        return check

    return build


_CHECKER_BUILDERS: dict[str, Callable[[AttributeSpec], Checker]] = {
    "number": _number_checker,
    "integer": _number_checker,
    "string": _string_checker,
    "datetime": _datetime_checker,
    "boolean": _plain_checker(bool, "true or false"),
    "object": _plain_checker(dict, "a JSON object"),
    "array": _plain_checker(list, "a JSON array"),
}


def compile_checker(spec: AttributeSpec) -> Checker:
    """Build the fast value checker of one attribute spec."""
    return _CHECKER_BUILDERS[spec.value](spec)


def compile_column_check(spec: AttributeSpec) -> ColumnCheck | None:
    """The check of a whole column of one attribute's values (see ``model.columns``), or
    None where each value needs its checker (date-times, objects, arrays)."""
    if spec.value in ("number", "integer"):
        lo = -math.inf if spec.minimum is None else spec.minimum
        hi = math.inf if spec.maximum is None else spec.maximum
        return columns.numbers(lo, hi, spec.value == "integer")
    if spec.value == "string":
        choices = frozenset(spec.choices) if spec.choices else None
        return columns.strings(choices, spec.max_length or MAX_STRING)
    if spec.value == "boolean":
        return columns.booleans
    return None


def with_common_attributes(entity_type: EntityType) -> EntityType:
    """The type as the registry holds it: the common attributes merged under its own."""
    from citypilot.model.builtin_types import COMMON_ATTRIBUTES

    return replace(entity_type, attributes={**COMMON_ATTRIBUTES, **entity_type.attributes})


class TypeRegistry:
    """All registered entity types, with compiled per-attribute checkers."""

    def __init__(
        self,
        types: Iterable[EntityType] = (),
        pseudonymise: Callable[[Any], Any] | None = None,
    ) -> None:
        """``pseudonymise`` turns each personal identifier into its pseudonym as values
        are checked (see ``security.privacy``); None keeps them as sent."""
        self._pseudonymise = pseudonymise
        self._types: dict[str, EntityType] = {}
        self._checkers: dict[str, dict[str, Checker]] = {}
        self._ingest: dict[str, dict[str, IngestCheck]] = {}
        for entity_type in types:
            self.register(entity_type)

    def register(self, entity_type: EntityType) -> None:
        """Add or replace a type; common attributes are merged into it."""
        merged = with_common_attributes(entity_type)
        attrs = merged.attributes
        self._types[merged.name] = merged
        self._checkers[merged.name] = checkers = {
            name: self._personal_checker(spec, compile_checker(spec))
            for name, spec in attrs.items()
            if spec.kind == "Property"
        }
        self._ingest[merged.name] = {
            name: (c, attrs[name].unit, self._column_check(attrs[name]))
            for name, c in checkers.items()
        }

    def _column_check(self, spec: AttributeSpec) -> ColumnCheck | None:
        """Personal values are pseudonymised one by one, by their checker."""
        if spec.personal is not None and self._pseudonymise is not None:
            return None
        return compile_column_check(spec)

    def _personal_checker(self, spec: AttributeSpec, check: Checker) -> Checker:
        """The checker, pseudonymising what it accepts when the attribute is personal."""
        fn = self._pseudonymise
        if spec.personal is None or fn is None:
            return check
        from citypilot.security.privacy import transform

        personal = spec.personal

        def checked(value: Any) -> tuple[Any, float | None]:
            value, num = check(value)
            return transform(personal, value, fn), num

        return checked

    def remove(self, name: str) -> None:
        """Forget a type (the caller made sure no entity has it)."""
        del self._types[name], self._checkers[name], self._ingest[name]

    def get(self, name: object, field: str = "type") -> EntityType:
        """The registered type called ``name``; BadRequestData naming ``field`` otherwise."""
        found = self._types.get(name) if isinstance(name, str) else None
        if found is None:
            raise BadRequestData(
                f"{field} {name!r} is not a registered entity type "
                f"(register it through /api/v1/types or a types file)",
                field,
            )
        return found

    def checkers(self, name: str) -> dict[str, Checker]:
        """The compiled Property checkers of a registered type, by attribute name."""
        return self._checkers[name]

    def ingest_checkers(self, name: str) -> dict[str, IngestCheck]:
        """Per Property of a registered type: its checker, unit and column check (the
        ingest hot path)."""
        return self._ingest[name]

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self):
        return iter(self._types.values())

    def names(self) -> list[str]:
        """The names of all registered types, sorted."""
        return sorted(self._types)


def entity_type_from_json(doc: Any, field: str = "body") -> EntityType:
    """Read a type declaration (the shape ``EntityType.to_json`` writes); validates it fully."""
    if not isinstance(doc, dict):
        raise BadRequestData(f"{field} must be a JSON object", field)
    name = doc.get("name")
    if not isinstance(name, str) or not name.isidentifier() or not name[:1].isupper():
        raise BadRequestData(f"{field}.name must be a CamelCase identifier", f"{field}.name")
    department = doc.get("department")
    if not isinstance(department, str) or not department:
        raise BadRequestData(
            f"{field}.department must be a non-empty string", f"{field}.department"
        )
    attrs_doc = doc.get("attributes", {})
    if not isinstance(attrs_doc, dict):
        raise BadRequestData(f"{field}.attributes must be an object", f"{field}.attributes")
    attributes = {
        attr: _attribute_from_json(attr, spec, f"{field}.attributes.{attr}")
        for attr, spec in attrs_doc.items()
    }
    commands_doc = doc.get("commands", {})
    if not isinstance(commands_doc, dict):
        raise BadRequestData(f"{field}.commands must be an object", f"{field}.commands")
    commands = {}
    for cmd, cdoc in commands_doc.items():
        where = f"{field}.commands.{cmd}"
        params = (cdoc or {}).get("parameters", {}) if isinstance(cdoc, dict) else None
        if not isinstance(params, dict):
            raise BadRequestData(f"{where} must be an object with 'parameters'", where)
        parameters = {
            p: _attribute_from_json(p, s, f"{where}.parameters.{p}") for p, s in params.items()
        }
        commands[cmd] = _command_from_json(cmd, cdoc, parameters, where)
    version = doc.get("version", 1)
    if type(version) is not int or version < 1:
        raise BadRequestData(f"{field}.version must be a positive integer", f"{field}.version")
    return EntityType(
        name=name,
        department=department,
        description=str(doc.get("description", "")),
        data_model=doc.get("dataModel"),
        attributes=attributes,
        commands=commands,
        restricted=_flag_from_json(doc.get("restricted", False), f"{field}.restricted"),
        version=version,
    )


def _flag_from_json(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequestData(f"{where} must be true or false", where)
    return value


def _personal_from_json(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None or value is False:
        return None
    if value is True:
        return ()
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) and v.isidentifier() for v in value)
    ):
        return tuple(value)
    raise BadRequestData(f"{where} must be true or a list of member names", where)


def _attribute_from_json(name: str, spec: Any, where: str) -> AttributeSpec:
    if not isinstance(spec, dict):
        raise BadRequestData(f"{where} must be an object", where)
    kind = spec.get("kind", "Property")
    if kind not in ATTR_KINDS:
        raise BadRequestData(f"{where}.kind must be one of {sorted(ATTR_KINDS)}", f"{where}.kind")
    value = spec.get("value", "number")
    if value not in VALUE_KINDS:
        raise BadRequestData(
            f"{where}.value must be one of {sorted(VALUE_KINDS)}", f"{where}.value"
        )
    for bound in ("minimum", "maximum"):
        if bound in spec and not isinstance(spec[bound], int | float):
            raise BadRequestData(f"{where}.{bound} must be a number", f"{where}.{bound}")
    choices = spec.get("choices")
    if choices is not None and (
        not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)
    ):
        raise BadRequestData(f"{where}.choices must be a list of strings", f"{where}.choices")
    max_length = spec.get("maxLength")
    if max_length is not None and (type(max_length) is not int or max_length < 1):
        raise BadRequestData(f"{where}.maxLength must be a positive integer", f"{where}.maxLength")
    return AttributeSpec(
        name=name,
        kind=kind,
        value=value,
        unit=spec.get("unit"),
        minimum=spec.get("minimum"),
        maximum=spec.get("maximum"),
        choices=tuple(choices) if choices is not None else None,
        description=str(spec.get("description", "")),
        target=spec.get("target"),
        max_length=max_length,
        personal=_personal_from_json(spec.get("personal"), f"{where}.personal"),
    )


def _command_from_json(
    name: str, doc: dict[str, Any], parameters: dict[str, AttributeSpec], where: str
) -> CommandSpec:
    """A command declaration's confirmation, timeout and destructiveness (see CommandSpec)."""
    confirms_doc = doc.get("confirms", {})
    if not isinstance(confirms_doc, dict):
        raise BadRequestData(f"{where}.confirms must be an object", f"{where}.confirms")
    confirms = {}
    for attr, cdoc in confirms_doc.items():
        at = f"{where}.confirms.{attr}"
        if not isinstance(cdoc, dict) or ("arg" not in cdoc and "value" not in cdoc):
            raise BadRequestData(f"{at} must be an object with 'arg' or 'value'", at)
        arg = cdoc.get("arg")
        if arg is not None and arg not in parameters:
            raise BadRequestData(f"{at}.arg {arg!r} is not a parameter of {name}", f"{at}.arg")
        scale, tolerance = cdoc.get("scale"), cdoc.get("tolerance", 0.0)
        for key, val in (("scale", scale), ("tolerance", tolerance)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int | float)):
                raise BadRequestData(f"{at}.{key} must be a number", f"{at}.{key}")
        choices = cdoc.get("choices")
        if choices is not None and not isinstance(choices, dict):
            raise BadRequestData(f"{at}.choices must be an object", f"{at}.choices")
        confirms[attr] = Confirmation(cdoc.get("value"), arg, scale, choices, float(tolerance))
    timeout = doc.get("timeoutS", DEFAULT_COMMAND_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 1 <= timeout <= 86400
    ):
        raise BadRequestData(f"{where}.timeoutS must be 1..86400 seconds", f"{where}.timeoutS")
    when = doc.get("destructiveWhen", {})
    if not isinstance(when, dict) or not all(isinstance(v, list) for v in when.values()):
        raise BadRequestData(
            f"{where}.destructiveWhen must map arguments to lists", f"{where}.destructiveWhen"
        )
    return CommandSpec(
        name=name,
        parameters=parameters,
        description=str(doc.get("description", "")),
        confirms=confirms,
        timeout_s=float(timeout),
        destructive=bool(doc.get("destructive", False)),
        destructive_when={k: tuple(v) for k, v in when.items()},
    )
