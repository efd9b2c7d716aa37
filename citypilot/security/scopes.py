"""Scopes: what part of the metropole a person's role applies to.

A person holds one or more *grants*; each gives a role (``viewer``, ``operator``,
``admin``) over a scope: the whole metropole, one municipality, one department,
or one department within one municipality. An entity belongs to the municipality
its ``refMunicipality`` names and to the department its ``department`` names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from citypilot.model.errors import BadRequestData
from citypilot.security.roles import ROLES


@dataclass(frozen=True)
class Grant:
    """A role over a scope; ``None`` for municipality or department means all of them."""

    role: str
    municipality: str | None = None
    department: str | None = None

    @property
    def is_metropole(self) -> bool:
        """Whether the grant covers the whole metropole (every municipality and department)."""
        return self.municipality is None and self.department is None

    def to_json(self) -> dict[str, Any]:
        """The grant as stored and as the API shows it."""
        doc: dict[str, Any] = {"role": self.role}
        if self.municipality is not None:
            doc["municipality"] = self.municipality
        if self.department is not None:
            doc["department"] = self.department
        return doc


def grant_from_json(doc: Any, where: str = "grant") -> Grant:
    """A grant from its JSON form; BadRequestData naming the field when malformed."""
    if not isinstance(doc, dict):
        message = f"{where} must be an object with role, municipality and department"
        raise BadRequestData(message, where)
    role = doc.get("role")
    if role not in ROLES:
        raise BadRequestData(f"{where}.role must be one of {', '.join(ROLES)}", f"{where}.role")
    extra = set(doc) - {"role", "municipality", "department"}
    if extra:
        raise BadRequestData(f"{where} has unknown members {sorted(extra)}", where)
    values = {}
    for key in ("municipality", "department"):
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise BadRequestData(f"{where}.{key} must be a non-empty string", f"{where}.{key}")
        values[key] = value
    return Grant(role, values["municipality"], values["department"])


def metropole_grant(role: str) -> Grant:
    """A role over the whole metropole (what a person without explicit scopes holds)."""
    return Grant(role)


def grants_to_text(grants: tuple[Grant, ...]) -> str:
    """Grants as the JSON text the stores keep."""
    return orjson.dumps([g.to_json() for g in grants]).decode()


def grants_from_text(text: str | None) -> tuple[Grant, ...]:
    """Grants from the JSON text the stores keep."""
    if not text:
        return ()
    return tuple(grant_from_json(doc, f"grants[{i}]") for i, doc in enumerate(orjson.loads(text)))
