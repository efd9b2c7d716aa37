"""JSON-LD @contexts for NGSI-LD: the names CityPilot stores, and each reader's own terms.

Entity types and attribute names are kept *relative to the core context*: a term that
the core @context (ETSI ``ngsi-ld-core-context-v1.8``, bundled) expands to itself — one
of its own terms, or a bare name under its ``@vocab`` — is stored as that short name
(``BikeStation``, ``location``); any other name is stored as its full IRI. A request
with a user @context has its terms expanded to those stored names, and a response is
compacted with the reader's @context, so two clients with different contexts each see
their own terms for the same IRIs (ETSI GS CIM 009 §5.5.7).

PyLD runs the JSON-LD algorithms (context processing, IRI expansion and compaction).
A processed context is cached by its canonical JSON, and so is every term it expanded
or compacted, so the same context is processed once, not on every request. Requests
without a user context never reach PyLD for plain names (the core's identity holds).

Remote documents are never fetched from here: :class:`ContextLoader` resolves what is
bundled or given to it, and otherwise raises :class:`MissingDocument` so that the
caller fetches (or refuses) asynchronously and tries again.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from importlib.resources import files
from typing import Any

import orjson
from pyld import jsonld

from citypilot.model.errors import BadRequestData, CityPilotError

CORE_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
#: where CityPilot serves the bundled core context itself
LOCAL_CORE_PATH = "/ngsi-ld/v1/contexts/ngsi-ld-core-context-v1.8.jsonld"
CORE_FILE = "ngsi-ld-core-context-v1.8.jsonld"
CORE_BYTES = (files("citypilot.model") / "contexts" / CORE_FILE).read_bytes()
CORE_DOCUMENT: dict[str, Any] = orjson.loads(CORE_BYTES)
DEFAULT_VOCAB = CORE_DOCUMENT["@context"]["@vocab"]
#: every published version of the core context resolves to the bundled v1.8, a superset
#: whose terms keep the IRIs of the earlier versions
_CORE_URLS = re.compile(
    r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v1\.\d+)?\.jsonld$"
)
_CONTEXTS_CACHED = 512
_TERMS_CACHED = 4096


CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"


def link_header(url: str) -> str:
    """The ``Link`` header naming ``url`` as the JSON-LD @context."""
    return f'<{url}>; rel="{CONTEXT_REL}"; type="application/ld+json"'


class LdContextNotAvailable(CityPilotError):
    """A remote @context of the request cannot be retrieved (ETSI GS CIM 009 §5.5.2)."""

    status = 503
    problem = "LdContextNotAvailable"
    title = "LD context not available"


class MissingDocument(Exception):
    """The loader holds no document for ``url``: fetch it (or refuse) and try again."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def is_core_url(url: str) -> bool:
    """Whether ``url`` names the NGSI-LD core context (ETSI's URL, or where CityPilot
    serves its bundled copy, on any host)."""
    return bool(_CORE_URLS.match(url)) or url.split("?")[0].endswith(LOCAL_CORE_PATH)


class ContextLoader:
    """PyLD's document loader over what is at hand: the bundled core context and the
    documents added (stored, hosted or already fetched); anything else raises
    :class:`MissingDocument`."""

    def __init__(self, documents: dict[str, Any]) -> None:
        self.documents = documents

    def __call__(self, url: str, options: Any = None) -> dict[str, Any]:
        """The remote-document record PyLD expects for ``url``."""
        if is_core_url(url):
            document: Any = CORE_DOCUMENT
        elif url in self.documents:
            document = self.documents[url]
        else:
            raise MissingDocument(url)
        return {"contextUrl": None, "documentUrl": url, "document": document}


def _missing(exc: BaseException) -> MissingDocument | None:
    """The :class:`MissingDocument` behind a PyLD error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MissingDocument):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _Lru(OrderedDict):
    """A small least-recently-used map."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def lookup(self, key: Any) -> Any:
        """The value of ``key`` (made the most recent), or None."""
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def keep(self, key: Any, value: Any) -> Any:
        """Remember ``value`` under ``key``, forgetting the oldest past the size."""
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


def _remember(cache: dict[str, str], key: str, value: str) -> str:
    """Keep a term's translation (the cache starts afresh past ``_TERMS_CACHED``)."""
    if len(cache) >= _TERMS_CACHED:
        cache.clear()
    cache[key] = value
    return value


_PROCESSOR = jsonld.JsonLdProcessor()


