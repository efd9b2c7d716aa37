"""Request-body descriptions for routes that read their body themselves.

Those routes read the raw body (to enforce the size limit while streaming and to
report errors per item), so FastAPI cannot infer a schema; these keep the OpenAPI
document complete for integrators.
"""

from __future__ import annotations

from typing import Any

_ATTRIBUTE = {
    "description": "An NGSI-LD attribute: normalised ({type, value|object, observedAt, "
    "unitCode}) or a bare value",
}
ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {
        "id": {"type": "string", "example": "urn:ngsi-ld:Streetlight:42"},
        "type": {"type": "string", "example": "Streetlight"},
        "@context": {"description": "optional; the bundled core context is used"},
    },
    "additionalProperties": _ATTRIBUTE,
    "example": {
        "id": "urn:ngsi-ld:Streetlight:42",
        "type": "Streetlight",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [5.04, 47.32]},
        },
        "powerState": {"type": "Property", "value": "on"},
    },
}
FRAGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": _ATTRIBUTE,
    "example": {"powerState": {"type": "Property", "value": "off"}},
}
OBSERVATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "observedAt", "attrs"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "observedAt": {"type": "string", "format": "date-time"},
        "attrs": {"type": "object", "minProperties": 1},
    },
    "example": {
        "id": "urn:ngsi-ld:Streetlight:42",
        "type": "Streetlight",
        "observedAt": "2026-11-20T10:00:00Z",
        "attrs": {"powerConsumption": 41.5, "powerState": "on"},
    },
}


def json_body(schema: dict[str, Any], *, ndjson: bool = False) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON (and JSON-LD, NDJSON) request body."""
    content = {"application/json": {"schema": schema}, "application/ld+json": {"schema": schema}}
    if ndjson:
        content = {
            "application/json": {"schema": schema},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one JSON per line"}
            },
        }
    return {"requestBody": {"required": True, "content": content}}


def array_of(schema: dict[str, Any]) -> dict[str, Any]:
    """An array of items of ``schema``."""
    return {"type": "array", "items": schema}
