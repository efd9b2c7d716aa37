"""CEL conditions: a constant test decided before CEL gives what CEL would give."""

from __future__ import annotations

import pytest

from citypilot.engine.rule_eval import EvaluationError, run_expression
from citypilot.engine.rule_model import compile_expression
from citypilot.model.builtin_types import BUILTIN_TYPES
from citypilot.model.types import TypeRegistry

REGISTRY = TypeRegistry(BUILTIN_TYPES)
LAMP = REGISTRY.get("Streetlight")


def holds(source: str, status: object, **entity: object) -> bool:
    expr = compile_expression(source, "condition", LAMP, REGISTRY)
    change = {"id": "urn:x", "type": "Streetlight", "attrs": {"status": status}, "observedAtS": 0}
    return run_expression(expr, change, {"id": "urn:x", "type": "Streetlight", **entity}, 0.0)


@pytest.mark.parametrize(
    ("source", "guarded"),
    [
        ("change.attrs.status == 'ok'", True),
        ("change.attrs.status == 'ok' && entity.powerState == 'on'", True),
        ("change.attrs.status == 'ok' || true", False),
        ("change.attrs.status == 'ok' && (true ? false : true)", False),
        ("change.attrs.status == 'a || b'", True),  # the || is inside a string
        ("has(change.attrs.status) && change.attrs.status == 'ok'", False),
    ],
)
def test_only_a_plain_and_chain_starting_with_a_constant_test_is_guarded(
    source: str, guarded: bool
):
    expr = compile_expression(source, "condition", LAMP, REGISTRY)
    assert (expr.guard is not None) == guarded


@pytest.mark.parametrize(
    ("source", "status", "expected"),
    [
        ("change.attrs.status == 'ok'", "ok", True),
        ("change.attrs.status == 'ok'", "defectiveLamp", False),
        ("change.attrs.status == 'ok' || true", "defectiveLamp", True),
        ("change.attrs.status == 'a || b'", "a || b", True),
        ("change.attrs.status == 'ok' && entity.powerState == 'on'", "x", False),
    ],
)
def test_guarded_and_unguarded_conditions_agree_with_cel(source: str, status: str, expected: bool):
    assert holds(source, status, powerState="on") is expected


def test_a_guard_never_hides_an_error_cel_would_report():
    with pytest.raises(EvaluationError):  # the guard passes; CEL finds no powerState
        holds("change.attrs.status == 'ok' && entity.powerState == 'on'", "ok")
