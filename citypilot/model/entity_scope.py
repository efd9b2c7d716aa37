"""An entity's ``scope`` (ETSI GS CIM 009 v1.8, clause 4.18): one or more hierarchical
scopes such as ``/Madrid/Gardens/ParqueNorte``, each of levels made of letters, digits
and ``_``, separated by ``/`` (the leading ``/`` is optional)."""

from __future__ import annotations

import re
from typing import Any

from citypilot.model.errors import BadRequestData

#: The reserved member of an entity that holds its scopes.
SCOPE = "scope"
_SCOPE = re.compile(r"/?\w+(/\w+)*")
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 1000


def parse_scopes(raw: Any, where: str) -> list[str]:
    """The scopes an entity's ``scope`` gives (a string or an array of strings);
    BadRequestData naming ``where`` when one is not a scope."""
    items = raw if isinstance(raw, list) else [raw]
    if not items or len(items) > MAX_SCOPES:
        raise BadRequestData(f"{where} holds 1 to {MAX_SCOPES} scopes", where)
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(raw, list) else where
        if not isinstance(item, str) or len(item) > MAX_SCOPE_LENGTH or not _SCOPE.fullmatch(item):
            raise BadRequestData(
                f"{at} must be a scope: levels of letters, digits and _ separated by /"
                " (/Madrid/Gardens)",
                at,
            )
    return list(dict.fromkeys(items))


def scope_member(scopes: list[str]) -> str | list[str]:
    """The ``scope`` member of a rendered entity: one scope as a string, several as an array."""
    return scopes[0] if len(scopes) == 1 else list(scopes)
