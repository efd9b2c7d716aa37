"""Rules over HTTP (see docs/rules.md).

* ``GET /api/v1/rules`` (viewer): every rule with what it did and its errors, and
  the rule files that could not be loaded.
* ``POST /api/v1/rules`` (admin): add a rule; 400 naming the field (and the line and
  column in a CEL expression) when it does not compile, 409 when the id is taken.
* ``GET | PUT | DELETE /api/v1/rules/{id}`` (viewer | admin | admin).
* ``POST /api/v1/rules/{id}/enable | disable`` (admin).
* ``POST /api/v1/rules/test`` (admin): the dry run of a rule, saved or not, over the
  recorded history between ``from`` and ``to``.

``/rules/test`` is a literal path: the ``{id}`` routes leave it alone (no rule may be
called ``test``), so a GET there is a 405 allowing POST, as the OpenAPI description
says (see :class:`LiteralFirstRoute`).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from citypilot.api.body import read_json, read_object, refuse_body
from citypilot.api.deps import Admin, CityDep, Viewer, resolved
from citypilot.api.openapi import NO_BODY, json_body, problem
from citypilot.engine.rule_dryrun import dry_run
from citypilot.engine.rule_model import compile_rule
from citypilot.engine.rules import RuleEngine
from citypilot.model.errors import BadRequestData
from citypilot.model.ids import check_entity_id
from citypilot.model.timeutil import parse_instant

DRY_RUN_PATH = "/api/v1/rules/test"


class LiteralFirstRoute(APIRoute):
    """A route of this router; the templated ones (``/rules/{id}``) do not match the
    literal paths in :attr:`shadowed_paths`, which belong to the literal routes alone.
    ``api.problems.allowed_methods`` honours the same attribute for 405's ``Allow``."""

    shadowed_paths = frozenset({DRY_RUN_PATH})

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """No match for a shadowed path unless this route is the literal one."""
        if "{" in self.path and scope.get("path") in self.shadowed_paths:
            return Match.NONE, {}
        return super().matches(scope)


router = APIRouter(prefix="/api/v1/rules", tags=["rules"], route_class=LiteralFirstRoute)
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
    return _json(await resolved(engine_of(city).listing()))


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
    return _json(await resolved(engine.view(rule)), 201, {"Location": f"/api/v1/rules/{rule.id}"})


_DRY_RUN_SCHEMA = {
    "type": "object",
    "required": ["from", "to"],
    "properties": {
        "rule": RULE_SCHEMA,
        "id": {"type": "string", "description": "a saved rule (or give rule)"},
        "from": {"type": "string", "format": "date-time"},
        "to": {"type": "string", "format": "date-time"},
        "entities": {"type": "array", "items": {"type": "string"}},
    },
}
_DRY_RUN_KEYS = frozenset(_DRY_RUN_SCHEMA["properties"])  # type: ignore[arg-type]


@router.post(
    "/test",
    summary="Dry run: what a rule would have done over recorded history",
    responses=problem(404, "The saved rule named by id does not exist"),
    openapi_extra=json_body(_DRY_RUN_SCHEMA),
)
async def test_rule(request: Request, city: CityDep, _: Admin) -> Response:
    """Replay ``from``..``to`` through the rule (``rule``, or the saved rule ``id``):
    what it would have raised, cleared, commanded, called and opened, with times."""
    doc = await read_object(request, city.settings.max_body_bytes, _DRY_RUN_KEYS, "a dry run")
    engine = engine_of(city)
    if ("rule" in doc) == ("id" in doc):
        raise BadRequestData("give either rule (a definition) or id (a saved rule)", "rule")
    if "id" in doc:
        if not isinstance(doc["id"], str):
            raise BadRequestData("id must name a saved rule", "id")
        rule = await resolved(engine.get(doc["id"]))
    else:
        given = doc["rule"]
        if isinstance(given, dict) and "id" not in given:
            given = {**given, "id": "dry-run"}
        try:
            rule = compile_rule(given, city.broker.registry)
        except BadRequestData as exc:
            exc.field = f"rule.{exc.field}" if exc.field else "rule"
            raise
    start = parse_instant(doc.get("from"), "from")
    end = parse_instant(doc.get("to"), "to")
    entities = doc.get("entities")
    if entities is not None:
        if not isinstance(entities, list) or not entities:
            raise BadRequestData("entities must be a non-empty list of entity ids", "entities")
        entities = [check_entity_id(e, f"entities[{k}]") for k, e in enumerate(entities)]
    found = await dry_run(city.broker.store, rule, start, end, entities)
    return _json(found.to_json(rule, start, end))


@router.get("/{rule_id}", summary="One rule, with what it did and its errors")
async def get_rule(rule_id: str, city: CityDep, _: Viewer) -> Response:
    """Definition, version, owner, enabled, and the counts and last errors."""
    engine = engine_of(city)
    return _json(await resolved(engine.view(await resolved(engine.get(rule_id)))))


@router.put(
    "/{rule_id}",
    summary="Replace a rule (its version goes up)",
    openapi_extra=json_body(RULE_SCHEMA),
)
async def replace_rule(rule_id: str, request: Request, city: CityDep, who: Admin) -> Response:
    """The new definition replaces the old one; the trigger's state starts anew."""
    doc = await read_json(request, city.settings.max_body_bytes)
    engine = engine_of(city)
    return _json(await resolved(engine.view(await engine.replace(rule_id, doc, who.name))))


@router.delete("/{rule_id}", status_code=204, summary="Remove a rule")
async def delete_rule(rule_id: str, city: CityDep, who: Admin) -> Response:
    """The rule stops; the alarms it raised stay for operators to close."""
    await engine_of(city).delete(rule_id, who.name)
    return Response(status_code=204)


@router.post(
    "/{rule_id}/enable", summary="Enable a rule (and lift a loop-guard stop)", openapi_extra=NO_BODY
)
async def enable_rule(rule_id: str, request: Request, city: CityDep, who: Admin) -> Response:
    """The rule is evaluated again."""
    await refuse_body(request, city.settings.max_body_bytes, "an enable request")
    engine = engine_of(city)
    return _json(await resolved(engine.view(await engine.enable(rule_id, who.name))))


@router.post("/{rule_id}/disable", summary="Disable a rule", openapi_extra=NO_BODY)
async def disable_rule(rule_id: str, request: Request, city: CityDep, who: Admin) -> Response:
    """The rule is no longer evaluated."""
    await refuse_body(request, city.settings.max_body_bytes, "a disable request")
    engine = engine_of(city)
    return _json(await resolved(engine.view(await engine.disable(rule_id, who.name))))
