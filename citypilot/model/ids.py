"""Entity ids: ``urn:ngsi-ld:<Type>:<local-id>``."""

from __future__ import annotations

import re

from citypilot.model.errors import BadRequestData

_URN = re.compile(r"^urn:ngsi-ld:([A-Za-z][A-Za-z0-9_]*):([A-Za-z0-9_.:\-~%]+)$")
_ANY_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
MAX_ID_LENGTH = 256


def entity_id(type_name: str, local_id: str | int) -> str:
    """Build the canonical id of an entity of ``type_name`` with ``local_id``."""
    return f"urn:ngsi-ld:{type_name}:{local_id}"


def type_of_id(entity_id: str) -> str:
    """The type an NGSI-LD id names (``urn:ngsi-ld:Type:local``), or ``""``."""
    parts = entity_id.split(":")
    return parts[2] if len(parts) > 3 and parts[1] == "ngsi-ld" else ""


def check_entity_id(value: object, field: str = "id", type_name: str | None = None) -> str:
    """Return ``value`` if it is a valid CityPilot entity URN, else raise BadRequestData.

    When ``type_name`` is given, the type segment of the URN must equal it.
    """
    if not isinstance(value, str):
        raise BadRequestData(f"{field} must be a string URN", field=field)
    if len(value) > MAX_ID_LENGTH:
        raise BadRequestData(f"{field} is longer than {MAX_ID_LENGTH} characters", field=field)
    match = _URN.match(value)
    if match is None:
        raise BadRequestData(
            f"{field} is not an entity URN of the form urn:ngsi-ld:<Type>:<local-id>: "
            f"{value[:80]!r}",
            field=field,
        )
    if type_name is not None and match.group(1) != type_name:
        raise BadRequestData(
            f"{field} {value!r} names type {match.group(1)!r} but the entity type is {type_name!r}",
            field=field,
        )
    return value


def check_uri(value: object, field: str) -> str:
    """Return ``value`` if it is an absolute URI (the object of a Relationship)."""
    if not isinstance(value, str) or not _ANY_URI.match(value) or len(value) > MAX_ID_LENGTH:
        raise BadRequestData(f"{field} must be an absolute URI", field=field)
    return value
