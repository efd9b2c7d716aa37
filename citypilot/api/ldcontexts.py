"""User @contexts: resolving them for requests, and ``/ngsi-ld/v1/jsonldContexts``.

:class:`LdContexts` turns an @context (a URL, an object or a list) into a processed
:class:`~citypilot.model.ldcontext.TermMap`: the bundled core context, contexts kept
in the store (``Hosted`` ones added here, ``Cached`` remote ones, ``ImplicitlyCreated``
inline ones), and — only when ``jsonld_remote_contexts`` is on — remote contexts
fetched over HTTP within ``jsonld_fetch_timeout_s`` and ``jsonld_max_context_bytes``.
A context that cannot be had answers 503 LdContextNotAvailable at once.

The endpoints follow ETSI GS CIM 009 v1.8 §5.13 and §6.31: add (201 with Location),
list (URLs, or ``details=true`` ContextInfo items, by ``kind``), serve (public, as a
context server is), delete or (``reload=true``, Cached only) reload.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Annotated, Any

import httpx
import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from citypilot.api.body import read_json
from citypilot.api.deps import CityDep, Operator, Viewer
from citypilot.api.jsonld import LD_JSON, LdRequest
from citypilot.api.ldterms import rename_entities
from citypilot.api.openapi import answer, created, json_body
from citypilot.config import Settings
from citypilot.model.errors import BadRequestData, CityPilotError, ResourceNotFound
from citypilot.model.ldcontext import (
    CORE,
    CORE_URL,
    ContextCache,
    LdContextNotAvailable,
    MissingDocument,
    TermMap,
    is_core_url,
)
from citypilot.store.ldcontexts import KINDS, ContextRow, ContextTable

log = logging.getLogger(__name__)
PATH = "/ngsi-ld/v1/jsonldContexts"
#: how many documents a context may pull in (each fetched or looked up once)
MAX_DOCUMENTS = 10


def local_id(url: str) -> str | None:
    """The local id in a URL of a context served here (``…/jsonldContexts/<id>``)."""
    _, sep, tail = url.partition(PATH + "/")
    if not sep or "/" in tail or not tail:
        return None
    return tail.split("?")[0].split("#")[0]


class LdContexts:
    """Resolves @contexts (cached once processed) and keeps the ones the API holds."""

    def __init__(self, settings: Settings, table: ContextTable) -> None:
        self.settings = settings
        self.table = table
        self.cache = ContextCache()

    async def resolve(self, value: Any, where: str) -> TermMap:
        """The processed @context ``value``; BadRequestData naming ``where`` when it is
        not one, LdContextNotAvailable when a document it names cannot be had."""
        if not isinstance(value, str | dict | list) or value in ("", [], None):
            raise BadRequestData(f"{where} must be a URL, an object or a list of them", where)
        found = self.cache.cached(value)
        if found is not None:
            return found
        for _ in range(MAX_DOCUMENTS):
            try:
                return self.cache.process(value, where)
            except MissingDocument as missing:
                self.cache.documents[missing.url] = await self._document(missing.url, where)
        raise BadRequestData(f"{where} pulls in more than {MAX_DOCUMENTS} contexts", where)

    async def request_of(self, value: Any, terms: TermMap, base: str) -> LdRequest:
        """How a request whose body carried ``value`` is answered: by the context's URL,
        an inline context being kept (ImplicitlyCreated) to be named by one."""
        if terms is CORE:
            return LdRequest(CORE)
        if isinstance(value, str):
            return LdRequest(terms, value)
        digest = hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
        context_id = "implicit-" + digest[:32]
        if await self.table.get(context_id) is None:
            row = ContextRow(
                context_id, "ImplicitlyCreated", None, time.time(), {"@context": value}
            )
            await self.table.add(row)
        return LdRequest(terms, f"{base}{PATH}/{context_id}")

    async def _document(self, url: str, where: str) -> Any:
        """The document of a context URL: kept here, or fetched if that is allowed."""
        if is_core_url(url):  # reached only through a relative reference
            return {"@context": CORE_URL}
        context_id = local_id(url)
        if context_id is not None:
            row = await self.table.get(context_id)
            if row is None:
                raise LdContextNotAvailable(f"{where}: no @context is kept at {url}", where)
            return row.doc
        row = await self.table.by_url(url)
        if row is not None:
            return row.doc
        doc = await self.fetch(url, where)
        await self.table.add(ContextRow(str(uuid.uuid4()), "Cached", url, time.time(), doc))
        return doc

    async def fetch(self, url: str, where: str) -> dict[str, Any]:
        """A remote context document, within the configured time and size."""
        s = self.settings
        if not s.jsonld_remote_contexts:
            raise LdContextNotAvailable(
                f"{where}: the @context {url} is not kept here and fetching remote "
                "contexts is off (setting jsonld_remote_contexts); add it with "
                f"POST {PATH} and name the URL that answers",
                where,
            )
        if not url.startswith(("http://", "https://")):
            raise LdContextNotAvailable(f"{where}: cannot fetch {url!r} (not http/https)", where)
        limit = s.jsonld_max_context_bytes
        try:
            async with (
                httpx.AsyncClient(timeout=s.jsonld_fetch_timeout_s, follow_redirects=True) as http,
                http.stream("GET", url, headers={"Accept": f"{LD_JSON}, application/json"}) as r,
            ):
                if r.status_code != 200:
                    raise LdContextNotAvailable(f"{where}: {url} answered {r.status_code}", where)
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise LdContextNotAvailable(
                            f"{where}: {url} is over {limit} bytes (jsonld_max_context_bytes)",
                            where,
                        )
        except httpx.HTTPError as exc:
            raise LdContextNotAvailable(
                f"{where}: {url} could not be fetched ({type(exc).__name__})", where
            ) from None
        try:
            doc = orjson.loads(bytes(body))
        except orjson.JSONDecodeError:
            raise LdContextNotAvailable(f"{where}: {url} did not answer JSON", where) from None
        if not isinstance(doc, dict) or "@context" not in doc:
            raise LdContextNotAvailable(f"{where}: {url} holds no @context", where)
        return doc

    def forget(self) -> None:
        """Drop processed contexts after one was deleted or reloaded."""
        self.cache.forget()


def in_context(
    contexts: LdContexts, url: str | None, docs: list[Any], key_values: bool
) -> list[Any]:
    """Entities compacted with the @context at ``url`` (a subscription's
    ``jsonldContext``, resolved when the subscription was made or the server started)."""
    if url is None:
        return docs
    terms = contexts.cache.cached(url)
    if terms is None or terms is CORE:
        return docs
    return rename_entities(docs, terms.shown, key_values)


async def warm(contexts: LdContexts, urls: Iterable[str | None]) -> None:
    """Resolve the contexts subscriptions name for their notifications (at start: the
    notifier compacts with resolved contexts only); one that fails is logged."""
    for url in {u for u in urls if u}:
        try:
            await contexts.resolve(url, "jsonldContext")
        except CityPilotError as exc:
            log.warning("the @context %s of a subscription is not available: %s", url, exc)


async def open_contexts(settings: Settings, store: Any) -> LdContexts:
    """The context service of a running city (its table created)."""
    from citypilot.store.ldcontexts import context_table_for

    table = context_table_for(store)
    await table.open()
    return LdContexts(settings, table)


# -- /ngsi-ld/v1/jsonldContexts ---------------------------------------------------
router = APIRouter(prefix=PATH, tags=["NGSI-LD contexts"])
_INFO = {
    "type": "object",
    "required": ["url", "localId", "kind"],
    "properties": {
        "url": {"type": "string"},
        "localId": {"type": "string"},
        "kind": {"enum": list(KINDS)},
        "createdAt": {"type": "string"},
    },
}
_CONTEXT_BODY = {
    "type": "object",
    "required": ["@context"],
    "description": "a JSON-LD document: its @context (an object, a URL or a list)",
}


def _service(request: Request) -> LdContexts:
    return request.app.state.ld_contexts


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _url(request: Request, row: ContextRow) -> str:
    return row.url or f"{_base(request)}{PATH}/{row.id}"


def _info(request: Request, row: ContextRow) -> dict[str, Any]:
    from citypilot.model.timeutil import format_instant

    return {
        "url": _url(request, row),
        "localId": row.id,
        "kind": row.kind,
        "createdAt": format_instant(row.created_at),
    }


async def _find(request: Request, context_id: str) -> ContextRow:
    """A kept context by local id or by the URL it is known by (404 otherwise)."""
    table = _service(request).table
    row = await table.get(local_id(context_id) or context_id)
    if row is None and "://" in context_id:
        row = await table.by_url(context_id)
    if row is None:
        raise ResourceNotFound(f"no @context {context_id!r} is kept here", "contextId")
    return row


@router.post(
    "",
    status_code=201,
    summary="Add a @context (Hosted)",
    response_class=Response,
    responses=created("unused"),
    openapi_extra=json_body(_CONTEXT_BODY),
)
async def add_context(request: Request, city: CityDep, who: Operator) -> Response:
    """Keep a @context here; 201 with its URL in Location (§6.31.3.1)."""
    doc = await read_json(request, city.settings.max_body_bytes)
    if not isinstance(doc, dict) or "@context" not in doc:
        raise BadRequestData("the body must be a JSON object with a @context member", "@context")
    extra = sorted(set(doc) - {"@context"})
    if extra:
        raise BadRequestData(f"a @context document holds only @context, not {extra[0]}", extra[0])
    await _service(request).resolve(doc["@context"], "@context")
    row = ContextRow(str(uuid.uuid4()), "Hosted", None, time.time(), {"@context": doc["@context"]})
    await _service(request).table.add(row)
    return Response(status_code=201, headers={"Location": _url(request, row)})


@router.get(
    "",
    summary="List the @contexts kept here",
    responses=answer(
        200,
        "Their URLs, or (details=true) ContextInfo items",
        {"type": "array", "items": {"oneOf": [{"type": "string"}, _INFO]}},
    ),
)
async def list_contexts(
    request: Request,
    who: Viewer,
    details: bool = False,
    kind: Annotated[str | None, Query(description="Hosted, Cached or ImplicitlyCreated")] = None,
) -> Response:
    """The contexts kept here, oldest first (§6.31.3.2)."""
    if kind is not None and kind not in KINDS:
        raise BadRequestData(f"kind must be one of {', '.join(KINDS)}", "kind")
    rows = await _service(request).table.all(kind)
    body = [_info(request, r) if details else _url(request, r) for r in rows]
    return Response(orjson.dumps(body), media_type="application/json")


@router.get(
    "/{context_id:path}",
    summary="Serve a @context",
    responses=answer(200, "The @context document, or (details=true) its ContextInfo", _INFO),
)
async def serve_context(request: Request, context_id: str, details: bool = False) -> Response:
    """Public, as a context server is: the kept document, or its ContextInfo (§6.31.3.3)."""
    row = await _find(request, context_id)
    if details:
        return Response(orjson.dumps(_info(request, row)), media_type="application/json")
    return Response(orjson.dumps(row.doc), media_type=LD_JSON)


@router.delete("/{context_id:path}", status_code=204, summary="Delete or reload a @context")
async def delete_context(
    request: Request, context_id: str, who: Operator, reload: bool = False
) -> Response:
    """Forget a kept context, or (``reload=true``) fetch a Cached one again (§6.31.3.4)."""
    if is_core_url(context_id):
        raise BadRequestData("the core @context is part of CityPilot and stays", "contextId")
    row = await _find(request, context_id)
    service = _service(request)
    if reload:
        if row.kind != "Cached" or row.url is None:
            raise BadRequestData(
                f"only a Cached @context can be reloaded; this one is {row.kind}", "reload"
            )
        doc = await service.fetch(row.url, "contextId")
        await service.table.add(ContextRow(row.id, row.kind, row.url, time.time(), doc))
    else:
        await service.table.delete(row.id)
    service.forget()
    return Response(status_code=204)
