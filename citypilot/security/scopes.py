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
    values = optional_names(doc, ("municipality", "department"), where)
    return Grant(role, values["municipality"], values["department"])


def optional_names(doc: dict[str, Any], keys: tuple[str, ...], where: str) -> dict[str, Any]:
    """Each of ``keys`` of ``doc``: None when absent, else a non-empty string
    (BadRequestData naming ``where.key`` otherwise)."""
    values = {}
    for key in keys:
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise BadRequestData(f"{where}.{key} must be a non-empty string", f"{where}.{key}")
        values[key] = value
    return values


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


# -- what a principal may see and change --------------------------------------

#: The relationship and property that place an entity in a municipality and a department.
MUNICIPALITY_ATTR = "refMunicipality"
DEPARTMENT_ATTR = "department"
#: The type whose entities are municipalities: each belongs to itself.
MUNICIPALITY_TYPE = "Municipality"


def entity_scope(entity_id: str, type_name: str, values: Any) -> tuple[str | None, str | None]:
    """The (municipality, department) an entity belongs to, from its attribute values.

    ``values`` maps attribute names to plain values (``refMunicipality`` to the id
    it points at). A municipality entity belongs to itself. The stores keep these
    two as indexed columns; a missing department falls back to the type's at query
    time (see ``Visibility``).
    """
    municipality = values.get(MUNICIPALITY_ATTR)
    if municipality is None and type_name == MUNICIPALITY_TYPE:
        municipality = entity_id
    department = values.get(DEPARTMENT_ATTR)
    return (
        municipality if isinstance(municipality, str) else None,
        department if isinstance(department, str) else None,
    )


@dataclass(frozen=True)
class TypePolicy:
    """What scopes need to know of the registered types.

    ``departments``: each type's own department (for entities that name none);
    ``restricted``: the types visible only to grants naming their department.
    """

    departments: dict[str, str]
    restricted: frozenset[str] = frozenset()

    @classmethod
    def of(cls, registry: Any) -> TypePolicy:
        """The policy of a type registry (``model.types.TypeRegistry``)."""
        types = list(registry)
        return cls(
            {t.name: t.department for t in types},
            frozenset(t.name for t in types if getattr(t, "restricted", False)),
        )


@dataclass(frozen=True)
class Visibility:
    """The entities a principal's grants cover for one level of role (see, or change).

    An entity is covered by a grant when the grant's municipality is absent or is
    the entity's, and its department is absent or is the entity's (the type's
    department when the entity names none). A restricted type is covered only by
    grants that name its department. ``grants`` holds only grants whose role is
    high enough; none means nothing is covered.
    """

    grants: tuple[Grant, ...]
    policy: TypePolicy

    def covers(self, type_name: str, municipality: str | None, department: str | None) -> bool:
        """Whether an entity of this type, municipality and department is covered."""
        policy = self.policy
        own = policy.departments.get(type_name)
        restricted = type_name in policy.restricted
        effective = department or own
        for g in self.grants:
            if g.municipality is not None and g.municipality != municipality:
                continue
            if restricted:
                if g.department == own:
                    return True
            elif g.department is None or g.department == effective:
                return True
        return False

    @property
    def everything(self) -> bool:
        """Whether every entity is covered (no condition needed in a query)."""
        return any(g.is_metropole for g in self.grants) and not self.policy.restricted

    def sql(self, placeholder: str) -> tuple[str, list[Any]]:
        """A SQL condition on the entity row ``e`` (columns type, municipality, department).

        Filtering happens in the store's query, so pages and counts are right.
        """
        if self.everything:
            return "TRUE", []
        params: list[Any] = []

        def among(column: str, values: Any, negate: bool = False) -> str:
            values = sorted(values)
            if not values:
                return "TRUE" if negate else "FALSE"
            params.extend(values)
            marks = ", ".join([placeholder] * len(values))
            return f"{column} {'NOT IN' if negate else 'IN'} ({marks})"

        policy = self.policy
        clauses = []
        for g in dict.fromkeys(self.grants):
            parts = []
            if g.municipality is not None:
                params.append(g.municipality)
                parts.append(f"e.municipality = {placeholder}")
            if g.department is None:
                parts.append(among("e.type", policy.restricted, negate=True))
            else:
                unrestricted = among("e.type", policy.restricted, negate=True)
                params.append(g.department)
                named = f"e.department = {placeholder}"
                defaults = [
                    t
                    for t, d in policy.departments.items()
                    if d == g.department and t not in policy.restricted
                ]
                fallback = "e.department IS NULL AND " + among("e.type", defaults)
                own_restricted = among(
                    "e.type",
                    [t for t in policy.restricted if policy.departments.get(t) == g.department],
                )
                parts.append(
                    f"(({unrestricted} AND ({named} OR ({fallback}))) OR {own_restricted})"
                )
            clauses.append("(" + " AND ".join(parts) + ")")
        if not clauses:
            return "FALSE", []
        return "(" + " OR ".join(clauses) + ")", params


def effective_grants(role: str, grants: tuple[Grant, ...]) -> tuple[Grant, ...]:
    """A principal's grants: its explicit ones, or its role over the metropole."""
    return grants or (metropole_grant(role),)


def visibility(role: str, grants: tuple[Grant, ...], needed: str, policy: TypePolicy) -> Visibility:
    """What a principal with ``role`` and ``grants`` may do at the level ``needed``."""
    from citypilot.security.roles import role_allows

    kept = tuple(g for g in effective_grants(role, grants) if role_allows(g.role, needed))
    return Visibility(kept, policy)


def sees_personal(role: str, grants: tuple[Grant, ...], policy: TypePolicy) -> Visibility:
    """Where a principal may see personal identifiers (pseudonyms) rather than a mask:
    entities covered by an operator (or admin) grant that names their department."""
    named = tuple(g for g in effective_grants(role, grants) if g.department is not None)
    return visibility(role, named, "operator", policy) if named else Visibility((), policy)
