"""Entity ids.

NGSI-LD lets an entity's id be any absolute URI (RFC 3986): ``urn:ngsi-ld:Vehicle:7``
on a Building, ``https://example.org/buildings/7``, ``urn:epc:id:sgtin:...``. The
city's own devices keep the canonical ``urn:ngsi-ld:<Type>:<local-id>`` form, which
device ingest (MQTT topics, compact observations) still requires.
"""

from __future__ import annotations

import re

from citypilot.model.errors import BadRequestData

_URN = re.compile(r"^urn:ngsi-ld:([A-Za-z][A-Za-z0-9_]*):([A-Za-z0-9_.:\-~%]+)$")
# RFC 3986 absolute-URI: scheme ":" hier-part [ "?" query ] (fragments allowed, as in
# JSON-LD identifiers); only unreserved, reserved and percent-encoded characters.
_ABSOLUTE_URI = re.compile(
    r"^[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})+$"
)
MAX_ID_LENGTH = 256


def entity_id(type_name: str, local_id: str | int) -> str:
    """Build the canonical id of an entity of ``type_name`` with ``local_id``."""
    return f"urn:ngsi-ld:{type_name}:{local_id}"


def type_of_id(entity_id: str) -> str:
    """The type a canonical id names (``urn:ngsi-ld:Type:local``), or ``""``."""
    parts = entity_id.split(":")
    return parts[2] if len(parts) > 3 and parts[0] == "urn" and parts[1] == "ngsi-ld" else ""


def _check_uri(value: object, field: str, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequestData(f"{field} must be a string ({what})", field=field)
    if len(value) > MAX_ID_LENGTH:
        raise BadRequestData(f"{field} is longer than {MAX_ID_LENGTH} characters", field=field)
    if _ABSOLUTE_URI.match(value) is None:
        raise BadRequestData(
            f"{field} is not {what} (RFC 3986, e.g. urn:ngsi-ld:Building:7 or"
            f" https://example.org/b/7): {value[:80]!r}",
            field=field,
        )
    return value


def check_entity_id(value: object, field: str = "id") -> str:
    """Return ``value`` if it is a valid entity id (an absolute URI), else BadRequestData."""
    return _check_uri(value, field, "an absolute URI")


def check_device_id(value: object, field: str, type_name: str) -> str:
    """Return ``value`` if it is the canonical URN of an entity of ``type_name``
    (``urn:ngsi-ld:<Type>:<local-id>``, the form device ingest requires)."""
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
    if match.group(1) != type_name:
        raise BadRequestData(
            f"{field} {value!r} names type {match.group(1)!r} but the entity type is {type_name!r}",
            field=field,
        )
    return value


def check_uri(value: object, field: str) -> str:
    """Return ``value`` if it is an absolute URI (the object of a Relationship)."""
    return _check_uri(value, field, "an absolute URI")
