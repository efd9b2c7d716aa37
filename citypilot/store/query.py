"""The NGSI-LD query language (``q=``): parsed once into a tree, compiled to SQL per backend.

Grammar (ETSI GS CIM 009, clause 4.9): terms joined by ``;`` (AND) and ``|``
(OR), grouped with parentheses; a term is an attribute alone (it exists) or
``attr OP value`` with OP one of ``== != > >= < <= ~= !~=``; ``==``/``!=`` also
take a list ``a,b,c`` or a range ``lo..hi``. Values are numbers, ``"strings"``,
``true``/``false``, bare ISO 8601 date-times or bare URIs (``urn:ngsi-ld:Building:7``).
AND binds tighter than OR. An attribute may be given as a path: ``a.b.c`` names a
sub-attribute (a property or relationship of a property, compared by its value or
object), ``a[k][l]`` a key inside a structured value (of the attribute or of a
sub-attribute: ``a.b[k]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from citypilot.model.errors import BadRequestData
from citypilot.model.patterns import check_pattern

Value = float | str | bool


@dataclass(frozen=True)
class Term:
    """``attr`` alone (op None), or compared with one value, a list or a range; ``sub``
    (the sub-attribute names of ``attr.b.c``) and ``keys`` (of ``attr[k][l]``) lead
    from the attribute to what is tested."""

    attr: str
    op: str | None = None
    values: tuple[Value, ...] = ()
    is_range: bool = False
    sub: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


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
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: an attribute path as one word, up to an operator, a space or ``;|()`` (its names may
#: be full IRIs, names no context compacts: see model.ldcontext); parse_path reads it
_PATH_WORD = re.compile(r"[^\s;|()<>=!~\"]+")
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


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        c = text[pos]
        if c.isspace():
            pos += 1
        elif c in "();|":
            out.append(({"(": "lp", ")": "rp", ";": "and", "|": "or"}[c], c, pos))
            pos += 1
        elif out and out[-1][0] == "op":
            end = _read_value(text, pos)
            out.append(("value", text[pos:end].strip(), pos))
            pos = end
        else:
            op = next((o for o in _OPS if text.startswith(o, pos)), None)
            if op is not None:
                out.append(("op", op, pos))
                pos += len(op)
                continue
            m = _PATH_WORD.match(text, pos)
            if m is None:
                raise BadRequestData(f"q: cannot read {text[pos : pos + 20]!r} at {pos}", "q")
            out.append(("word", m.group(), pos))
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
    def __init__(self, tokens: list[tuple[str, str, int]]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
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
        _, attr, at = self.take()
        path: dict[str, Any] = {}
        attr, path["sub"], path["keys"] = parse_path(attr, at)
        if self.peek() != "op":
            return Term(attr, **path)
        op = self.take()[1]
        if self.peek() != "value" or not self.tokens[self.i][1]:
            raise BadRequestData(f"q: {attr}{op} needs a value", "q")
        raw = self.take()[1]
        if op in ("~=", "!~="):
            pattern = _literal(raw)
            if not isinstance(pattern, str):
                raise BadRequestData(f"q: {attr}{op} needs a quoted pattern", "q")
            check_pattern(pattern, "q")
            return Term(attr, op, (pattern,), **path)
        items = _split_unquoted(raw, ",")
        bounds = _split_unquoted(raw, "..") if len(items) == 1 else [raw]
        if (len(items) > 1 or len(bounds) > 1) and op not in ("==", "!="):
            raise BadRequestData(f"q: lists and ranges go with == and != only ({attr}{op})", "q")
        if len(bounds) == 2:
            ends = (_literal(bounds[0]), _literal(bounds[1]))
            return Term(attr, op, ends, is_range=True, **path)
        if len(bounds) > 2:
            raise BadRequestData(f"q: a range has two ends ({attr})", "q")
        return Term(attr, op, tuple(_literal(v) for v in items), **path)


#: the start of a name that is an IRI: a scheme (no dots: ``speed.https://`` is two
#: names), a colon, then ``//`` or a letter (``https://...``, ``urn:...``; not a port)
_IRI_START = re.compile(r"[A-Za-z][A-Za-z0-9+\-]*:(?://|[A-Za-z])")


def name_end(text: str, i: int) -> int | None:
    """Where the attribute or sub-attribute name starting at ``i`` of a path ends (None:
    no name there). A name is a plain term (``speed``) or an IRI, which keeps its dots
    up to its last ``/`` (``https://smartdatamodels.org/dataModel.Transportation/speed``):
    in ``<iri>.<name>``, a ``.`` after the IRI's last segment starts the next name."""
    iri = _IRI_START.match(text, i)
    if iri is None:
        m = _NAME.match(text, i)
        return None if m is None else m.end()
    stop = next((j for j in range(i, len(text)) if text[j].isspace()), len(text))
    next_iri = text.find("://", iri.end(), stop)  # a sub-attribute named by its IRI
    own_end = stop if next_iri == -1 else max(text.rfind(".", i, next_iri), iri.end())
    j = max(text.rfind("/", i, own_end) + 1, iri.end())
    while j < stop and text[j] not in ".[]":
        j += 1
    return j


def _path_error(text: str, at: int, i: int, what: str) -> BadRequestData:
    return BadRequestData(f"q: attribute path {text!r}: {what} at position {at + i}", "q")


def parse_path(text: str, at: int = 0) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """An attribute path ``a``, ``a.b.c``, ``a[k][l]`` or ``a.b[k]`` (starting at
    position ``at`` of the query) as its attribute, sub-attribute names and keys;
    BadRequestData naming the position where it goes wrong."""
    names: list[str] = []
    keys: list[str] = []
    i = 0
    while True:
        end = name_end(text, i)
        if end is None:
            raise _path_error(text, at, i, "expected an attribute name")
        names.append(text[i:end])
        i = end
        if i >= len(text) or text[i] != ".":
            break
        i += 1
    while i < len(text) and text[i] == "[":
        m = _NAME.match(text, i + 1)
        if m is None:
            raise _path_error(text, at, i + 1, "expected a key name")
        if m.end() >= len(text) or text[m.end()] != "]":
            raise _path_error(text, at, m.end(), "expected ']'")
        keys.append(m.group())
        i = m.end() + 1
    if i < len(text):
        raise _path_error(text, at, i, f"unexpected {text[i]!r}")
    return names[0], tuple(names[1:]), tuple(keys)


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
    """How a backend spells things: placeholder, attribute sub-query, regex match, and
    the JSON inside a stored value or meta that an attribute path leads to."""

    placeholder: str  # "?" or "%s"
    attr_exists: str  # "EXISTS (SELECT 1 FROM attrs a WHERE a.eid = e.eid AND a.name = ? AND {})"
    regex: str  # "regexp({pattern}, {subject})" or "{subject} ~ {pattern}"
    json_text: str  # expression giving the stored JSON text of the value, e.g. "a.value"
    raw_text: str  # expression giving a string value without JSON quoting (for patterns)
    #: what a path (one ``{path}`` placeholder each) leads to in the JSON text ``{doc}``:
    #: whether it is there, its number (booleans as 1 and 0) and its string, else NULL
    path_exists: str
    path_num: str
    path_text: str
    #: the path's parameter: the JSON path ``$."k"...`` (SQLite) or a text array
    path_param: Callable[[tuple[str | int, ...]], Any]


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


@dataclass(frozen=True)
class _PathScalar:
    """Comparisons on what a path leads to (``Term.sub`` / ``Term.keys``)."""

    d: Dialect
    doc: str
    path: tuple[str | int, ...]

    def expr(self, template: str, params: list[Any]) -> str:
        params.extend([self.d.path_param(self.path)] * template.count("{path}"))
        return template.format(doc=self.doc, path=self.d.placeholder)

    def __call__(self, d: Dialect, op: str, value: Value, params: list[Any]) -> str:
        if isinstance(value, bool | float):
            subject = self.expr(d.path_num, params)
            params.append(float(value))
        else:
            subject = self.expr(d.path_text, params)
            params.append(value)
        return f"{subject} {op} {d.placeholder}"


def _term_condition(d: Dialect, term: Term, params: list[Any], scalar: Any) -> str:
    ph = d.placeholder
    plain = scalar is _scalar_condition
    if term.op is None:
        return "TRUE" if plain else scalar.expr(d.path_exists, params)
    if term.op in ("~=", "!~="):
        subject_params: list[Any] = []
        subject = d.raw_text if plain else scalar.expr(d.path_text, subject_params)
        pattern_first = d.regex.index("{pattern}") < d.regex.index("{subject}")
        pattern = [term.values[0]]
        params.extend(pattern + subject_params if pattern_first else subject_params + pattern)
        match = d.regex.format(pattern=ph, subject=subject)
        if term.op == "~=":
            return match
        return f"NOT ({match})" if plain else _where_present(d, scalar, match, params)
    negate = term.op == "!="
    if term.is_range:
        lo = scalar(d, ">=", term.values[0], params)
        hi = scalar(d, "<=", term.values[1], params)
        cond = f"({lo} AND {hi})"
    elif len(term.values) > 1:
        cond = "(" + " OR ".join(scalar(d, "=", v, params) for v in term.values) + ")"
    else:
        op = {"==": "=", "!=": "="}.get(term.op, term.op)
        cond = scalar(d, op, term.values[0], params)
    if not negate:
        return cond
    # a value of another type than the query's (text for a number) is not equal to it:
    # its comparison is NULL, which NOT alone would leave out
    return f"NOT coalesce({cond}, FALSE)" if plain else _where_present(d, scalar, cond, params)


def _where_present(d: Dialect, scalar: _PathScalar, cond: str, params: list[Any]) -> str:
    """A negated condition on a path: it holds where the path leads somewhere (its
    params were appended already, so the presence test's go after them)."""
    return f"(NOT coalesce({cond}, FALSE) AND {scalar.expr(d.path_exists, params)})"


def _path_condition(d: Dialect, term: Term, params: list[Any]) -> str:
    """A term on an attribute path: on a key of the value (``a[k]``), or on the value
    or object of a sub-attribute (``a.b``, kept in the meta's third member)."""
    if not term.sub:
        return _term_condition(d, term, params, _PathScalar(d, "a.value", term.keys))
    head: tuple[str | int, ...] = (2, "sub", *term.sub)
    either = [
        _term_condition(d, term, params, _PathScalar(d, "a.meta", (*head, member, *term.keys)))
        for member in ("value", "object")
    ]
    return f"({either[0]} OR {either[1]})"


def compile_q(node: QueryNode, d: Dialect, params: list[Any]) -> str:
    """Compile a query tree to a SQL condition on the entity row ``e``; appends its params."""
    if isinstance(node, Term):
        params.append(node.attr)
        # the attribute name placeholder comes first in the sub-query
        if node.sub or node.keys:
            return d.attr_exists.format(_path_condition(d, node, params))
        return d.attr_exists.format(_term_condition(d, node, params, _scalar_condition))
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(compile_q(i, d, params) for i in node.items) + ")"
