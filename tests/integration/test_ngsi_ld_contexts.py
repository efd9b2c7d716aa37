"""Conformance of JSON-LD @context handling (ETSI GS CIM 009 v1.8: §5.5.7 and §6.3.5-6.3.7
on the @context of requests and answers, §5.13 and §6.31 on ``/jsonldContexts``), on
each store: the content-type rules, term expansion of bodies, Link headers and query
parameters, compaction of answers with the reader's context, the core context bundled,
stored contexts (Hosted, Cached, ImplicitlyCreated), and remote contexts refused (503
LdContextNotAvailable) unless a setting allows fetching them, within a time limit."""

from __future__ import annotations

import http.server
import socket
import threading
import uuid
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import OPERATOR, VIEWER, Server
from tests.integration.two_stores import server_on_store

NGSI = "/ngsi-ld/v1"
CORE_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
REL = "http://www.w3.org/ns/json-ld#context"
LD = "application/ld+json"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
#: one client's words for the city's streetlights and their power state
LAMP_CONTEXT = {"Lamp": DEFAULT + "Streetlight", "lightOn": DEFAULT + "powerState"}
#: another client's words for the same IRIs
LUMINAIRE_CONTEXT = {"Luminaire": DEFAULT + "Streetlight", "etat": DEFAULT + "powerState"}


def link(url: str) -> dict[str, str]:
    """The Link header naming ``url`` as the request's @context."""
    return {"Link": f'<{url}>; rel="{REL}"; type="{LD}"'}


def problem(response, status: int, kind: str, field: str | None = None) -> dict:
    """Check a ProblemDetails answer of the given status and NGSI-LD type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{kind}", body
    if field is not None:
        assert body["field"] == field, body
    return body


def lamp(local: str, word: str = "Lamp", state: str = "lightOn", value: str = "on") -> dict:
    """A streetlight in a client's own terms."""
    return {
        "id": f"urn:ngsi-ld:Streetlight:{local}",
        "type": word,
        state: {"type": "Property", "value": value},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.0, 47.3]}},
    }


def uid() -> str:
    return "ctx" + uuid.uuid4().hex[:10]


def hosted(city: Server, context: dict) -> str:
    """Add a @context to ``/jsonldContexts``; its URL."""
    with city.client(OPERATOR) as c:
        r = c.post(f"{NGSI}/jsonldContexts", json={"@context": context})
    assert r.status_code == 201, r.text
    return r.headers["location"]


# -- the core context -------------------------------------------------------------
def test_the_core_context_is_bundled_in_full_and_served_without_a_credential(city: Server):
    with city.client(None) as c:
        r = c.get(f"{NGSI}/contexts/ngsi-ld-core-context-v1.8.jsonld")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(LD)
    terms = r.json()["@context"]
    assert terms["@protected"] is True and terms["@version"] == 1.1
    # terms of the full ETSI context that CityPilot itself never emitted
    for term in ("JsonProperty", "ListRelationship", "languageMap", "objectList", "vocab"):
        assert term in terms
    assert terms["@vocab"] == DEFAULT


