"""Rules over HTTP (see docs/rules.md).

* ``GET /api/v1/rules`` (viewer): every rule with what it did and its errors, and
  the rule files that could not be loaded.
* ``POST /api/v1/rules`` (admin): add a rule; 400 naming the field (and the line and
  column in a CEL expression) when it does not compile, 409 when the id is taken.
* ``GET | PUT | DELETE /api/v1/rules/{id}`` (viewer | admin | admin).
* ``POST /api/v1/rules/{id}/enable | disable`` (admin).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from citypilot.api.body import read_json
from citypilot.api.deps import Admin, CityDep, Viewer
from citypilot.api.openapi import json_body, problem
from citypilot.engine.rules import RuleEngine

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])
RULE_SCHEMA = {
    "type": "object",
    "required": ["id", "owner", "trigger", "actions"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
        "owner": {"type": "string"},
        "enabled": {"type": "boolean"},
        "description": {"type": "string"},
        "type": {"type": "string"},
        "attributes": {"type": "array", "items": {"type": "string"}},
        "condition": {"type": "string", "description": "CEL"},
        "trigger": {"type": "object", "required": ["kind"]},
        "actions": {"type": "array", "items": {"type": "object"}},
        "loopGuard": {"type": "object"},
    },
}


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def engine_of(city: Any) -> RuleEngine:
    """The running city's rules engine."""
    return city.rules


@router.get("", summary="Every rule, with what it did and its errors")
async def list_rules(city: CityDep, _: Viewer) -> Response:
    """Rules by id, and ``loadErrors``: rule files or stored rules that did not compile."""
    engine = engine_of(city)
    return _json(
        {
            "rules": [engine.view(r) for _, r in sorted(engine.rules.items())],
            "loadErrors": engine.load_errors,
        }
    )


@router.post(
    "",
    status_code=201,
    summary="Add a rule",
    responses=problem(409, "A rule of this id exists"),
    openapi_extra=json_body(RULE_SCHEMA),
)
async def create_rule(request: Request, city: CityDep, who: Admin) -> Response:
    """The rule is checked and compiled, kept, and evaluated from now on."""
    doc = await read_json(request, city.settings.max_body_bytes)
    engine = engine_of(city)
    rule = await engine.create(doc, who.name)
    return _json(engine.view(rule), 201, {"Location": f"/api/v1/rules/{rule.id}"})


@router.get("/{rule_id}", summary="One rule, with what it did and its errors")
async def get_rule(rule_id: str, city: CityDep, _: Viewer) -> Response:
    """Definition, version, owner, enabled, and the counts and last errors."""
    engine = engine_of(city)
    return _json(engine.view(engine.get(rule_id)))


@router.put(
    "/{rule_id}",
    summary="Replace a rule (its version goes up)",
    openapi_extra=json_body(RULE_SCHEMA),
)
async def replace_rule(rule_id: str, request: Request, city: CityDep, who: Admin) -> Response:
    """The new definition replaces the old one; the trigger's state starts anew."""
    doc = await read_json(request, city.settings.max_body_bytes)
    engine = engine_of(city)
    return _json(engine.view(await engine.replace(rule_id, doc, who.name)))


@router.delete("/{rule_id}", status_code=204, summary="Remove a rule")
async def delete_rule(rule_id: str, city: CityDep, who: Admin) -> Response:
    """The rule stops; the alarms it raised stay for operators to close."""
    await engine_of(city).delete(rule_id, who.name)
    return Response(status_code=204)


@router.post("/{rule_id}/enable", summary="Enable a rule (and lift a loop-guard stop)")
async def enable_rule(rule_id: str, city: CityDep, who: Admin) -> Response:
    """The rule is evaluated again."""
    engine = engine_of(city)
    return _json(engine.view(await engine.enable(rule_id, who.name)))


@router.post("/{rule_id}/disable", summary="Disable a rule")
async def disable_rule(rule_id: str, city: CityDep, who: Admin) -> Response:
    """The rule is no longer evaluated."""
    engine = engine_of(city)
    return _json(engine.view(await engine.disable(rule_id, who.name)))
