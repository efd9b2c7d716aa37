"""The NGSI-LD query language (``q=``): parsed once into a tree, compiled to SQL per backend.

Grammar (ETSI GS CIM 009, clause 4.9): terms joined by ``;`` (AND) and ``|``
(OR), grouped with parentheses; a term is an attribute alone (it exists) or
``attr OP value`` with OP one of ``== != > >= < <= ~= !~=``; ``==``/``!=`` also
take a list ``a,b,c`` or a range ``lo..hi``. Values are numbers, ``"strings"``,
``true``/``false``, bare ISO 8601 date-times or bare URIs (``urn:ngsi-ld:Building:7``).
AND binds tighter than OR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from citypilot.model.errors import BadRequestData
from citypilot.model.patterns import check_pattern

Value = float | str | bool


@dataclass(frozen=True)
class Term:
    """``attr`` alone (op None), or compared with one value, a list or a range."""

    attr: str
    op: str | None = None
    values: tuple[Value, ...] = ()
    is_range: bool = False


@dataclass(frozen=True)
class And:
    """All of the items hold."""

    items: tuple[QueryNode, ...]


@dataclass(frozen=True)
class Or:
    """At least one of the items holds."""

    items: tuple[QueryNode, ...]


QueryNode = Term | And | Or

_OPS = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")
_ATTR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: an attribute named by its full IRI (a name no context compacts, see model.ldcontext)
_IRI_ATTR = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s;|()<>=!~\"\[\]]+")
#: An absolute URI as a bare value: a scheme, a colon, then no spaces or quotes.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s\"]+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
MAX_Q_LENGTH = 2000


def _split_unquoted(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` where it is not inside a double-quoted string."""
    parts, start, i, quoted = [], 0, 0, False
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif not quoted and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _read_value(text: str, pos: int) -> int:
    """End of the value that starts at ``pos``: the first unquoted ``;``, ``|`` or ``)``."""
    quoted = False
    while pos < len(text):
        c = text[pos]
        if c == "\\" and quoted:
            pos += 2
            continue
        if c == '"':
            quoted = not quoted
        elif not quoted and c in ";|)":
            break
        pos += 1
    if quoted:
        raise BadRequestData("q: unterminated string", "q")
    return pos


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        c = text[pos]
        if c.isspace():
            pos += 1
        elif c in "();|":
            out.append(({"(": "lp", ")": "rp", ";": "and", "|": "or"}[c], c))
            pos += 1
        elif out and out[-1][0] == "op":
            end = _read_value(text, pos)
            out.append(("value", text[pos:end].strip()))
            pos = end
        else:
            op = next((o for o in _OPS if text.startswith(o, pos)), None)
            if op is not None:
                out.append(("op", op))
                pos += len(op)
                continue
            m = _IRI_ATTR.match(text, pos) or re.compile(r"[A-Za-z0-9_.\[\]]+").match(text, pos)
            if m is None:
                raise BadRequestData(f"q: cannot read {text[pos : pos + 20]!r} at {pos}", "q")
            out.append(("word", m.group()))
            pos = m.end()
    return out


def _literal(text: str) -> Value:
    text = text.strip()
    if text.startswith('"'):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise BadRequestData(f"q: bad string literal {text[:40]}", "q") from None
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.match(text):
        return float(text)
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        return text  # date-time compared as text, like stored ISO values
    if _URI.match(text):
        return text  # a URI needs no quotes (a Relationship's object, say)
    raise BadRequestData(
        f"q: {text[:40]!r} is not a number, a quoted string, true/false, a date-time or a URI",
        "q",
    )


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse_or(self) -> QueryNode:
        items = [self.parse_and()]
        while self.peek() == "or":
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> QueryNode:
        items = [self.parse_atom()]
        while self.peek() == "and":
            self.take()
            items.append(self.parse_atom())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_atom(self) -> QueryNode:
        kind = self.peek()
        if kind == "lp":
            self.take()
            node = self.parse_or()
            if self.peek() != "rp":
                raise BadRequestData("q: missing ')'", "q")
            self.take()
            return node
        if kind != "word":
            raise BadRequestData("q: expected an attribute name", "q")
        attr = self.take()[1]
        if not (_ATTR.match(attr) or _IRI_ATTR.fullmatch(attr)):
            raise BadRequestData(f"q: {attr!r} is not an attribute name", "q")
        if self.peek() != "op":
            return Term(attr)
        op = self.take()[1]
        if self.peek() != "value" or not self.tokens[self.i][1]:
            raise BadRequestData(f"q: {attr}{op} needs a value", "q")
        raw = self.take()[1]
        if op in ("~=", "!~="):
            pattern = _literal(raw)
            if not isinstance(pattern, str):
                raise BadRequestData(f"q: {attr}{op} needs a quoted pattern", "q")
            check_pattern(pattern, "q")
            return Term(attr, op, (pattern,))
        items = _split_unquoted(raw, ",")
        bounds = _split_unquoted(raw, "..") if len(items) == 1 else [raw]
        if (len(items) > 1 or len(bounds) > 1) and op not in ("==", "!="):
            raise BadRequestData(f"q: lists and ranges go with == and != only ({attr}{op})", "q")
        if len(bounds) == 2:
            return Term(attr, op, (_literal(bounds[0]), _literal(bounds[1])), is_range=True)
        if len(bounds) > 2:
            raise BadRequestData(f"q: a range has two ends ({attr})", "q")
        return Term(attr, op, tuple(_literal(v) for v in items))


