"""Anonymous reads: the entity types a city opens to anyone (setting ``public_read_types``).

A caller without a credential is :data:`ANONYMOUS`; where an endpoint admits it (the
NGSI-LD entity and temporal reads), it sees the entities of the public types and
nothing else — no write, no other type, and never a restricted type (police units,
cameras), whatever the setting says. Personal identifiers stay masked for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from citypilot.security.scopes import Grant, TypePolicy, Visibility
from citypilot.security.tokens import Principal

#: the role of a caller without a credential; no role check admits it (roles.ROLES)
ANONYMOUS_ROLE = "anonymous"
ANONYMOUS = Principal("anonymous", ANONYMOUS_ROLE)


def is_anonymous(principal: Principal) -> bool:
    """Whether the caller came without a credential."""
    return principal.role == ANONYMOUS_ROLE


def check_public_types(types: Iterable[str], registry: Any) -> None:
    """Refuse (ValueError, at start) a public type that is restricted: such types are
    never opened, whatever the setting says."""
    restricted = sorted(t for t in types if t in TypePolicy.of(registry).restricted)
    if restricted:
        raise ValueError(
            f"public_read_types names restricted types {restricted}: "
            "they are visible only to grants naming their department and never public"
        )


@dataclass(frozen=True)
class PublicVisibility(Visibility):
    """What an anonymous caller sees: the entities of ``types`` (restricted types
    excepted), in every municipality and department."""

    types: frozenset[str] = frozenset()

    def covers(self, type_name: str, municipality: str | None, department: str | None) -> bool:
        """Whether an entity of this type is public."""
        return type_name in self.types and type_name not in self.policy.restricted

    @property
    def everything(self) -> bool:
        """Never: the store always filters by type."""
        return False

    def sql(self, placeholder: str) -> tuple[str, list[Any]]:
        """The condition on the entity row ``e``: its type is public."""
        shown = sorted(self.types - self.policy.restricted)
        if not shown:
            return "FALSE", []
        return f"e.type IN ({', '.join([placeholder] * len(shown))})", shown


def public_visibility(types: Iterable[str], policy: TypePolicy, needed: str) -> Visibility:
    """The anonymous caller's visibility at level ``needed``: the public types to see,
    nothing to change."""
    if needed != "viewer":
        return Visibility((), policy)
    return PublicVisibility((Grant("viewer"),), policy, frozenset(types))
