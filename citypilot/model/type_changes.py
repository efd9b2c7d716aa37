"""What a new declaration of an entity type changes, and which changes stored data breaks.

A change is *compatible* when every value the old declaration accepted is still
accepted: new attributes, wider ranges, more choices, integer widened to number, new
commands, another description. Anything else (an attribute removed, its kind, value
kind, unit or relationship target changed, a range or a list of choices narrowed) is
a *narrowing*; it breaks the stored entities whose values the new declaration refuses,
and for a removed attribute or a changed kind, unit or target, every entity having it.
Built-in types may only change compatibly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.types import AttributeSpec, EntityType, ValueRefused, compile_checker

ChangeKind = Literal["removed", "kind", "value", "unit", "target", "range", "choices"]
#: Narrowings that break every entity having the attribute, whatever its value.
BREAK_ALL: frozenset[str] = frozenset({"removed", "kind", "unit", "target"})
BUILTIN_NAMES: frozenset[str] = frozenset(t.name for t in BUILTIN_TYPES)


@dataclass(frozen=True)
class Narrowing:
    """One attribute that the new declaration narrows, and how."""

    attribute: str
    change: ChangeKind
    detail: str
    new: AttributeSpec | None  # None when removed

    def breaks(self, value: Any) -> bool:
        """Whether a stored value of the attribute is refused by the new declaration."""
        if self.change in BREAK_ALL or self.new is None:
            return True
        try:
            compile_checker(self.new)(value)
        except ValueRefused:
            return True
        return False


def _bounds(spec: AttributeSpec) -> tuple[float, float]:
    lo = -math.inf if spec.minimum is None else spec.minimum
    hi = math.inf if spec.maximum is None else spec.maximum
    return lo, hi


def _narrowing(name: str, old: AttributeSpec, new: AttributeSpec) -> Narrowing | None:
    if old.kind != new.kind:
        return Narrowing(name, "kind", f"kind {old.kind} -> {new.kind}", new)
    if old.value != new.value and (old.value, new.value) != ("integer", "number"):
        return Narrowing(name, "value", f"value {old.value} -> {new.value}", new)
    if old.unit != new.unit:
        return Narrowing(name, "unit", f"unit {old.unit} -> {new.unit}", new)
    if old.target != new.target:
        return Narrowing(name, "target", f"target {old.target} -> {new.target}", new)
    (old_lo, old_hi), (new_lo, new_hi) = _bounds(old), _bounds(new)
    if new_lo > old_lo or new_hi < old_hi:
        detail = f"range {old.minimum}..{old.maximum} -> {new.minimum}..{new.maximum}"
        return Narrowing(name, "range", detail, new)
    if new.choices is not None and (old.choices is None or set(old.choices) - set(new.choices)):
        dropped = sorted(set(old.choices or ()) - set(new.choices))
        detail = f"choices no longer include {dropped}" if dropped else "choices now required"
        return Narrowing(name, "choices", detail, new)
    return None


def narrowings(old: EntityType, new: EntityType) -> list[Narrowing]:
    """The attributes ``new`` narrows compared with ``old`` (both with common attributes)."""
    found = []
    for name, spec in old.attributes.items():
        if name not in new.attributes:
            found.append(Narrowing(name, "removed", "attribute removed", None))
            continue
        narrowing = _narrowing(name, spec, new.attributes[name])
        if narrowing is not None:
            found.append(narrowing)
    return found


def same_declaration(old: EntityType, new: EntityType) -> bool:
    """Whether two declarations say the same thing (their versions aside)."""
    return {**old.to_json(), "version": 0} == {**new.to_json(), "version": 0}
