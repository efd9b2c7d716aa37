"""The alarm API over real HTTP: raise by hand, list with filters, acknowledge (twice),
shelve, comment, figures, roles and bad input."""

from __future__ import annotations

import pytest

from tests.conftest import VIEWER, Server
from tests.integration.test_api_commands import new_light
from tests.integration.test_api_entities import problem


def raised(server: Server, severity: str = "high") -> dict:
    """An alarm an operator raised on a new streetlight."""
    lamp = new_light(server)
    with server.client() as c:
        r = c.post(
            "/api/v1/alarms", json={"entity": lamp, "severity": severity, "message": "lamp out"}
        )
        assert r.status_code == 201, r.text
        return r.json()


def test_an_alarm_raised_twice_is_one_alarm_with_a_count(server: Server):
    first = raised(server)
    with server.client() as c:
        again = c.post(
            "/api/v1/alarms",
            json={"entity": first["entity"], "severity": "high", "message": "still out"},
        ).json()
        assert again["id"] == first["id"] and again["count"] == 2
        page = c.get("/api/v1/alarms", params={"entity": first["entity"]}).json()
        assert page["total"] == 1 and page["alarms"][0]["message"] == "still out"
        assert page["counts"]["high"] >= 1
        got = c.get(f"/api/v1/alarms/{first['id']}").json()
        assert got["state"] == "active-unacknowledged" and got["rule"] == "operator"
        assert [e["action"] for e in got["log"]] == ["raised", "repeated"]


def test_acknowledge_twice_answers_the_same_alarm(server: Server):
    alarm = raised(server)
    with server.client() as c:
        one = c.post(f"/api/v1/alarms/{alarm['id']}/acknowledge")
        two = c.post(f"/api/v1/alarms/{alarm['id']}/acknowledge", json={"note": "again"})
        assert one.status_code == two.status_code == 200
        assert one.json()["state"] == two.json()["state"] == "active-acknowledged"
        assert two.json()["acknowledged"] == one.json()["acknowledged"]
        assert one.json()["acknowledged"]["by"] == "operator"
        acked = c.get(
            "/api/v1/alarms", params={"state": "active-acknowledged", "entity": alarm["entity"]}
        ).json()
        assert acked["total"] == 1


def test_shelve_hides_from_attention_and_unshelve_returns_it(server: Server):
    alarm = raised(server, "critical")
    with server.client() as c:
        before = c.get("/api/v1/alarms").json()["attention"]["critical"]
        r = c.post(f"/api/v1/alarms/{alarm['id']}/shelve", json={"duration": 900, "reason": "crew"})
        assert r.status_code == 200 and r.json()["shelved"]["reason"] == "crew"
        page = c.get("/api/v1/alarms", params={"shelved": "true"}).json()
        assert alarm["id"] in [a["id"] for a in page["alarms"]]
        assert c.get("/api/v1/alarms").json()["attention"]["critical"] == before - 1
        back = c.post(f"/api/v1/alarms/{alarm['id']}/unshelve").json()
        assert back["shelved"] is None


def test_comments_are_kept_with_who_and_when(server: Server):
    alarm = raised(server)
    with server.client() as c:
        r = c.post(f"/api/v1/alarms/{alarm['id']}/comments", json={"text": "called the crew"})
        assert r.status_code == 201
        assert r.json()["comments"][0]["by"] == "operator"
        assert c.get(f"/api/v1/alarms/{alarm['id']}").json()["comments"][0]["text"] == (
            "called the crew"
        )


def test_figures_are_served(server: Server):
    raised(server)
    with server.client(VIEWER) as c:
        got = c.get("/api/v1/alarms/figures", params={"operators": 2}).json()
        assert got["alarms"] >= 1 and got["operators"] == 2
        assert got["targets"]["floodPercent"] == 1.0


def test_viewers_read_but_do_not_acknowledge(server: Server):
    alarm = raised(server)
    with server.client(VIEWER) as c:
        assert c.get(f"/api/v1/alarms/{alarm['id']}").status_code == 200
        problem(c.post(f"/api/v1/alarms/{alarm['id']}/acknowledge"), 403, "Forbidden")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("shelve", {"duration": 0, "reason": "x"}, "duration"),
        ("shelve", {"duration": 10**9, "reason": "x"}, "duration"),
        ("shelve", {"duration": "long", "reason": "x"}, "duration"),
        ("shelve", {"until": "2001-01-01T00:00:00Z", "reason": "x"}, "until"),
        ("shelve", {"duration": 60}, "reason"),
        ("shelve", {"duration": 60, "reason": "x", "colour": 1}, "colour"),
        ("comments", {"text": ""}, "text"),
        ("comments", {"text": 5}, "text"),
        ("acknowledge", {"note": 5}, "note"),
    ],
)
def test_bad_operator_input_gets_400_naming_the_field(
    server: Server, path: str, body: dict, field: str
):
    alarm = raised(server)
    with server.client() as c:
        problem(
            c.post(f"/api/v1/alarms/{alarm['id']}/{path}", json=body), 400, "BadRequestData", field
        )
        after = c.get(f"/api/v1/alarms/{alarm['id']}").json()
        assert after["shelved"] is None and after["comments"] == []  # nothing half-applied
        assert after["state"] == "active-unacknowledged"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "burning"}, "state"),
        ({"severity": "dire"}, "severity"),
        ({"state": "cleared", "shelved": "true"}, "shelved"),
        ({"entity": "lamp"}, "entity"),
    ],
)
def test_bad_filters_get_400_naming_the_field(server: Server, params: dict, field: str):
    with server.client() as c:
        problem(c.get("/api/v1/alarms", params=params), 400, "BadRequestData", field)


def test_unknown_alarms_and_entities(server: Server):
    with server.client() as c:
        problem(c.get("/api/v1/alarms/nope"), 404, "ResourceNotFound")
        problem(c.post("/api/v1/alarms/nope/acknowledge"), 404, "ResourceNotFound")
        r = c.post(
            "/api/v1/alarms",
            json={"entity": "urn:ngsi-ld:Streetlight:none", "severity": "low", "message": "m"},
        )
        problem(r, 400, "BadRequestData", "entity")
        r = c.post("/api/v1/alarms", json={"entity": "x", "severity": "low", "message": "m"})
        problem(r, 400, "BadRequestData", "entity")
