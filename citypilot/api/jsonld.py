"""JSON-LD at the edges of the NGSI-LD API (ETSI GS CIM 009 §6.3.5-6.3.7).

A request's @context comes from its ``Link`` header (``application/json`` bodies and
bodiless requests) or from the body's ``@context`` (``application/ld+json``); without
either, the core context applies. :class:`JsonLdEdge` (ASGI middleware over
``/ngsi-ld/v1``) resolves the Link context, expands the type and attribute names of
the query (``type``, ``attrs``, ``pick``, ``omit``, ``q``, ``geoproperty``) and of the
path to the stored names, and compacts the answer with the same context: in the body's
``@context`` for ``Accept: application/ld+json``, else named by the ``Link`` header.
:func:`ld_body` (called by ``read_json`` for NGSI-LD paths) applies the content-type
rules to bodies and expands their terms.

Requests without a user context and without expanded names take the fast path: the
query, path and answer pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citypilot.api.ldterms import (
    CORE_MEMBERS,
    rename_attribute,
    rename_discovery,
    rename_entities,
    rename_names,
    rename_q,
    rename_query,
    rename_subscription,
    rename_type_selector,
)
from citypilot.api.problems import problem_response
from citypilot.model.errors import BadRequestData, CityPilotError
from citypilot.model.ldcontext import (
    CONTEXT_REL,
    CORE,
    CORE_URL,
    TermMap,
    is_core_url,
    link_header,
)

PREFIX = "/ngsi-ld/v1/"
LD_JSON = "application/ld+json"
CORE_LINK = link_header(CORE_URL)


@dataclass(frozen=True)
class LdRequest:
    """The @context a request is read and answered with."""

    terms: TermMap
    #: the context's URL (the Link header's, or where an inline one is kept), if any
    url: str | None = None

    def response_context(self) -> Any:
        """The ``@context`` member of an ``application/ld+json`` answer."""
        if self.terms is CORE:
            return CORE_URL
        value = self.url or self.terms.value
        chain = value if isinstance(value, list) else [value]
        if not any(isinstance(v, str) and is_core_url(v) for v in chain):
            chain = [*chain, CORE_URL]
        return chain[0] if len(chain) == 1 else chain

    def link(self) -> str:
        """The ``Link`` header of an ``application/json`` answer."""
        return CORE_LINK if self.terms is CORE or self.url is None else link_header(self.url)


CORE_REQUEST = LdRequest(CORE)


def context_links(headers: Headers) -> list[str]:
    """The URLs of the JSON-LD context links of a request's ``Link`` headers."""
    urls = []
    for header in headers.getlist("link"):
        for part in _split_links(header):
            target, _, params = part.partition(">")
            if CONTEXT_REL in params:
                urls.append(target.strip().lstrip("<").strip())
    return urls


def _split_links(header: str) -> list[str]:
    """A Link header's links (commas inside ``<...>`` or quotes do not split)."""
    parts, start, depth, quoted = [], 0, 0, False
    for i, c in enumerate(header):
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "<":
            depth += 1
        elif not quoted and c == ">":
            depth -= 1
        elif not quoted and depth == 0 and c == ",":
            parts.append(header[start:i])
            start = i + 1
    parts.append(header[start:])
    return [p.strip() for p in parts if p.strip()]


def with_context_link(header: str | None, link: str | None) -> str | None:
    """A response's ``Link`` header with its context link replaced by ``link`` (None:
    removed); its other links (the pages) kept."""
    others = [p for p in _split_links(header or "") if CONTEXT_REL not in p]
    links = [link, *others] if link else others
    return ", ".join(links) if links else None


def _set_link(headers: MutableHeaders, link: str | None) -> None:
    value = with_context_link(headers.get("link"), link)
    if "link" in headers:
        del headers["link"]
    if value:
        headers["link"] = value


def prefers_ld(accept: str) -> bool:
    """Whether an ``Accept`` header asks for ``application/ld+json`` before JSON."""
    best, best_q = None, -1.0
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if media not in ("application/json", LD_JSON, "application/geo+json", "*/*"):
            continue
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = media, q
    return best == LD_JSON


def contexts_of(app: Any) -> Any:
    """The app's context service (``api.ldcontexts.LdContexts``)."""
    return app.state.ld_contexts


