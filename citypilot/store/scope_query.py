"""The NGSI-LD scope query language (``scopeQ``, ETSI GS CIM 009 v1.8, clause 4.19):
parsed once into a tree, compiled to SQL per backend or evaluated on an entity.

A scope expression names scopes: ``/Madrid/Gardens`` that scope exactly,
``/Madrid/+/Park`` with ``+`` standing for any one level, ``/Madrid/#`` that scope and
every scope below it, ``/#`` any scope at all. Expressions are joined with ``;`` (AND)
and ``,`` or ``|`` (OR), AND binding tighter, and grouped with parentheses. An entity
meets an expression when one of its scopes matches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from citypilot.model.errors import BadRequestData
from citypilot.model.patterns import compiled

MAX_SCOPEQ_LENGTH = 2000
_EXPRESSION = re.compile(r"/?(#|(\w+|\+)(/(\w+|\+))*(/#)?)")
_TOKEN = re.compile(r"\s*(?:([();,|])|([^\s();,|]+))")


@dataclass(frozen=True)
class ScopeMatch:
    """One scope expression, as the anchored regular expression a scope must match."""

    regex: str


@dataclass(frozen=True)
class ScopeAll:
    """All of the items hold."""

    items: tuple[ScopeNode, ...]


@dataclass(frozen=True)
class ScopeAny:
    """At least one of the items holds."""

    items: tuple[ScopeNode, ...]


ScopeNode = ScopeMatch | ScopeAll | ScopeAny


def _bad(what: str, at: int) -> BadRequestData:
    return BadRequestData(f"scopeQ: {what} at position {at}", "scopeQ")


def _regex(expression: str) -> str:
    """The anchored regular expression of a checked scope expression."""
    levels = expression.lstrip("/").split("/")
    below = levels[-1] == "#"
    if below:
        levels.pop()
    body = "/".join("[^/]+" if level == "+" else level for level in levels)
    if not body:
        return "^/?[^/]"  # /#: any scope
    return f"^/?{body}" + ("(/.*)?$" if below else "$")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # nothing but spaces left
            break
        at = m.start(1) if m.group(1) else m.start(2)
        if m.group(1):
            out.append((m.group(1), m.group(1), at))
        else:
            word = m.group(2)
            if not _EXPRESSION.fullmatch(word):
                raise _bad(f"{word[:40]!r} is not a scope expression (/a/b, /a/+/c, /a/#, /#)", at)
            out.append(("scope", word, at))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], end: int) -> None:
        self.tokens, self.i, self.end = tokens, 0, end

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def position(self) -> int:
        return self.tokens[self.i][2] if self.i < len(self.tokens) else self.end

    def parse_any(self) -> ScopeNode:
        items = [self.parse_all()]
        while self.peek() in (",", "|"):
            self.i += 1
            items.append(self.parse_all())
        return items[0] if len(items) == 1 else ScopeAny(tuple(items))

    def parse_all(self) -> ScopeNode:
        items = [self.parse_atom()]
        while self.peek() == ";":
            self.i += 1
            items.append(self.parse_atom())
        return items[0] if len(items) == 1 else ScopeAll(tuple(items))

    def parse_atom(self) -> ScopeNode:
        kind = self.peek()
        if kind == "(":
            self.i += 1
            node = self.parse_any()
            if self.peek() != ")":
                raise _bad("expected ')'", self.position())
            self.i += 1
            return node
        if kind != "scope":
            raise _bad("expected a scope expression", self.position())
        word = self.tokens[self.i][1]
        self.i += 1
        return ScopeMatch(_regex(word))


def parse_scope_q(text: str) -> ScopeNode:
    """Parse a ``scopeQ``; BadRequestData naming ``scopeQ`` and the position where it
    goes wrong."""
    if len(text) > MAX_SCOPEQ_LENGTH:
        raise BadRequestData(f"scopeQ is longer than {MAX_SCOPEQ_LENGTH} characters", "scopeQ")
    tokens = _tokens(text)
    if not tokens:
        raise BadRequestData("scopeQ is empty", "scopeQ")
    parser = _Parser(tokens, len(text))
    node = parser.parse_any()
    if parser.i != len(tokens):
        raise _bad(f"unexpected {tokens[parser.i][1]!r}", parser.position())
    return node


def compile_scope_q(node: ScopeNode, match: str, params: list[Any]) -> str:
    """A SQL condition on the entity row ``e``; ``match`` is the backend's condition that
    one of the entity's scopes matches a regular expression (its one placeholder)."""
    if isinstance(node, ScopeMatch):
        params.append(node.regex)
        return match
    joiner = " AND " if isinstance(node, ScopeAll) else " OR "
    return "(" + joiner.join(compile_scope_q(i, match, params) for i in node.items) + ")"


def meets_scope_q(node: ScopeNode, scopes: list[str]) -> bool:
    """Whether an entity of these scopes meets the scope query."""
    if isinstance(node, ScopeMatch):
        program = compiled(node.regex)
        return any(program.search(s) is not None for s in scopes)
    if isinstance(node, ScopeAll):
        return all(meets_scope_q(i, scopes) for i in node.items)
    return any(meets_scope_q(i, scopes) for i in node.items)
