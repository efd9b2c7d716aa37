"""Which changes of a type declaration narrow it, and which stored values they break."""

from __future__ import annotations

import pytest

from citypilot.model.type_changes import narrowings, same_declaration
from citypilot.model.types import AttributeSpec, EntityType


def declared(**attributes: AttributeSpec) -> EntityType:
    return EntityType("Kiosk", "economy", attributes=attributes)


OLD = declared(
    visitors=AttributeSpec("visitors", value="integer", minimum=0, maximum=100, unit="IE"),
    status=AttributeSpec("status", value="string", choices=("open", "closed")),
    owner=AttributeSpec("owner", kind="Relationship", value="string", target="Company"),
)


@pytest.mark.parametrize(
    "change",
    [
        {"visitors": AttributeSpec("visitors", value="number", minimum=-5, unit="IE")},
        {"status": AttributeSpec("status", value="string", choices=("open", "closed", "x"))},
        {"status": AttributeSpec("status", value="string")},
        {"colour": AttributeSpec("colour", value="string")},
    ],
)
def test_compatible_changes_narrow_nothing(change: dict[str, AttributeSpec]):
    assert narrowings(OLD, declared(**{**OLD.attributes, **change})) == []


@pytest.mark.parametrize(
    ("change", "kind", "breaks", "keeps"),
    [
        ({"visitors": None}, "removed", 5, None),
        ({"visitors": AttributeSpec("visitors", value="string", unit="IE")}, "value", 5, "5"),
        ({"visitors": AttributeSpec("visitors", value="integer", unit="P1")}, "unit", 5, None),
        (
            {"visitors": AttributeSpec("visitors", value="integer", maximum=10, unit="IE")},
            "range",
            50,
            5,
        ),
        (
            {"status": AttributeSpec("status", value="string", choices=("open",))},
            "choices",
            "closed",
            "open",
        ),
        (
            {"owner": AttributeSpec("owner", kind="Relationship", value="string", target="Person")},
            "target",
            "x",
            None,
        ),
        ({"owner": AttributeSpec("owner", value="string")}, "kind", "x", None),
    ],
)
def test_narrowings_and_the_values_they_break(change, kind, breaks, keeps):
    attrs = {n: a for n, a in {**OLD.attributes, **change}.items() if a is not None}
    [found] = narrowings(OLD, declared(**attrs))
    assert found.change == kind
    assert found.breaks(breaks)
    if keeps is not None:
        assert not found.breaks(keeps)


def test_the_version_alone_is_no_change():
    assert same_declaration(
        OLD, EntityType("Kiosk", "economy", attributes=OLD.attributes, version=7)
    )
    assert not same_declaration(OLD, declared())