# -- the query and the path ------------------------------------------------------
_LIST_PARAMS = {"attrs", "pick", "omit", "expandValues"}


def _rename_query_string(raw: bytes, terms: TermMap) -> bytes:
    """The query string with the names of its NGSI-LD parameters stored-named."""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    rename = terms.stored
    out = []
    for key, value in pairs:
        if key == "type":
            value = rename_type_selector(value, rename)
        elif key in _LIST_PARAMS:
            value = rename_names(value, rename, CORE_MEMBERS)
        elif key == "q":
            value = rename_q(value, rename)
        elif key == "geoproperty":
            value = rename(value)
        out.append((key, value))
    return urlencode(out, quote_via=quote).encode("latin-1")


def _name_segment(parts: list[str]) -> int | None:
    """Which segment of a ``/ngsi-ld/v1/...`` path (split on ``/``) is a type or
    attribute name, if one is."""
    n = len(parts)
    if n >= 4 and parts[0] == "entities" and parts[2] == "attrs":
        return 3
    if n >= 5 and parts[:2] == ["temporal", "entities"] and parts[3] == "attrs":
        return 4
    if n == 2 and parts[0] in ("types", "attributes"):
        return 1
    return None


def _rename_path(scope: Scope, terms: TermMap) -> Scope:
    """The scope with the type or attribute name of its path stored-named."""
    raw = scope.get("raw_path") or scope["path"].encode()
    head, _, rest = raw.partition(PREFIX.encode())
    parts = rest.split(b"/")
    at = _name_segment([unquote(p.decode("latin-1")) for p in parts])
    if at is None:
        return scope
    name = unquote(parts[at].decode("latin-1"))
    stored = terms.stored(name)
    if stored == name:
        return scope
    parts[at] = quote(stored, safe="").encode("latin-1")
    new_raw = head + PREFIX.encode() + b"/".join(parts)
    return {**scope, "raw_path": new_raw, "path": unquote(new_raw.decode("latin-1"))}


def _plain(scope: Scope) -> bool:
    """Whether a request names no context, asks for no JSON-LD and gives no expanded
    name: one look at the raw headers and query, for the requests most clients send."""
    for key, value in scope["headers"]:
        if key == b"link" or (key == b"accept" and b"ld+json" in value):
            return False
    return not _needs_renaming(scope, CORE)


def _needs_renaming(scope: Scope, terms: TermMap) -> bool:
    if terms is not CORE:
        return True
    qs = scope.get("query_string") or b""
    # ":" or its escape (%3A; any %3x, to look once): an expanded name may be there
    return b":" in qs or b"%3" in qs or b"%3" in (scope.get("raw_path") or b"")


# -- the answer ------------------------------------------------------------------
def _answer_shape(method: str, rest: str) -> str | None:
    """What an answer at ``/ngsi-ld/v1/<rest>`` holds, when it holds names."""
    parts = rest.split("/")
    head = parts[0]
    if method == "GET" and head == "entities" and len(parts) <= 2:
        return "entities"
    if method == "GET" and parts[:2] == ["temporal", "entities"] and len(parts) <= 3:
        return "entities"
    if method == "POST" and parts == ["entityOperations", "query"]:
        return "entities"
    if method == "GET" and head in ("types", "attributes") and len(parts) <= 2:
        return "discovery"
    if method == "GET" and head == "subscriptions" and len(parts) <= 2:
        return "subscriptions"
    return None


def _key_values(query: bytes) -> bool:
    params = dict(parse_qsl(query.decode("latin-1")))
    options = {o.strip() for o in params.get("options", "").split(",")}
    return bool(options & {"keyValues", "simplified"}) or params.get("format") in (
        "keyValues",
        "simplified",
    )


def compact_answer(body: Any, shape: str, ld: LdRequest, ld_out: bool, key_values: bool) -> Any:
    """An answer's names in the reader's terms; with ``ld_out``, each document carries
    the ``@context``."""
    rename = ld.terms.shown
    if shape == "entities":
        body = rename_entities(body, rename, key_values) if ld.terms is not CORE else body
    elif shape == "discovery":
        body = rename_discovery(body, rename) if ld.terms is not CORE else body
    elif shape == "subscriptions" and ld.terms is not CORE:
        body = (
            [rename_subscription(s, rename) for s in body]
            if isinstance(body, list)
            else rename_subscription(body, rename)
        )
    if ld_out:
        context = ld.response_context()
        if isinstance(body, list):
            body = [{"@context": context, **d} if isinstance(d, dict) else d for d in body]
        elif isinstance(body, dict):
            body = {"@context": context, **body}
    return body


