"""``pick`` and ``omit`` (ETSI GS CIM 009 v1.8): which members of each entity
an answer keeps: ``id``, ``type`` and attribute names, the rest dropped (``pick``) or
those dropped (``omit``). They shape what is returned, never which entities match."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from citypilot.model.errors import BadRequestData

#: A member name: an attribute name (a term or an expanded IRI), ``id`` or ``type``.
_MEMBER = re.compile(r"^[^\s,;()\"'<>]{1,256}$")
MAX_MEMBERS = 256


@dataclass(frozen=True)
class Projection:
    """The members to keep (``pick``) or to drop (``omit``)."""

    names: frozenset[str]
    keep: bool

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The entity document with only the chosen members (``@context`` always stays)."""
        if self.keep:
            return {k: v for k, v in doc.items() if k in self.names or k == "@context"}
        return {k: v for k, v in doc.items() if k not in self.names}


def _names(text: str, field: str) -> frozenset[str]:
    names = [n.strip() for n in text.split(",")]
    if not names or len(names) > MAX_MEMBERS or not all(_MEMBER.match(n) for n in names):
        raise BadRequestData(
            f"{field} must be a comma-separated list of up to {MAX_MEMBERS} member names"
            " (id, type or attribute names)",
            field,
        )
    return frozenset(names)


def parse_projection(pick: str | None, omit: str | None) -> Projection | None:
    """The projection ``pick`` or ``omit`` asks for (None: every member); both at once,
    or a malformed list, is BadRequestData naming the parameter."""
    if pick is not None and omit is not None:
        raise BadRequestData("give either pick or omit, not both", "omit")
    if pick is not None:
        return Projection(_names(pick, "pick"), keep=True)
    if omit is not None:
        return Projection(_names(omit, "omit"), keep=False)
    return None


def project_body(body: Any, projection: Projection | None, geojson: bool = False) -> Any:
    """Apply the projection to an answer: one entity or a list of them, or (``geojson``)
    a Feature or FeatureCollection whose features' ``properties`` hold the members."""
    if projection is None:
        return body
    if isinstance(body, list):
        return [project_body(item, projection, geojson) for item in body]
    if geojson and "features" in body:
        return {**body, "features": [project_body(f, projection, True) for f in body["features"]]}
    if geojson:
        return {**body, "properties": projection.apply(body["properties"])}
    return projection.apply(body)
