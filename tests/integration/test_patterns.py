"""Untrusted regular expressions run in linear time, with RE2 (issue 7, defect 3)."""

from __future__ import annotations

import pytest

from tests.conftest import VIEWER, Server
from tests.integration.test_api_entities import NGSI, light, problem, uid


def test_catastrophic_patterns_answer_at_once(server: Server):
    """``(a+)+b`` over a 40-character id took Python's backtracking engine hours."""
    local = "a" * 40
    tag = uid("re")
    with server.client() as c:
        r = c.post(f"{NGSI}/entities", json=light(local + tag, serialNumber="a" * 40 + "!"))
        assert r.status_code in (201, 409), r.text
    with server.client(VIEWER) as c:
        params = {"type": "Streetlight", "idPattern": "^urn:ngsi-ld:Streetlight:(a+)+b"}
        r = c.get(f"{NGSI}/entities", params=params)
        assert r.status_code == 200 and r.json() == []
        query = {"type": "Streetlight", "q": 'serialNumber~="^(a+)+b"'}
        r = c.get(f"{NGSI}/entities", params=query)
        assert r.status_code == 200 and r.json() == []
        found = c.get(f"{NGSI}/entities", params={"idPattern": f"(a+)+{tag}$"}).json()
        assert [e["id"] for e in found] == [f"urn:ngsi-ld:Streetlight:{local}{tag}"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"idPattern": r"(a)\1"}, "idPattern"),  # back-reference: no linear-time match
        ({"idPattern": "(?=urn)"}, "idPattern"),  # look-ahead
        ({"idPattern": "a" * 1001}, "idPattern"),
        ({"idPattern": "x{1001}"}, "idPattern"),
        ({"q": 'status~="(?<!x)y"'}, "q"),
        ({"q": r'status!~="(b)\\1"'}, "q"),
    ],
)
def test_patterns_re2_refuses_are_400_naming_the_parameter(
    server: Server, params: dict, field: str
):
    with server.client(VIEWER) as c:
        r = c.get(f"{NGSI}/entities", params={"type": "Streetlight", **params})
        body = problem(r, 400, "BadRequestData", field)
        assert "RE2" in body["detail"] or "longer than" in body["detail"]