class JsonLdEdge:
    """ASGI middleware: the @context of NGSI-LD requests and answers (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD") and _plain(scope):
            await self.app(scope, receive, send)  # the fast path: no context, nothing to do
            return
        headers = Headers(scope=scope)
        try:
            ld = await self._link_context(scope, headers)
        except CityPilotError as exc:
            await problem_response(exc, getattr(exc, "headers", None))(scope, receive, send)
            return
        if ld is not CORE_REQUEST:
            scope.setdefault("state", {})["ld"] = ld
        if _needs_renaming(scope, ld.terms):
            scope = _rename_path(scope, ld.terms)
            if scope.get("query_string"):
                scope = {
                    **scope,
                    "query_string": _rename_query_string(scope["query_string"], ld.terms),
                }
        ld_out = prefers_ld(headers.get("accept", ""))
        if scope["method"] in ("GET", "HEAD") and ld is CORE_REQUEST and not ld_out:
            await self.app(scope, receive, send)  # nothing to compact
            return
        shape = _answer_shape(scope["method"], path[len(PREFIX) :])
        await self.app(scope, receive, _Compactor(scope, send, shape, ld_out).send)

    @staticmethod
    async def _link_context(scope: Scope, headers: Headers) -> LdRequest:
        """The context the Link header names (ignored with an ld+json body)."""
        if "link" not in headers:
            return CORE_REQUEST
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == LD_JSON:
            return CORE_REQUEST
        urls = context_links(headers)
        if not urls:
            return CORE_REQUEST
        if len(urls) > 1:
            raise BadRequestData("give at most one JSON-LD context Link header", "Link")
        url = urls[0]
        if is_core_url(url):
            return CORE_REQUEST
        terms = await contexts_of(scope["app"]).resolve(url, "Link")
        return LdRequest(terms, url)


GEOJSON = "application/geo+json"
#: the answers whose names are compacted
_COMPACTED = ("application/json", GEOJSON)


class _Compactor:
    """The answer's ``send``: buffers a JSON answer, compacts it and sets its headers."""

    def __init__(self, scope: Scope, send: Send, shape: str | None, ld_out: bool) -> None:
        self.scope = scope
        self.inner = send
        self.shape = shape
        self.ld_out = ld_out
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.passing = False

    def _ld(self) -> LdRequest:
        return self.scope.get("state", {}).get("ld", CORE_REQUEST)

    async def send(self, message: Message) -> None:
        if self.passing:
            await self.inner(message)
            return
        if message["type"] == "http.response.start":
            headers = MutableHeaders(raw=list(message["headers"]))
            media = headers.get("content-type", "").split(";")[0]
            ok = 200 <= message["status"] < 300
            ld = self._ld()
            if media == GEOJSON:  # GeoJSON: compacted, with its Link; never ld+json
                self.ld_out = False
            if not ok or media not in _COMPACTED or self.shape is None:
                if ok and media in _COMPACTED and ld is not CORE_REQUEST:
                    _set_link(headers, ld.link())
                    message = {**message, "headers": headers.raw}
                self.passing = True
                await self.inner(message)
                return
            if ld is CORE_REQUEST and not self.ld_out:
                self.passing = True
                await self.inner(message)
                return
            self.start = message
            return
        if message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._flush()
            return
        await self.inner(message)

    async def _flush(self) -> None:
        assert self.start is not None
        ld = self._ld()
        body = orjson.loads(b"".join(self.chunks)) if any(self.chunks) else None
        key_values = _key_values(self.scope.get("query_string", b""))
        assert self.shape is not None
        out = orjson.dumps(compact_answer(body, self.shape, ld, self.ld_out, key_values))
        headers = MutableHeaders(raw=list(self.start["headers"]))
        headers["content-length"] = str(len(out))
        if self.ld_out:
            headers["content-type"] = LD_JSON
        _set_link(headers, None if self.ld_out else ld.link())
        await self.inner({**self.start, "headers": headers.raw})
        await self.inner({"type": "http.response.body", "body": out})