def _process(local: Any, loader: ContextLoader) -> dict[str, Any]:
    """PyLD's active context for ``local`` followed by the core context."""
    options = {"documentLoader": loader, "base": ""}
    initial = _PROCESSOR._get_initial_context(options)
    chain = [*local, CORE_URL] if isinstance(local, list) else [local, CORE_URL]
    return _PROCESSOR.process_context(initial, chain, options)


class TermMap:
    """One processed @context: its terms to the names CityPilot stores, and back."""

    def __init__(self, active: dict[str, Any], value: Any) -> None:
        #: PyLD's active context (the user's context followed by the core context)
        self.active = active
        #: the @context as the client gave it (a URL, an object or a list)
        self.value = value
        self._stored: dict[str, str] = {}
        self._shown: dict[str, str] = {}

    @property
    def is_core(self) -> bool:
        """Whether this is the core context alone (names pass through as they are)."""
        return self is CORE

    def expand(self, term: str) -> str:
        """The IRI of ``term`` (a term, a compact IRI or an IRI) in this context."""
        return _PROCESSOR._expand_iri(self.active, term, vocab=True)

    def compact(self, iri: str) -> str:
        """The shortest name of ``iri`` in this context (a term, a compact IRI or the IRI)."""
        return _PROCESSOR._compact_iri(self.active, iri, vocab=True)

    def stored(self, term: str) -> str:
        """The stored name of a type or attribute name given in this context."""
        if self is CORE and ":" not in term:
            return term
        name = self._stored.get(term)
        if name is None:
            name = _remember(self._stored, term, CORE.name_of(self.expand(term)))
        return name

    def shown(self, name: str) -> str:
        """A stored name as this context's reader knows it."""
        if self is CORE and ":" not in name:
            return name
        term = self._shown.get(name)
        if term is None:
            term = _remember(self._shown, name, self.compact(CORE.iri_of(name)))
        return term

    # -- the core context's own mapping between stored names and IRIs --------
    def name_of(self, iri: str) -> str:
        """The stored name of an IRI: the core term or ``@vocab`` name that expands to
        it, else the IRI itself."""
        term = self.compact(iri)
        if ":" not in term and self.iri_of(term) == iri:
            return term
        return iri

    def iri_of(self, name: str) -> str:
        """The IRI of a stored name."""
        if ":" in name:
            return name
        mapping = self.active["mappings"].get(name)
        if mapping is not None and mapping.get("@id"):
            return mapping["@id"]
        return DEFAULT_VOCAB + name


CORE = TermMap(_process([], ContextLoader({})), CORE_URL)


class ContextCache:
    """Processed @contexts by their canonical JSON (at most ``size``), so a context is
    processed once whatever number of requests use it."""

    def __init__(self, size: int = _CONTEXTS_CACHED) -> None:
        self._maps = _Lru(size)
        #: documents of URLs (stored, hosted or fetched contexts) the loader can give
        self.documents: dict[str, Any] = {}

    def forget(self) -> None:
        """Drop every processed context and document at hand (one changed: they are
        looked up again)."""
        self._maps.clear()
        self.documents.clear()
        jsonld._resolved_context_cache.clear()

    def cached(self, value: Any) -> TermMap | None:
        """The processed context of ``value`` if it was processed before."""
        if _is_core_value(value):
            return CORE
        return self._maps.lookup(_key(value))

    def process(self, value: Any, where: str) -> TermMap:
        """Process ``value`` (an @context) with the documents at hand. Raises
        :class:`MissingDocument` when it needs one more; BadRequestData naming
        ``where`` when it is not a valid @context."""
        if _is_core_value(value):
            return CORE
        key = _key(value)
        found = self._maps.lookup(key)
        if found is not None:
            return found
        try:
            active = _process(value, ContextLoader(self.documents))
        except jsonld.JsonLdError as exc:
            missing = _missing(exc)
            if missing is not None:
                raise missing from None
            raise BadRequestData(
                f"{where} is not a valid JSON-LD @context: {_reason(exc)}", where
            ) from None
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise BadRequestData(f"{where} is not a valid JSON-LD @context: {exc}", where) from None
        return self._maps.keep(key, TermMap(active, value))


def _is_core_value(value: Any) -> bool:
    if isinstance(value, str):
        return is_core_url(value)
    return isinstance(value, list) and all(isinstance(v, str) and is_core_url(v) for v in value)


def _key(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raise BadRequestData("@context must be JSON", "@context") from None


def _reason(exc: jsonld.JsonLdError) -> str:
    """PyLD's error code and first line, without its details dump."""
    code = getattr(exc, "code", None)
    message = str(exc.args[0] if exc.args else exc).splitlines()[0]
    return f"{code}: {message}" if code else message