def test_a_json_answer_links_the_core_context_when_the_request_named_none(city: Server):
    local = uid()
    with city.client() as c:
        assert c.post(f"{NGSI}/entities", json=lamp(local, "Streetlight", "powerState")).is_success
        r = c.get(f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{local}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["link"] == f'<{CORE_URL}>; rel="{REL}"; type="{LD}"'
    assert "@context" not in r.json()


def test_an_ld_json_answer_carries_its_context_in_the_body_and_no_link(city: Server):
    local = uid()
    with city.client() as c:
        assert c.post(f"{NGSI}/entities", json=lamp(local, "Streetlight", "powerState")).is_success
        one = c.get(f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{local}", headers={"Accept": LD})
        many = c.get(
            f"{NGSI}/entities",
            params={"id": f"urn:ngsi-ld:Streetlight:{local}"},
            headers={"Accept": LD},
        )
    for r in (one, many):
        assert r.status_code == 200
        assert r.headers["content-type"] == LD
        assert "link" not in r.headers
    assert one.json()["@context"] == CORE_URL
    assert [e["@context"] for e in many.json()] == [CORE_URL]


def test_the_published_core_context_url_is_read_with_the_bundled_copy(city: Server):
    doc = {**lamp(uid(), "Streetlight", "powerState"), "@context": CORE_URL}
    with city.client() as c:
        r = c.post(f"{NGSI}/entities", json=doc, headers={"Content-Type": LD})
    assert r.status_code == 201, r.text


# -- content types (§6.3.5) ---------------------------------------------------------
def test_a_json_body_holding_a_context_is_bad_request_data(city: Server):
    doc = {**lamp(uid()), "@context": LAMP_CONTEXT}
    with city.client() as c:
        r = c.post(f"{NGSI}/entities", json=doc)
    problem(r, 400, "BadRequestData", "@context")


def test_an_ld_json_body_without_context_is_bad_request_data(city: Server):
    with city.client() as c:
        r = c.post(
            f"{NGSI}/entities",
            content=orjson.dumps(lamp(uid(), "Streetlight", "powerState")),
            headers={"Content-Type": LD},
        )
        batch = [
            {**lamp(uid(), "Streetlight", "powerState"), "@context": CORE_URL},
            lamp(uid(), "Streetlight", "powerState"),
        ]
        r2 = c.post(
            f"{NGSI}/entityOperations/create",
            content=orjson.dumps(batch),
            headers={"Content-Type": LD},
        )
    problem(r, 400, "BadRequestData", "@context")
    problem(r2, 400, "BadRequestData", "@context")


def test_two_context_links_are_bad_request_data(city: Server):
    a, b = hosted(city, LAMP_CONTEXT), hosted(city, LUMINAIRE_CONTEXT)
    header = f'<{a}>; rel="{REL}", <{b}>; rel="{REL}"'
    with city.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities", params={"type": "Lamp"}, headers={"Link": header})
    problem(r, 400, "BadRequestData", "Link")


def test_an_invalid_inline_context_is_bad_request_data_naming_it(city: Server):
    doc = {**lamp(uid()), "@context": {"Lamp": {"@id": 5}}}
    with city.client() as c:
        r = c.post(f"{NGSI}/entities", json=doc, headers={"Content-Type": LD})
    body = problem(r, 400, "BadRequestData", "@context")
    assert "JSON-LD" in body["detail"]


# -- expansion and compaction (§5.5.7) ----------------------------------------------
def test_each_client_sees_the_same_entity_in_its_own_terms(city: Server):
    local = uid()
    entity = f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{local}"
    doc = {**lamp(local), "@context": [LAMP_CONTEXT, CORE_URL]}
    other = hosted(city, LUMINAIRE_CONTEXT)
    with city.client() as c:
        r = c.post(f"{NGSI}/entities", json=doc, headers={"Content-Type": LD})
        assert r.status_code == 201, r.text
        core = c.get(entity).json()
        theirs = c.get(entity, headers=link(other))
    # stored by IRI: the core context's reader sees the registry's names
    assert core["type"] == "Streetlight"
    assert core["powerState"]["value"] == "on"
    assert "lightOn" not in core
    # another context's reader sees its own terms for the same IRIs
    assert theirs.status_code == 200
    assert theirs.json()["type"] == "Luminaire"
    assert theirs.json()["etat"] == {"type": "Property", "value": "on"}
    assert theirs.headers["link"] == f'<{other}>; rel="{REL}"; type="{LD}"'


def test_names_outside_the_core_context_are_kept_as_iris_each_reader_in_its_terms(city: Server):
    ex = "https://example.org/"
    local = uid()
    doc = {
        "@context": {"Vehicle": ex + "Vehicle", "speed": ex + "speed"},
        "id": f"urn:ngsi-ld:Vehicle:{local}",
        "type": "Vehicle",
        "speed": {"type": "Property", "value": 80},
    }
    theirs = hosted(city, {"Car": ex + "Vehicle", "velocity": ex + "speed"})
    with city.client() as c:
        r = c.post(f"{NGSI}/entities", json=doc, headers={"Content-Type": LD})
        assert r.status_code == 201, r.text
        core = c.get(f"{NGSI}/entities/urn:ngsi-ld:Vehicle:{local}").json()
        other = c.get(
            f"{NGSI}/entities", params={"type": "Car", "q": "velocity>50"}, headers=link(theirs)
        )
        expanded = c.get(
            f"{NGSI}/entities",
            params={"type": ex + "Vehicle", "attrs": ex + "speed", "q": f"{ex}speed==80"},
        )
    assert core["type"] == ex + "Vehicle"
    assert core[ex + "speed"] == {"type": "Property", "value": 80}
    assert other.status_code == 200, other.text
    assert [(e["type"], e["velocity"]["value"]) for e in other.json()] == [("Car", 80)]
    assert expanded.status_code == 200, expanded.text
    assert [e[ex + "speed"]["value"] for e in expanded.json()] == [80]


def test_a_sub_attribute_path_in_a_clients_terms_or_as_full_iris_finds_the_entity(city: Server):
    ex = "https://smartdatamodels.org/dataModel.Transportation/"
    local = uid()
    doc = {
        "@context": {"Vehicle": ex + "Vehicle", "speed": ex + "speed", "radar": ex + "radar"},
        "id": f"urn:ngsi-ld:Vehicle:{local}",
        "type": "Vehicle",
        "speed": {
            "type": "Property",
            "value": 80,
            "radar": {
                "type": "Property",
                "value": "north",
                "precision": {"type": "Property", "value": 2},
            },
        },
    }
    theirs = hosted(city, {"Car": ex + "Vehicle", "velocity": ex + "speed", "sensor": ex + "radar"})
    with city.client() as c:
        r = c.post(f"{NGSI}/entities", json=doc, headers={"Content-Type": LD})
        assert r.status_code == 201, r.text
        found = {
            q: c.get(f"{NGSI}/entities", params={"type": "Car", "q": q}, headers=link(theirs))
            for q in (
                'velocity.sensor=="north"',
                'velocity.sensor=="south"',
                "velocity.sensor.precision<3",
            )
        }
        by_iri = c.get(
            f"{NGSI}/entities",
            params={"type": ex + "Vehicle", "q": f'{ex}speed.{ex}radar=="north"'},
        )
    ids = {q: [e["id"] for e in r.json()] for q, r in found.items() if r.status_code == 200}
    assert ids == {
        'velocity.sensor=="north"': [doc["id"]],
        'velocity.sensor=="south"': [],
        "velocity.sensor.precision<3": [doc["id"]],
    }
    assert by_iri.status_code == 200, by_iri.text
    assert [e["id"] for e in by_iri.json()] == [doc["id"]]


def test_the_link_context_expands_query_parameters_and_compacts_the_answer(city: Server):
    ctx = hosted(city, LAMP_CONTEXT)
    local = uid()
    with city.client() as c:
        r = c.post(f"{NGSI}/entities", json=lamp(local, value="off"), headers=link(ctx))
        assert r.status_code == 201, r.text
        r = c.get(
            f"{NGSI}/entities",
            params={"type": "Lamp", "q": 'lightOn=="off"', "attrs": "lightOn"},
            headers=link(ctx),
        )
    assert r.status_code == 200, r.text
    got = [e for e in r.json() if e["id"].endswith(local)]
    assert got == [
        {
            "id": f"urn:ngsi-ld:Streetlight:{local}",
            "type": "Lamp",
            "lightOn": {"type": "Property", "value": "off"},
        }
    ]


def _new_lamp_read(city: Server, ctx: str, one: bool, params: dict, headers: dict):
    """Create a lamp in the terms of ``ctx``; read it back (by id, or by query)."""
    local = uid()
    entity_id = f"urn:ngsi-ld:Streetlight:{local}"
    with city.client() as c:
        assert c.post(f"{NGSI}/entities", json=lamp(local), headers=link(ctx)).status_code == 201
        if one:
            return c.get(f"{NGSI}/entities/{entity_id}", params=params, headers=headers)
        return c.get(f"{NGSI}/entities", params={"id": entity_id, **params}, headers=headers)


def test_key_values_answers_are_compacted_too(city: Server):
    ctx = hosted(city, LAMP_CONTEXT)
    r = _new_lamp_read(city, ctx, True, {"options": "keyValues"}, link(ctx))
    assert r.json()["type"] == "Lamp"
    assert r.json()["lightOn"] == "on"


def test_geojson_answers_are_compacted_and_link_their_context(city: Server):
    ctx = hosted(city, LAMP_CONTEXT)
    r = _new_lamp_read(city, ctx, False, {}, {**link(ctx), "Accept": "application/geo+json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    assert r.headers["link"].startswith(f"<{ctx}>")
    [feature] = r.json()["features"]
    assert feature["properties"]["type"] == "Lamp"
    assert feature["properties"]["lightOn"]["value"] == "on"


def test_expanded_names_in_queries_are_accepted(city: Server):
    local = uid()
    with city.client() as c:
        assert c.post(f"{NGSI}/entities", json=lamp(local, "Streetlight", "powerState")).is_success
        r = c.get(
            f"{NGSI}/entities",
            params={
                "type": DEFAULT + "Streetlight",
                "attrs": DEFAULT + "powerState",
                "q": f'{DEFAULT}powerState=="on"',
                "id": f"urn:ngsi-ld:Streetlight:{local}",
            },
        )
    assert r.status_code == 200, r.text
    assert r.json() == [
        {
            "id": f"urn:ngsi-ld:Streetlight:{local}",
            "type": "Streetlight",
            "powerState": {"type": "Property", "value": "on"},
        }
    ]


def test_an_attribute_named_in_the_path_is_expanded_with_the_link_context(city: Server):
    ctx = hosted(city, LAMP_CONTEXT)
    local = uid()
    entity = f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{local}"
    with city.client() as c:
        assert c.post(f"{NGSI}/entities", json=lamp(local), headers=link(ctx)).status_code == 201
        r = c.patch(
            f"{entity}/attrs/lightOn", json={"type": "Property", "value": "off"}, headers=link(ctx)
        )
        assert r.status_code == 204, r.text
        assert c.get(entity).json()["powerState"]["value"] == "off"
        assert c.delete(f"{entity}/attrs/lightOn", headers=link(ctx)).status_code == 204
        assert "powerState" not in c.get(entity).json()


def test_discovery_answers_in_the_readers_terms(city: Server):
    ctx = hosted(city, LAMP_CONTEXT)
    with city.client() as c:
        assert c.post(f"{NGSI}/entities", json=lamp(uid()), headers=link(ctx)).status_code == 201
        listed = c.get(f"{NGSI}/types", headers=link(ctx)).json()
        details = c.get(f"{NGSI}/types", params={"details": "true"}, headers=link(ctx)).json()
    assert "Lamp" in listed["typeList"] and "Streetlight" not in listed["typeList"]
    mine = next(d for d in details if d["typeName"] == "Lamp")
    assert "lightOn" in mine["attributeNames"]


def test_an_inline_context_is_kept_and_named_by_the_answers_link(city: Server):
    context = {**LAMP_CONTEXT, "n": "https://example.org/" + uid()}
    docs = [{**lamp(uid()), "@context": context} for _ in range(2)]
    with city.client() as c:
        r = c.post(
            f"{NGSI}/entityOperations/create",
            content=orjson.dumps(docs),
            headers={"Content-Type": LD},
        )
        assert r.status_code == 201, r.text
        url = r.headers["link"].split(">")[0].lstrip("<")
        assert f"{NGSI}/jsonldContexts/" in url
        served = c.get(url)
        listed = c.get(f"{NGSI}/jsonldContexts", params={"kind": "ImplicitlyCreated"}).json()
    assert served.json() == {"@context": context}
    assert url in listed


# -- /jsonldContexts (§6.31) --------------------------------------------------------
def test_a_context_is_added_listed_served_and_deleted(city: Server):
    url = hosted(city, LAMP_CONTEXT)
    local_id = url.rsplit("/", 1)[1]
    with city.client(VIEWER) as c:
        assert url in c.get(f"{NGSI}/jsonldContexts").json()
        infos = c.get(f"{NGSI}/jsonldContexts", params={"details": "true"}).json()
        hosted_only = c.get(f"{NGSI}/jsonldContexts", params={"kind": "Hosted"}).json()
    info = next(i for i in infos if i["localId"] == local_id)
    assert info["kind"] == "Hosted" and info["url"] == url and info["createdAt"]
    assert url in hosted_only
    with city.client(None) as c:  # a context server answers anyone
        served = c.get(url)
        details = c.get(url, params={"details": "true"})
    assert served.status_code == 200 and served.json() == {"@context": LAMP_CONTEXT}
    assert details.json()["kind"] == "Hosted"
    with city.client(OPERATOR) as c:
        assert c.delete(url).status_code == 204
        problem(c.get(url), 404, "ResourceNotFound")
        problem(c.delete(url), 404, "ResourceNotFound")
        # an entity request naming the deleted context cannot be read
        r = c.get(f"{NGSI}/entities", params={"type": "Lamp"}, headers=link(url))
    problem(r, 503, "LdContextNotAvailable", "Link")


def test_adding_a_context_needs_an_operator(city: Server):
    with city.client(None) as c:
        assert c.post(f"{NGSI}/jsonldContexts", json={"@context": LAMP_CONTEXT}).status_code == 401
    with city.client(VIEWER) as c:
        assert c.post(f"{NGSI}/jsonldContexts", json={"@context": LAMP_CONTEXT}).status_code == 403


def test_bad_context_documents_and_requests_are_refused(city: Server):
    url = hosted(city, LAMP_CONTEXT)
    with city.client(OPERATOR) as c:
        problem(c.post(f"{NGSI}/jsonldContexts", json={"Lamp": "x"}), 400, "BadRequestData")
        bad = c.post(f"{NGSI}/jsonldContexts", json={"@context": {"Lamp": {"@id": 5}}})
        problem(bad, 400, "BadRequestData", "@context")
        problem(c.get(f"{NGSI}/jsonldContexts", params={"kind": "Own"}), 400, "BadRequestData")
        problem(c.delete(url, params={"reload": "true"}), 400, "BadRequestData", "reload")
        problem(c.delete(f"{NGSI}/jsonldContexts/{CORE_URL}"), 400, "BadRequestData")


# -- remote contexts ----------------------------------------------------------------
def test_a_remote_context_is_not_fetched_unless_allowed(city: Server):
    with city.client(VIEWER) as c:
        r = c.get(
            f"{NGSI}/entities",
            params={"type": "Lamp"},
            headers=link("https://contexts.example.org/city.jsonld"),
        )
    body = problem(r, 503, "LdContextNotAvailable", "Link")
    assert "jsonld_remote_contexts" in body["detail"]


class _ContextServer(http.server.BaseHTTPRequestHandler):
    """Serves one @context at /city.jsonld, 404 elsewhere; /slow never answers."""

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.server.release.wait(10)  # type: ignore[attr-defined]
            return
        if self.path != "/city.jsonld":
            self.send_error(404)
            return
        body = orjson.dumps({"@context": LAMP_CONTEXT})
        self.send_response(200)
        self.send_header("Content-Type", LD)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def context_host() -> Iterator[str]:
    """A local HTTP server holding a @context; its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _ContextServer)
    httpd.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.release.set()  # type: ignore[attr-defined]
    httpd.shutdown()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fetching_city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server allowed to fetch remote contexts, waiting at most half a second."""
    env = {"CITYPILOT_JSONLD_REMOTE_CONTEXTS": "true", "CITYPILOT_JSONLD_FETCH_TIMEOUT_S": "0.5"}
    with server_on_store(request, tmp_path_factory, env) as server:
        yield server


def test_an_allowed_remote_context_is_fetched_once_and_kept_as_cached(
    fetching_city: Server, context_host: str
):
    url = f"{context_host}/city.jsonld"
    local = uid()
    with fetching_city.client() as c:
        r = c.post(f"{NGSI}/entities", json=lamp(local), headers=link(url))
        assert r.status_code == 201, r.text
        got = c.get(f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{local}").json()
        cached = c.get(f"{NGSI}/jsonldContexts", params={"kind": "Cached"}).json()
        info = c.get(f"{NGSI}/jsonldContexts/{url}", params={"details": "true"}).json()
    assert got["type"] == "Streetlight" and got["powerState"]["value"] == "on"
    assert url in cached
    assert info["kind"] == "Cached" and info["url"] == url


def test_a_remote_context_that_fails_or_hangs_is_503_not_a_hang(
    fetching_city: Server, context_host: str
):
    with fetching_city.client(VIEWER) as c:
        missing = c.get(f"{NGSI}/entities", headers=link(f"{context_host}/nothing.jsonld"))
        slow = c.get(f"{NGSI}/entities", headers=link(f"{context_host}/slow"))
    problem(missing, 503, "LdContextNotAvailable", "Link")
    body = problem(slow, 503, "LdContextNotAvailable", "Link")
    assert "Timeout" in body["detail"]


def test_the_context_link_joins_the_page_links(city: Server):
    ctx = hosted(city, LAMP_CONTEXT)
    with city.client() as c:
        for _ in range(2):
            assert c.post(f"{NGSI}/entities", json=lamp(uid()), headers=link(ctx)).is_success
        plain = c.get(f"{NGSI}/entities", params={"type": "Lamp", "limit": 1}, headers=link(ctx))
        ld = c.get(
            f"{NGSI}/entities",
            params={"type": "Lamp", "limit": 1},
            headers={**link(ctx), "Accept": LD},
        )
    assert plain.headers["link"].startswith(f'<{ctx}>; rel="{REL}"')
    assert 'rel="next"' in plain.headers["link"]
    assert REL not in ld.headers["link"] and 'rel="next"' in ld.headers["link"]


# -- notifications in the subscriber's terms (§5.2.12 jsonldContext) ----------------
def _subscribe_and_change(
    city: Server, notification: dict, headers: dict, context: object = None
) -> None:
    """Subscribe, in the subscriber's terms (a Link header, or ``context`` in an
    ld+json body), to a new lamp's light; then turn it off."""
    local = uid()
    with city.client() as c:
        r = c.post(f"{NGSI}/entities", json=lamp(local, "Streetlight", "powerState"))
        assert r.status_code == 201, r.text
        sub = {
            "type": "Subscription",
            "entities": [{"type": "Lamp", "id": f"urn:ngsi-ld:Streetlight:{local}"}],
            "watchedAttributes": ["lightOn"],
            "notification": {"attributes": ["lightOn"], **notification},
        }
        if context is not None:
            sub["@context"] = context
            headers = {**headers, "Content-Type": LD}
        r = c.post(f"{NGSI}/subscriptions", content=orjson.dumps(sub), headers=headers)
        assert r.status_code == 201, r.text
        entity = f"{NGSI}/entities/urn:ngsi-ld:Streetlight:{local}"
        r = c.patch(f"{entity}/attrs", json={"powerState": {"type": "Property", "value": "off"}})
        assert r.status_code == 204, r.text


def test_a_subscription_made_with_a_link_context_notifies_in_its_terms(city: Server):
    from citypilot.bench.receiver import Receiver

    ctx = hosted(city, LAMP_CONTEXT)
    with Receiver() as receiver:
        endpoint = {"endpoint": {"uri": receiver.url + "/n"}}
        _subscribe_and_change(city, endpoint, {**link(ctx), "Content-Type": "application/json"})
        [got] = receiver.wait_for(1)
    assert got.headers["link"] == f'<{ctx}>; rel="{REL}"; type="{LD}"'
    [data] = got.json()["data"]
    assert data["type"] == "Lamp"
    assert data["lightOn"] == {"type": "Property", "value": "off"}


def test_an_ld_json_subscription_notifies_ld_json_with_its_context(city: Server):
    from citypilot.bench.receiver import Receiver

    context = {**LAMP_CONTEXT, "n": "https://example.org/" + uid()}
    with Receiver() as receiver:
        endpoint = {"endpoint": {"uri": receiver.url + "/n", "accept": LD}, "format": "keyValues"}
        _subscribe_and_change(city, endpoint, {}, context)
        [got] = receiver.wait_for(1)
    assert got.headers["content-type"] == LD
    body = got.json()
    kept, core = body["@context"]
    assert f"{NGSI}/jsonldContexts/" in kept and core == CORE_URL
    assert body["data"] == [{"id": body["data"][0]["id"], "type": "Lamp", "lightOn": "off"}]


def test_temporal_answers_are_compacted_too(city: Server):
    ctx = hosted(city, LAMP_CONTEXT)
    local = uid()
    entity = f"urn:ngsi-ld:Streetlight:{local}"
    with city.client() as c:
        assert c.post(f"{NGSI}/entities", json=lamp(local), headers=link(ctx)).status_code == 201
        one = c.get(f"{NGSI}/temporal/entities/{entity}", headers=link(ctx))
        many = c.get(
            f"{NGSI}/temporal/entities",
            params={"type": "Lamp", "attrs": "lightOn", "id": entity},
            headers=link(ctx),
        )
    assert one.status_code == 200, one.text
    assert one.json()["type"] == "Lamp"
    assert "lightOn" in one.json() and "powerState" not in one.json()
    assert many.status_code == 200, many.text
    assert [(e["id"], e["type"]) for e in many.json()] == [(entity, "Lamp")]
