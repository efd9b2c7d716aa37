"""Entities and attributes: reading NGSI-LD JSON into the internal form and writing it back.

Input accepts the NGSI-LD normalised and concise forms (see ``model.data_model``). An
entity of a registered type is checked against that type: its attributes, kinds, units,
ranges (the city's own assets stay clean). An entity of any other type is open-world
NGSI-LD, checked against the data model only — unless the city sets ``strict_types``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from citypilot.model.data_model import (
    KINDS,
    VALUE_KEYS,
    check_name,
    concise,
    default_instance,
    is_instance_list,
    parse_attribute_value,
    simplified,
    sub_attributes,
)
from citypilot.model.entity_scope import SCOPE, parse_scopes, scope_member
from citypilot.model.errors import BadRequestData
from citypilot.model.geometry import Bounds, validate_geometry
from citypilot.model.ids import check_entity_id
from citypilot.model.timeutil import format_instant, parse_instant
from citypilot.model.types import AttributeSpec, EntityType, TypeRegistry, check_value

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
#: Members of an entity that are not attributes (no attribute may take their names).
RESERVED = frozenset({"id", "type", "@context", "createdAt", "modifiedAt", "scope"})
#: Members of an instance kept beside its value in ``Attribute.meta`` (sub-attributes
#: go under ``"sub"``, the other instances of a multi-attribute under ``"instances"``).
_META_MEMBERS = ("datasetId", "objectType")


@dataclass(slots=True)
class Attribute:
    """One attribute's current value: its kind, value (or object, languageMap, ...),
    time and unit of its default instance; ``meta`` holds the rest, when there is any:
    ``sub`` (its sub-attributes, normalised), ``datasetId``, ``objectType``,
    ``instances`` (the other instances, normalised) and ``createdAt``/``modifiedAt``.
    As read from a store, a ``meta`` of nothing but the two times stays its stored text
    (see ``decode_meta``): most attributes have no more, and most reads need neither.
    ``written``: when a write gives only some of the instances (the others kept from
    state), those it gives, each on its own: only they go to history."""

    kind: str
    value: Any
    observed_at: float | None = None
    unit_code: str | None = None
    num: float | None = None
    meta: dict[str, Any] | str | None = None
    written: tuple[Attribute, ...] | None = field(default=None, compare=False)

    def to_ngsi(self, sys_attrs: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
        """The normalised NGSI-LD form (an array of instances for a multi-attribute)."""
        out: dict[str, Any] = {"type": self.kind, VALUE_KEYS[self.kind]: self.value}
        if self.observed_at is not None:
            out["observedAt"] = format_instant(self.observed_at)
        if self.unit_code is not None:
            out["unitCode"] = self.unit_code
        meta = self.meta
        if meta is None or (type(meta) is str and not sys_attrs):
            return out
        if type(meta) is str:
            meta = decode_meta(meta)
        for key in _META_MEMBERS:
            if key in meta:
                out[key] = meta[key]
        if "sub" in meta:
            out.update(meta["sub"])
        if sys_attrs:
            if "createdAt" in meta:
                out["createdAt"] = format_instant(meta["createdAt"])
            modified = max(meta.get("modifiedAt", 0.0), self.observed_at or 0.0)
            if modified:
                out["modifiedAt"] = format_instant(modified)
        return [out, *meta["instances"]] if "instances" in meta else out

    def stored_meta(self) -> dict[str, Any]:
        """``meta`` without the system times (what a write sends to the store)."""
        meta = self.meta
        if meta is None or type(meta) is str:
            return {}
        return {k: v for k, v in meta.items() if k not in _TIMES}


def encode_meta(meta: dict[str, Any], created_at: float, modified_at: float) -> str:
    """The stored text of an attribute's ``meta``: ``[createdAt, modifiedAt]``, then the
    rest when there is any (the stores keep an attribute's first ``createdAt``)."""
    return orjson.dumps(
        [created_at, modified_at, meta] if meta else [created_at, modified_at]
    ).decode()


def decode_meta(text: str) -> dict[str, Any]:
    """An attribute's ``meta`` from its stored text (see ``encode_meta``)."""
    found = orjson.loads(text)
    if isinstance(found, dict):
        return found
    rest = found[2] if len(found) > 2 else {}
    return {**rest, "createdAt": found[0], "modifiedAt": found[1]}


@dataclass(slots=True)
class Entity:
    """A city entity: id, type, attributes and, when located, the bounds of its geometry."""

    id: str
    type: str
    attrs: dict[str, Attribute] = field(default_factory=dict)
    created_at: float | None = None
    modified_at: float | None = None

    @property
    def bounds(self) -> Bounds | None:
        """Bounds of the ``location`` geometry, or None for an entity without one."""
        loc = self.attrs.get("location")
        return None if loc is None or loc.kind != "GeoProperty" else validate_geometry(loc.value)

    def to_ngsi(
        self,
        key_values: bool = False,
        sys_attrs: bool = False,
        attrs: set[str] | None = None,
        concise_form: bool = False,
    ) -> dict[str, Any]:
        """The entity as NGSI-LD JSON: normalised, concise or simplified (key-values)."""
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if sys_attrs:
            if self.created_at is not None:
                out["createdAt"] = format_instant(self.created_at)
            if self.modified_at is not None:
                out["modifiedAt"] = format_instant(self.modified_at)
        for name, attr in self.attrs.items():
            if name == SCOPE:
                out[name] = scope_member(attr.value)  # a member of the entity, always shown
                continue
            if attrs is not None and name not in attrs:
                continue
            if (
                key_values
                and attr.kind in _PLAIN_KINDS
                and (attr.meta is None or "instances" not in attr.meta)
            ):
                out[name] = attr.value  # the common case, without building the whole form
                continue
            normalised = attr.to_ngsi(sys_attrs and not key_values)
            if key_values:
                out[name] = simplified(normalised)
            elif concise_form:
                out[name] = concise(normalised)
            else:
                out[name] = normalised
        return out


_PLAIN_KINDS = frozenset({"Property", "GeoProperty", "Relationship"})


def _number(value: Any) -> float | None:
    cls = type(value)
    if cls is int or cls is float:
        return float(value)
    if cls is bool:
        return 1.0 if value else 0.0
    return None


def attribute_from_normalised(
    normalised: dict[str, Any] | list[dict[str, Any]],
    num: Callable[[Any], float | None] = _number,
) -> Attribute:
    """The internal form of a checked, normalised attribute (one instance or several):
    the default instance (else the first) in the columns, the rest in ``meta``."""
    instances = normalised if isinstance(normalised, list) else [normalised]
    head = default_instance(instances)
    kind = head["type"]
    value = head[VALUE_KEYS[kind]]
    meta: dict[str, Any] = {k: head[k] for k in _META_MEMBERS if k in head}
    sub = sub_attributes(head)
    if sub:
        meta["sub"] = sub
    others = [i for i in instances if i is not head]
    if others:
        meta["instances"] = others
    observed = head.get("observedAt")
    return Attribute(
        kind,
        value,
        None if observed is None else parse_instant(observed, "observedAt", bounded=False),
        head.get("unitCode"),
        num(value) if kind == "Property" else None,
        meta or None,
    )


def _as_normalised(spec: AttributeSpec, raw: Any) -> Any:
    """A registered attribute as given, in a form the data model reads unambiguously: a
    bare value (the concise form) takes the kind the type declares."""
    if isinstance(raw, dict):
        if raw.get("type") in KINDS:
            return raw
        key = VALUE_KEYS[spec.kind]
        if "type" not in raw and key in raw and spec.value != "object":
            return {"type": spec.kind, **raw}
    elif spec.value != "array" and is_instance_list(raw):
        return [_as_normalised(spec, i) for i in raw]
    return {"type": spec.kind, VALUE_KEYS[spec.kind]: raw}


def parse_attribute(
    entity_type: EntityType, registry: TypeRegistry, name: str, raw: Any, where: str
) -> Attribute:
    """Check one attribute of an entity of a registered ``entity_type``: each instance's
    kind, unit and value against the type (sub-attributes against the data model)."""
    spec = entity_type.attributes.get(name)
    if spec is None:
        raise BadRequestData(
            f"{where}: {entity_type.name} has no attribute {name!r} "
            f"(known: {', '.join(sorted(entity_type.attributes))})",
            where,
        )
    normalised = parse_attribute_value(_as_normalised(spec, raw), where)
    instances = normalised if isinstance(normalised, list) else [normalised]
    checker = registry.checkers(entity_type.name).get(name)
    given_whole = isinstance(raw, list) or (
        isinstance(raw, dict) and (raw.get("type") in KINDS or "value" in raw)
    )
    nums: dict[int, float | None] = {}
    for i, instance in enumerate(instances):
        at = f"{where}[{i}]" if isinstance(normalised, list) else where
        if instance["type"] != spec.kind:
            raise BadRequestData(f"{at}.type must be {spec.kind!r}", f"{at}.type")
        unit = instance.get("unitCode")
        if unit is not None and unit != spec.unit:
            raise BadRequestData(
                f"{at}.unitCode must be {spec.unit!r} (the type's unit), not {unit!r}",
                f"{at}.unitCode",
            )
        if checker is not None:
            vwhere = f"{at}.value" if given_whole else at
            instance["value"], nums[id(instance)] = check_value(checker, instance["value"], vwhere)
        if spec.unit is not None and spec.kind == "Property":
            instance["unitCode"] = spec.unit
    attr = attribute_from_normalised(normalised, lambda _: None)
    head = default_instance(instances)
    attr.num = nums.get(id(head))
    return attr


def parse_open_attributes(doc: dict[str, Any], where: str = "") -> dict[str, Attribute]:
    """Check the attributes of an open-world entity (or fragment) against the data model."""
    prefix = f"{where}." if where else ""
    out = {}
    for name, raw in doc.items():
        if name in RESERVED:
            continue
        at = f"{prefix}{name}"
        check_name(name, at)
        attr = attribute_from_normalised(parse_attribute_value(raw, at))
        if name == "location" and attr.kind != "GeoProperty":
            raise BadRequestData(f"{at} must be a GeoProperty (a GeoJSON geometry)", at)
        out[name] = attr
    return out


def parse_attributes(
    entity_type: EntityType | None, registry: TypeRegistry, doc: dict[str, Any], where: str = ""
) -> dict[str, Attribute]:
    """Check every attribute in an NGSI-LD fragment (reserved keys are skipped), against
    ``entity_type`` when it is registered, else against the data model only. The
    entity's ``scope`` is kept beside them, as an attribute of that reserved name."""
    prefix = f"{where}." if where else ""
    if entity_type is None:
        out = parse_open_attributes(doc, where)
    else:
        out = {
            name: parse_attribute(entity_type, registry, name, raw, f"{prefix}{name}")
            for name, raw in doc.items()
            if name not in RESERVED
        }
    if SCOPE in doc:
        out[SCOPE] = Attribute("Property", parse_scopes(doc[SCOPE], f"{prefix}{SCOPE}"))
    return out


def with_instances(old: Attribute, new: Attribute) -> Attribute:
    """``new`` as written over ``old``: each instance given replaces the stored one of
    its ``datasetId`` (or the default instance), the other stored instances stay."""
    if not _is_multi(old) and not _is_multi(new) and dataset_of(old) == dataset_of(new):
        return new
    given = instances_of(new)
    ids = {i.get("datasetId") for i in given}
    kept = [i for i in instances_of(old) if i.get("datasetId") not in ids]
    if not kept:
        return new
    merged = attribute_from_normalised([*given, *kept])
    merged.written = tuple(single_instances(new))
    return merged


_TIMES = ("createdAt", "modifiedAt")


def _is_multi(attr: Attribute) -> bool:
    return isinstance(attr.meta, dict) and "instances" in attr.meta


def dataset_of(attr: Attribute) -> str | None:
    """The ``datasetId`` of an attribute's default (else first) instance."""
    return attr.meta.get("datasetId") if isinstance(attr.meta, dict) else None


def has_datasets(attr: Attribute | None) -> bool:
    """Whether an attribute has an instance of a ``datasetId`` (or several instances)."""
    meta = attr.meta if attr is not None else None
    return isinstance(meta, dict) and ("instances" in meta or "datasetId" in meta)


def single_instances(attr: Attribute) -> list[Attribute]:
    """Each instance of an attribute on its own (the first one exactly as it is)."""
    meta = attr.meta
    if not isinstance(meta, dict) or "instances" not in meta:
        return [attr]
    rest = {k: v for k, v in meta.items() if k != "instances"}
    head = Attribute(
        attr.kind, attr.value, attr.observed_at, attr.unit_code, attr.num, rest or None
    )
    return [head, *(attribute_from_normalised(i) for i in meta["instances"])]


def instances_of(attr: Attribute) -> list[dict[str, Any]]:
    """The instances of an attribute, normalised (one, or those of a multi-attribute)."""
    normalised = attr.to_ngsi()
    return normalised if isinstance(normalised, list) else [normalised]


#: The value that deletes an attribute in a merge (clause 5.6.17, 4.5.10).
NULL = "urn:ngsi-ld:null"


def split_deletions(fragment: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A merge fragment without the attributes it deletes (given as ``urn:ngsi-ld:null``,
    bare or as the value or object), and their names."""
    kept, gone = {}, []
    for name, raw in fragment.items():
        value = raw.get("value", raw.get("object")) if isinstance(raw, dict) else raw
        if value == NULL and (name not in RESERVED or name == SCOPE):
            gone.append(name)
        else:
            kept[name] = raw
    return kept, gone


def merge_sub_attributes(old: Attribute, new: Attribute) -> None:
    """Keep in ``new`` the sub-attributes of ``old`` it does not give (a merge), for a
    single-instance attribute; sub-attributes given as ``urn:ngsi-ld:null`` go."""
    old_meta = old.meta if isinstance(old.meta, dict) else {}
    new_meta = new.meta if isinstance(new.meta, dict) else {}
    if "instances" in old_meta or "instances" in new_meta:
        return
    if old_meta.get("datasetId") != new_meta.get("datasetId"):
        return
    sub = {**old_meta.get("sub", {}), **new_meta.get("sub", {})}
    sub = {
        k: v
        for k, v in sub.items()
        if not isinstance(v, dict) or v.get("value", v.get("object")) != NULL
    }
    merged = {k: v for k, v in new_meta.items() if k != "sub"}
    if sub:
        merged["sub"] = sub
    new.meta = merged or None


def entity_type_of(
    registry: TypeRegistry, name: object, field: str, strict_types: bool
) -> EntityType | None:
    """The registered type called ``name``; None for an unregistered (open-world) type,
    or BadRequestData naming ``field`` if the city refuses those (``strict_types``)."""
    if isinstance(name, str) and name in registry:
        return registry.get(name, field)
    if strict_types or not isinstance(name, str):
        return registry.get(name, field)  # the refusal, naming the registered types
    check_name(name, field)
    return None


def parse_entity(
    doc: Any, registry: TypeRegistry, where: str = "", strict_types: bool = False
) -> Entity:
    """Check a whole NGSI-LD entity document and return the internal Entity."""
    prefix = f"{where}." if where else ""
    if not isinstance(doc, dict):
        raise BadRequestData(f"{where or 'body'} must be a JSON object", where or "body")
    entity_type = entity_type_of(registry, doc.get("type"), f"{prefix}type", strict_types)
    entity_id = check_entity_id(doc.get("id"), f"{prefix}id")
    attrs = parse_attributes(entity_type, registry, doc, where)
    return Entity(entity_id, doc["type"], attrs)
