"""Renaming the terms of NGSI-LD documents and query parameters, shape by shape.

Each function takes a ``rename`` (a term of one @context to another name: expanding to
the stored name on the way in, compacting to the reader's term on the way out, see
``model.ldcontext``) and applies it where NGSI-LD puts types and attribute names: an
entity's ``type`` and attribute names, sub-attribute names at any depth, multi-attribute
instances, the type and attribute lists of queries, subscriptions and discovery, the
attribute paths of a ``q`` query. Values are kept as they are (a Property's value is
data, not vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from citypilot.store.query import _read_value, name_end

Rename = Callable[[str], str]

#: members of an entity that are not attributes
ENTITY_MEMBERS = frozenset(
    {"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}
)
#: members of an attribute that are not sub-attributes (ETSI GS CIM 009 §4.5, §5.2)
ATTRIBUTE_MEMBERS = frozenset(
    {
        "type", "value", "object", "observedAt", "unitCode", "datasetId", "createdAt",
        "modifiedAt", "deletedAt", "instanceId", "languageMap", "vocab", "json",
        "valueList", "objectList", "objectType", "lang", "previousValue",
        "previousObject", "previousLanguageMap", "previousVocab", "previousJson",
        "previousValueList", "previousObjectList", "values", "objects", "languageMaps",
        "vocabs", "jsons", "valueLists", "objectsLists", "entity", "entityList", "@context",
        # temporal aggregations (§4.5.19)
        "totalCount", "distinctCount", "sum", "sumsq", "avg", "min", "max", "stddev",
    }
)  # fmt: skip
_ATTRIBUTE_KINDS = frozenset(
    {
        "Property", "Relationship", "GeoProperty", "LanguageProperty", "VocabProperty",
        "JsonProperty", "ListProperty", "ListRelationship",
    }
)  # fmt: skip
#: members of a relationship holding its linked entities (``join=inline``)
_LINKED = frozenset({"entity", "entityList"})
#: members whose presence makes an object an attribute in the concise form
_CONCISE_MARKS = ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList")


def _is_attribute(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    kind = value.get("type")
    if isinstance(kind, str) and kind in _ATTRIBUTE_KINDS:
        return True
    return any(mark in value for mark in _CONCISE_MARKS)


def rename_types(value: Any, rename: Rename) -> Any:
    """An entity's type (a name or a list of names) renamed."""
    if isinstance(value, str):
        return rename(value)
    if isinstance(value, list):
        return [rename(v) if isinstance(v, str) else v for v in value]
    return value


def rename_attribute(value: Any, rename: Rename) -> Any:
    """One attribute (or a list of its instances) with its sub-attribute names renamed;
    a value that is not an attribute (concise data) is kept as it is."""
    if isinstance(value, list):
        return [rename_attribute(v, rename) if _is_attribute(v) else v for v in value]
    if not _is_attribute(value) or all(
        key in ATTRIBUTE_MEMBERS and key not in _LINKED for key in value
    ):
        return value  # no sub-attribute: nothing to rename, nothing to copy
    out = {}
    for key, member in value.items():
        if key in _LINKED:
            out[key] = rename_entities(member, rename)
        elif key in ATTRIBUTE_MEMBERS:
            out[key] = member
        else:
            out[rename(key)] = rename_attribute(member, rename)
    return out


def rename_entity(doc: Any, rename: Rename, key_values: bool = False) -> Any:
    """An entity (or an attribute fragment) with its type and attribute names renamed;
    ``key_values``: attributes are bare values (only their names are renamed)."""
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        if key == "type":
            out[key] = rename_types(value, rename)
        elif key in ENTITY_MEMBERS:
            out[key] = value
        else:
            out[rename(key)] = value if key_values else rename_attribute(value, rename)
    return out


def rename_entities(docs: Any, rename: Rename, key_values: bool = False) -> Any:
    """A list of entities (a batch), a GeoJSON FeatureCollection or Feature, or one entity."""
    if isinstance(docs, list):
        return [rename_entity(d, rename, key_values) for d in docs]
    if isinstance(docs, dict) and docs.get("type") == "FeatureCollection":
        features = docs.get("features")
        if isinstance(features, list):
            return {**docs, "features": [rename_entities(f, rename, key_values) for f in features]}
        return docs
    if isinstance(docs, dict) and docs.get("type") == "Feature":
        properties = docs.get("properties")
        return {**docs, "properties": rename_entity(properties, rename, key_values)}
    return rename_entity(docs, rename, key_values)


#: Entity members that are NGSI-LD's own, never renamed in a list of names (``pick``).
CORE_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt"})


def rename_names(text: str, rename: Rename, keep: frozenset[str] = frozenset()) -> str:
    """A comma-separated list of names (``attrs``, ``pick``), each renamed but ``keep``."""
    return ",".join(p if not p or p in keep else rename(p) for p in text.split(","))