def parse_q(text: str) -> QueryNode:
    """Parse an NGSI-LD ``q`` expression; BadRequestData (field ``q``) when it is not one."""
    if len(text) > MAX_Q_LENGTH:
        raise BadRequestData(f"q is longer than {MAX_Q_LENGTH} characters", "q")
    tokens = _tokens(text)
    if not tokens:
        raise BadRequestData("q is empty", "q")
    parser = _Parser(tokens)
    node = parser.parse_or()
    if parser.i != len(tokens):
        raise BadRequestData(f"q: unexpected {tokens[parser.i][1]!r}", "q")
    return node


def uses_pattern(node: QueryNode) -> bool:
    """Whether a query matches a regular expression (``~=`` or ``!~=``) anywhere."""
    if isinstance(node, Term):
        return node.op in ("~=", "!~=")
    return any(uses_pattern(i) for i in node.items)


def attr_names(node: QueryNode) -> set[str]:
    """Every attribute a query mentions."""
    if isinstance(node, Term):
        return {node.attr}
    return set().union(*(attr_names(i) for i in node.items))


@dataclass(frozen=True)
class Dialect:
    """How a backend spells things: placeholder, attribute sub-query, regex match."""

    placeholder: str  # "?" or "%s"
    attr_exists: str  # "EXISTS (SELECT 1 FROM attrs a WHERE a.eid = e.eid AND a.name = ? AND {})"
    regex: str  # "regexp({pattern}, {subject})" or "{subject} ~ {pattern}"
    json_text: str  # expression giving the stored JSON text of the value, e.g. "a.value"
    raw_text: str  # expression giving a string value without JSON quoting (for patterns)


def _scalar_condition(d: Dialect, op: str, value: Value, params: list[Any]) -> str:
    ph = d.placeholder
    if isinstance(value, bool):
        params.append(1.0 if value else 0.0)
        return f"a.num {op} {ph}"
    if isinstance(value, float):
        params.append(value)
        return f"a.num {op} {ph}"
    params.append(orjson.dumps(value).decode())
    return f"{d.json_text} {op} {ph}"


def _term_condition(d: Dialect, term: Term, params: list[Any]) -> str:
    ph = d.placeholder
    if term.op is None:
        return "TRUE"
    if term.op in ("~=", "!~="):
        params.append(term.values[0])
        match = d.regex.format(pattern=ph, subject=d.raw_text)
        return match if term.op == "~=" else f"NOT ({match})"
    negate = term.op == "!="
    if term.is_range:
        lo = _scalar_condition(d, ">=", term.values[0], params)
        hi = _scalar_condition(d, "<=", term.values[1], params)
        cond = f"({lo} AND {hi})"
    elif len(term.values) > 1:
        cond = "(" + " OR ".join(_scalar_condition(d, "=", v, params) for v in term.values) + ")"
    else:
        op = {"==": "=", "!=": "="}.get(term.op, term.op)
        cond = _scalar_condition(d, op, term.values[0], params)
    return f"NOT {cond}" if negate else cond


def compile_q(node: QueryNode, d: Dialect, params: list[Any]) -> str:
    """Compile a query tree to a SQL condition on the entity row ``e``; appends its params."""
    if isinstance(node, Term):
        params.append(node.attr)
        cond = _term_condition(d, node, params)
        # the attribute name placeholder comes first in the sub-query
        return d.attr_exists.format(cond)
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(compile_q(i, d, params) for i in node.items) + ")"
