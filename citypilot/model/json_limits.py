"""Bounds on untrusted JSON: nesting depth, checked once where a document is parsed.

orjson parses up to 1,024 levels but serialises only up to 254, so a deeply
nested value that was accepted could later fail wherever it is written back
(a stored attribute, a dead letter). Every JSON document that enters CityPilot
(HTTP bodies, NDJSON lines, MQTT payloads) is checked against
``Settings.max_json_depth`` instead; an object or array counts one level.

The check works on the raw bytes at C speed (``bytes`` methods and numpy, a few ms
per MB); the parsed document is walked only to say *where* a refused one goes too deep.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from citypilot.model.errors import BadRequestData

#: Nesting depth allowed when no setting is at hand (``Settings.max_json_depth``).
DEFAULT_MAX_DEPTH = 64
#: Shown in place of the part of a refused document that nests too deep.
TOO_DEEP = "…(nested too deep)"
_QUOTE = ord('"')
_NOT_MARKS = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_CHUNK = 1 << 20


def max_depth(text: bytes, limit: int) -> int:
    """How deep a valid JSON text nests (brackets inside strings do not count).

    Over ``limit`` the answer is some depth over ``limit``; when the text holds no
    more than ``limit`` brackets it is their number, an upper bound of the depth.
    """
    opened = text.count(b"[") + text.count(b"{")
    if opened <= limit:
        return opened
    if b"\\" in text:  # in valid JSON a backslash only starts an escape: drop them
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = np.frombuffer(text.translate(None, _NOT_MARKS), dtype=np.uint8)
    depth = deepest = quotes = 0
    for start in range(0, len(marks), _CHUNK):
        part = marks[start : start + _CHUNK]
        quoted = (np.cumsum(part == _QUOTE, dtype=np.int32) + quotes) & 1
        steps = _STEP[part]
        steps[quoted == 1] = 0  # a bracket inside a string
        running = np.cumsum(steps, dtype=np.int32) + depth
        deepest = max(deepest, int(running.max()))
        depth, quotes = int(running[-1]), int(quoted[-1])
        if deepest > limit:
            break
    return deepest


def too_deep_at(doc: Any, limit: int, where: str = "") -> str | None:
    """The path (``[1].attrs.x``) at which ``doc`` passes ``limit`` levels, or None."""
    if not _deeper_than(doc, limit):
        return None
    path: list[str] = []
    node, remaining = doc, limit
    while remaining > 0 and len(path) < 4:
        pairs = node.items() if isinstance(node, dict) else enumerate(node)
        key, node = next((k, v) for k, v in pairs if _deeper_than(v, remaining - 1))
        remaining -= 1
        path.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return (where + "".join(path)).lstrip(".") or "body"


def _deeper_than(node: Any, levels: int) -> bool:
    """Whether ``node`` nests more than ``levels`` levels (looks no deeper than that)."""
    if not isinstance(node, dict | list):
        return False
    if levels <= 0:
        return True
    children = node.values() if isinstance(node, dict) else node
    return any(_deeper_than(child, levels - 1) for child in children)


def depth_error(path: str, limit: int) -> BadRequestData:
    """The refusal of a document that nests deeper than ``limit`` at ``path``."""
    return BadRequestData(f"{path} nests deeper than the limit of {limit} levels", path)


def check_depth(text: bytes, doc: Any, limit: int, where: str = "body") -> None:
    """Refuse (BadRequestData naming the place) a parsed document deeper than ``limit``."""
    if max_depth(text, limit) > limit:
        path = too_deep_at(doc, limit, "" if where == "body" else where)
        raise depth_error(path or where, limit)


def clipped(doc: Any, limit: int = DEFAULT_MAX_DEPTH) -> Any:
    """A copy of ``doc`` with whatever lies deeper than ``limit`` levels replaced by a marker."""
    if not isinstance(doc, dict | list):
        return doc
    if limit <= 0:
        return TOO_DEEP
    if isinstance(doc, dict):
        return {k: clipped(v, limit - 1) for k, v in doc.items()}
    return [clipped(v, limit - 1) for v in doc]


def dumps_anything(doc: Any) -> bytes:
    """JSON for any parsed document, however deep (deep parts are clipped): for dead letters."""
    try:
        return orjson.dumps(doc, default=str)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(clipped(doc), default=str)