def rename_type_selector(text: str, rename: Rename) -> str:
    """A ``type`` parameter: names joined by ``,`` ``;`` ``|`` and parentheses."""
    out, word = [], []
    for c in text:
        if c in ",;|()":
            if word:
                out.append(rename("".join(word)))
                word = []
            out.append(c)
        else:
            word.append(c)
    if word:
        out.append(rename("".join(word)))
    return "".join(out)


_Q_OPS = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")


def _path_end(text: str, pos: int) -> int:
    """End of the attribute path starting at ``pos``: an operator or ``;|()``."""
    while pos < len(text):
        if text[pos] in ";|()" or text.startswith(_Q_OPS, pos):
            break
        pos += 1
    return pos


def _split_name(path: str) -> tuple[str, str]:
    """The first name of an attribute path and what follows it (``.sub``, ``[key]``);
    a name that is an IRI keeps its dots (``store.query.name_end``)."""
    end = name_end(path, 0)
    cut = len(path) if end is None else end
    return path[:cut], path[cut:]


def rename_path(path: str, rename: Rename) -> str:
    """An attribute path (``speed``, ``speed.measuredBy``, ``address[city]``) renamed:
    the attribute and sub-attribute names, not the keys inside a value."""
    name, rest = _split_name(path.strip())
    out = [rename(name) if name else name]
    while rest.startswith("."):
        sub, rest = _split_name(rest[1:])
        out.append("." + rename(sub))
    return "".join(out) + rest


def rename_q(text: str, rename: Rename) -> str:
    """A ``q`` query with the attribute paths of its terms renamed (values untouched)."""
    out, pos = [], 0
    while pos < len(text):
        c = text[pos]
        if c in "();|" or c.isspace():
            out.append(c)
            pos += 1
            continue
        end = _path_end(text, pos)
        out.append(rename_path(text[pos:end], rename))
        pos = end
        op = next((o for o in _Q_OPS if text.startswith(o, pos)), None)
        if op is not None:
            end = _read_value(text, pos + len(op))
            out.append(text[pos:end])
            pos = end
    return "".join(out)


def rename_subscription(doc: Any, rename: Rename) -> Any:
    """A subscription with the types and attribute names it selects and sends renamed."""
    if not isinstance(doc, dict):
        return doc
    out = dict(doc)
    entities = doc.get("entities")
    if isinstance(entities, list):
        out["entities"] = [
            {**e, "type": rename_types(e["type"], rename)}
            if isinstance(e, dict) and "type" in e
            else e
            for e in entities
        ]
    for key in ("watchedAttributes",):
        if isinstance(doc.get(key), list):
            out[key] = rename_types(doc[key], rename)
    if isinstance(doc.get("q"), str):
        out["q"] = rename_q(doc["q"], rename)
    geo = doc.get("geoQ")
    if isinstance(geo, dict) and isinstance(geo.get("geoproperty"), str):
        out["geoQ"] = {**geo, "geoproperty": rename(geo["geoproperty"])}
    notification = doc.get("notification")
    if isinstance(notification, dict):
        renamed = dict(notification)
        if isinstance(notification.get("attributes"), list):
            renamed["attributes"] = rename_types(notification["attributes"], rename)
        for key in ("pick", "omit"):  # member names: id and type stay as they are
            names = notification.get(key)
            if isinstance(names, list):
                renamed[key] = [rename(n) if n not in CORE_MEMBERS else n for n in names]
        out["notification"] = renamed
    return out


def rename_query(doc: Any, rename: Rename) -> Any:
    """A Query document (``POST /entityOperations/query``): its entity selectors,
    ``attrs``, ``q`` and ``geoQ.geoproperty`` renamed."""
    out = rename_subscription(doc, rename)
    if isinstance(out, dict) and isinstance(out.get("attrs"), list):
        out["attrs"] = rename_types(out["attrs"], rename)
    return out


#: discovery members naming one type or attribute, and those naming a list of them
_ONE = ("typeName", "attributeName")
_MANY = ("typeList", "typeNames", "attributeNames", "attributeList")


def rename_discovery(doc: Any, rename: Rename) -> Any:
    """A discovery answer (``/types``, ``/attributes``: lists, details, infos) renamed."""
    if isinstance(doc, list):
        return [rename_discovery(d, rename) for d in doc]
    if not isinstance(doc, dict):
        return doc
    out = dict(doc)
    for key in _ONE:
        if isinstance(doc.get(key), str):
            out[key] = rename(doc[key])
    for key in _MANY:
        if isinstance(doc.get(key), list):
            out[key] = rename_types(doc[key], rename)
    if isinstance(doc.get("attributeDetails"), list):
        out["attributeDetails"] = rename_discovery(doc["attributeDetails"], rename)
    return out
