"""Open311 GeoReport v2 documents in its two formats: XML (required by the spec) and JSON.

Both are built from the same plain structure: a list of items under a root tag.
Lists inside an item become a wrapper element with one child per entry (the
spec's ``<attributes><attribute>``, ``<values><value>``, ``<formats><format>``).
"""

from __future__ import annotations

from typing import Any, Literal
from xml.etree.ElementTree import Element, SubElement, tostring

import orjson
from starlette.responses import Response

Format = Literal["json", "xml"]
FORMATS: tuple[Format, ...] = ("json", "xml")
MEDIA = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
#: The spec asks for this declaration before the root element, in these words.
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
#: The child tag of each list-valued element.
_CHILD = {
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fill(parent: Element, tag: str, value: Any) -> None:
    node = SubElement(parent, tag)
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(node, key, child)
    elif isinstance(value, list):
        for child in value:
            _fill(node, _CHILD.get(tag, "item"), child)
    elif value is not None:
        node.text = _text(value)


def to_xml(root: str, item: str | None, body: Any) -> bytes:
    """The XML document: ``body`` is a list of items (``item`` tags) or one object."""
    top = Element(root)
    if item is None:
        for key, value in body.items():
            _fill(top, key, value)
    else:
        for entry in body:
            _fill(top, item, entry)
    return _DECLARATION + tostring(top, encoding="unicode").encode("utf-8")


def document(fmt: Format, root: str, item: str | None, body: Any, status: int = 200) -> Response:
    """The response for one GeoReport document in the requested format."""
    content = to_xml(root, item, body) if fmt == "xml" else orjson.dumps(body)
    return Response(content, status, media_type=MEDIA[fmt])


def errors(fmt: Format, status: int, description: str) -> Response:
    """A GeoReport error answer: a list of (code, description), in the requested format."""
    return document(fmt, "errors", "error", [{"code": status, "description": description}], status)
