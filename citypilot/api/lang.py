"""The ``lang`` parameter (ETSI GS CIM 009 v1.8, clause 4.15): a LanguageProperty is
answered in one language, as a Property whose ``value`` is the string of the first
language asked for that it holds (else its ``@none`` string, else its first) and whose
``lang`` is that language; ``lang=*`` keeps every language (the ``languageMap``)."""

from __future__ import annotations

import re
from typing import Any

from citypilot.model.errors import BadRequestData

_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
_WEIGHT = re.compile(r"^q=(0(\.\d{1,3})?|1(\.0{1,3})?)$")


def parse_lang(text: str | None) -> tuple[str, ...] | None:
    """The languages ``lang`` asks for, most wanted first (``fr,en;q=0.5``: quality
    values as in Accept-Language); None for every language (no ``lang``, or ``*``);
    BadRequestData naming ``lang`` for anything that is not a list of language tags."""
    if text is None or text.strip() == "*":
        return None
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate(text.split(",")):
        tag, _, weight = (p.strip() for p in item.partition(";"))
        if not _TAG.match(tag) or (weight and not _WEIGHT.match(weight)):
            raise BadRequestData(
                f"lang must be language tags (fr, en-GB;q=0.5) or *, not {item.strip()!r}",
                "lang",
            )
        ranked.append((-float(weight[2:]) if weight else -1.0, i, tag.lower()))
    return tuple(tag for _, _, tag in sorted(ranked))


def _choose(language_map: dict[str, Any], wanted: tuple[str, ...]) -> tuple[str, Any]:
    by_tag = {k.lower(): k for k in language_map}
    for tag in wanted:
        if tag in by_tag:
            return by_tag[tag], language_map[by_tag[tag]]
    if "@none" in language_map:
        return "@none", language_map["@none"]
    first = next(iter(language_map))
    return first, language_map[first]


def _one_language(attr: Any, wanted: tuple[str, ...], key_values: bool) -> Any:
    """One attribute (an instance, or a list of them) in the language chosen."""
    if isinstance(attr, list):
        return [_one_language(a, wanted, key_values) for a in attr]
    if not isinstance(attr, dict) or not isinstance(attr.get("languageMap"), dict):
        return attr
    if attr.get("type", "LanguageProperty") != "LanguageProperty" or not attr["languageMap"]:
        return attr
    tag, value = _choose(attr["languageMap"], wanted)
    if key_values:
        return value
    out = {"type": "Property"} if "type" in attr else {}
    for key, member in attr.items():
        if key == "languageMap":
            out["value"], out["lang"] = value, tag
        elif key != "type":
            out[key] = member
    return out


def in_language(doc: dict[str, Any], wanted: tuple[str, ...], key_values: bool) -> dict[str, Any]:
    """An entity as rendered (normalised, concise or keyValues) with its
    LanguageProperties in the language chosen."""
    return {k: _one_language(v, wanted, key_values) for k, v in doc.items()}