# -- bodies ------------------------------------------------------------------------
def _body_shape(method: str, rest: str) -> str | None:
    """What a request body at ``/ngsi-ld/v1/<rest>`` holds, when it holds names."""
    parts = rest.split("/")
    if parts[0] == "temporal":
        parts = parts[1:]
    head, n = parts[0], len(parts)
    if head == "entities":
        return "attribute" if n >= 4 else "entities"
    if head == "entityOperations":
        if parts[1:] == ["query"]:
            return "query"
        return None if parts[1:] == ["delete"] else "entities"
    if head == "subscriptions":
        return "subscription"
    return None


def _carries_context(doc: Any) -> bool | None:
    """Whether a body holds ``@context`` (every document of a list must); None for a
    body that is no document (a list of ids)."""
    if isinstance(doc, dict):
        return "@context" in doc
    if isinstance(doc, list) and doc and all(isinstance(d, dict) for d in doc):
        return all("@context" in d for d in doc)
    return None


def _any_context(doc: Any) -> bool:
    if isinstance(doc, dict):
        return "@context" in doc
    return isinstance(doc, list) and any(isinstance(d, dict) and "@context" in d for d in doc)


async def ld_body(request: Request, doc: Any) -> Any:
    """A parsed NGSI-LD body checked against its content type (§6.3.5) and with its
    type and attribute names stored-named, its ``@context`` taken off; the request's
    context (for the answer) is that of the body, else of the Link header."""
    path = request.url.path
    rest = path[len(PREFIX) :]
    if not path.startswith(PREFIX) or rest.startswith("jsonldContexts"):
        return doc
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != LD_JSON:
        if _any_context(doc):
            raise BadRequestData(
                "an application/json body must not hold @context: send it as "
                "application/ld+json, or name the context in a Link header",
                "@context",
            )
        ld = request.scope.get("state", {}).get("ld", CORE_REQUEST)
        shape = _body_shape(request.method, rest)
        return await _for_notifications(
            request, _rename_body(doc, shape, lambda _d: ld.terms), shape
        )
    if _carries_context(doc) is False:
        raise BadRequestData(
            "an application/ld+json body must hold its @context (every entity of a batch)",
            "@context",
        )
    contexts = contexts_of(request.app)
    docs = doc if isinstance(doc, list) else [doc]
    maps: dict[int, TermMap] = {}
    for i, d in enumerate(docs):
        if isinstance(d, dict) and "@context" in d:
            where = "@context" if d is doc else f"[{i}].@context"
            maps[id(d)] = await contexts.resolve(d["@context"], where)
    first = next((d for d in docs if isinstance(d, dict) and "@context" in d), None)
    if first is not None:
        base = str(request.base_url).rstrip("/")
        request.state.ld = await contexts.request_of(first["@context"], maps[id(first)], base)
    shape = _body_shape(request.method, rest)
    renamed = _rename_body(doc, shape, lambda d: maps.get(id(d), CORE))
    return await _for_notifications(request, renamed, shape)


async def _for_notifications(request: Request, doc: Any, shape: str | None) -> Any:
    """A subscription notifies in the terms of its ``jsonldContext``: by default the
    request's context (by URL: an inline one is kept to be named); resolved now, so a
    context that cannot be had is refused at once."""
    if shape != "subscription" or not isinstance(doc, dict):
        return doc
    ld = request.scope.get("state", {}).get("ld", CORE_REQUEST)
    if "jsonldContext" not in doc and ld.terms is not CORE and ld.url is not None:
        doc = {**doc, "jsonldContext": ld.url}
    if isinstance(doc.get("jsonldContext"), str):
        await contexts_of(request.app).resolve(doc["jsonldContext"], "jsonldContext")
    return doc


def _rename_body(doc: Any, shape: str | None, terms_of: Any) -> Any:
    """The body with its names stored-named (each document with its own context)."""

    def one(d: Any) -> Any:
        if not isinstance(d, dict):
            return d
        rename = terms_of(d).stored
        d = {k: v for k, v in d.items() if k != "@context"}
        if shape == "entities":
            return rename_entities(d, rename)
        if shape == "attribute":
            return rename_attribute(d, rename)
        if shape == "query":
            return rename_query(d, rename)
        if shape == "subscription":
            return rename_subscription(d, rename)
        return d

    if isinstance(doc, list):
        return [one(d) for d in doc]
    return one(doc)
