"""The NGSI-LD q language: parsed into the right tree, bad queries refused, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citypilot.model.errors import BadRequestData
from citypilot.store.query import And, Or, Term, parse_q


def test_and_binds_tighter_than_or():
    assert parse_q("a==1;b==2|c==3") == Or(
        (And((Term("a", "==", (1.0,)), Term("b", "==", (2.0,)))), Term("c", "==", (3.0,)))
    )


def test_parentheses_group():
    node = parse_q("a==1;(b==2|c==3)")
    assert isinstance(node, And) and isinstance(node.items[1], Or)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ('status=="ok"', Term("status", "==", ("ok",))),
        ("level>=0.5", Term("level", ">=", (0.5,))),
        ("delay==60..300", Term("delay", "==", (60.0, 300.0), is_range=True)),
        ('status=="a","b"', Term("status", "==", ("a", "b"))),
        ('name=="x;y|z)"', Term("name", "==", ("x;y|z)",))),
        ("locked==true", Term("locked", "==", (True,))),
        ("powerState", Term("powerState")),
        ('name~="^Rue"', Term("name", "~=", ("^Rue",))),
        (
            "dateInstalled>2020-01-01T00:00:00Z",
            Term("dateInstalled", ">", ("2020-01-01T00:00:00Z",)),
        ),
        (
            "refBuilding==urn:ngsi-ld:Building:7,https://example.org/b/8",
            Term("refBuilding", "==", ("urn:ngsi-ld:Building:7", "https://example.org/b/8")),
        ),
    ],
)
def test_terms(text, term):
    assert parse_q(text) == term


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a==",
        "(a==1",
        "a>1,2",
        "==3",
        'a=="x',
        "a==1..2..3",
        "a==foo",
        'a~="("',
        "a b",
        "a==1;",
        "x" * 3000,
    ],
)
def test_bad_queries_are_refused_with_field_q(bad):
    with pytest.raises(BadRequestData) as info:
        parse_q(bad)
    assert info.value.field == "q"


@given(st.text(alphabet='ab=!<>~;|()".,0123456789 ', max_size=30))
def test_parser_never_crashes(text):
    try:
        parse_q(text)
    except BadRequestData as err:
        assert err.field == "q"
