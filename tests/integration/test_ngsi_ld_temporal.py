"""Conformance of the temporal API (ETSI GS CIM 009 v1.8, clauses 4.5.x temporal
representations, 4.11 temporal query language, 6.18 and 6.19 temporal entities), over
real HTTP, against a server on each store: SQLite and PostgreSQL + PostGIS.

History is made the way cities make it: entities created through the NGSI-LD API,
readings posted by a device gateway with their ``observedAt``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import OPERATOR, VIEWER, Server
from tests.integration.two_stores import server_on_store

T = "/ngsi-ld/v1/temporal/entities"
LAMP, OTHER, GONE = (f"urn:ngsi-ld:Streetlight:temporal-{n}" for n in ("a", "b", "gone"))
CABINET = "urn:ngsi-ld:StreetlightControlCabinet:temporal-c"
#: powerConsumption of LAMP every 15 minutes from 10:00: 10, 20, 30, 40, 50, 60 W
WATTS = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
STATES = ["on", "off", "on", "on", "low", "on"]
BAD_REQUEST = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"


def at(minutes: int) -> str:
    """The instant ``minutes`` after 2026-11-20T10:00Z, as the API writes it."""
    h, m = divmod(600 + minutes, 60)
    return f"2026-11-20T{h:02d}:{m:02d}:00.000Z"


def _lamp(entity_id: str) -> dict:
    return {
        "id": entity_id,
        "type": "Streetlight",
        "powerState": {"type": "Property", "value": "off"},
    }


def _seed(server: Server) -> None:
    with server.client(OPERATOR) as c:
        for entity_id in (LAMP, OTHER, GONE):
            assert c.post("/ngsi-ld/v1/entities", json=_lamp(entity_id)).status_code == 201
    readings = [
        {
            "id": LAMP,
            "type": "Streetlight",
            "observedAt": at(15 * i),
            "attrs": {"powerConsumption": watts, "powerState": state},
        }
        for i, (watts, state) in enumerate(zip(WATTS, STATES, strict=True))
    ]
    readings += [
        {
            "id": OTHER,
            "type": "Streetlight",
            "observedAt": at(5),
            "attrs": {"powerConsumption": 7.0},
        },
        {
            "id": GONE,
            "type": "Streetlight",
            "observedAt": at(5),
            "attrs": {"powerConsumption": 3.0},
        },
    ]
    with server.device() as d:
        r = d.post("/api/v1/ingest", json=readings)
        assert r.status_code == 200 and r.json()["accepted"] == len(readings), r.text
    with server.client(OPERATOR) as c:
        rel = {"type": "Relationship", "object": CABINET}
        r = c.post(
            f"/ngsi-ld/v1/entities/{OTHER}/attrs", json={"refStreetlightControlCabinet": rel}
        )
        assert r.status_code == 204, r.text
        assert c.delete(f"/ngsi-ld/v1/entities/{GONE}").status_code == 204


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with the temporal test history, on each store."""
    with server_on_store(request, tmp_path_factory) as server:
        _seed(server)
        yield server


def get(city: Server, path: str, **params: str | int) -> httpx.Response:
    """A viewer's GET."""
    with city.client(VIEWER) as c:
        return c.get(path, params=params)


def test_the_temporal_representation_lists_each_instance_in_time_order(city: Server):
    r = get(city, f"{T}/{LAMP}", attrs="powerConsumption")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["type"]) == (LAMP, "Streetlight")
    assert set(body) == {"id", "type", "powerConsumption"}
    instances = body["powerConsumption"]
    assert [{k: v for k, v in i.items() if k != "instanceId"} for i in instances] == [
        {"type": "Property", "value": w, "observedAt": at(15 * i), "unitCode": "WTT"}
        for i, w in enumerate(WATTS)
    ]
    assert len({i["instanceId"] for i in instances}) == len(WATTS)  # each its own name


def test_every_attribute_with_history_is_shown_when_attrs_is_absent(city: Server):
    body = get(city, f"{T}/{LAMP}", timerel="before", timeAt=at(120)).json()
    assert [i["value"] for i in body["powerState"]] == STATES
    assert len(body["powerConsumption"]) == len(WATTS)


@pytest.mark.parametrize(
    ("timerel", "extra", "minutes"),
    [
        ("before", {"timeAt": at(30)}, [0, 15]),  # strictly before timeAt
        ("after", {"timeAt": at(30)}, [30, 45, 60, 75]),  # from timeAt on
        ("between", {"timeAt": at(15), "endTimeAt": at(45)}, [15, 30]),  # [timeAt, endTimeAt)
    ],
)
def test_timerel_selects_the_instances_of_the_time_range(
    city: Server, timerel: str, extra: dict[str, str], minutes: list[int]
):
    body = get(city, f"{T}/{LAMP}", attrs="powerConsumption", timerel=timerel, **extra).json()
    assert [i["observedAt"] for i in body["powerConsumption"]] == [at(m) for m in minutes]


def test_last_n_gives_the_newest_instances(city: Server):
    body = get(city, f"{T}/{LAMP}", attrs="powerConsumption", lastN=2).json()
    assert [(i["value"], i["observedAt"]) for i in body["powerConsumption"]] == [
        (50.0, at(60)),
        (60.0, at(75)),
    ]
    within = get(
        city, f"{T}/{LAMP}", attrs="powerConsumption", lastN=1, timerel="before", timeAt=at(30)
    ).json()
    assert [i["value"] for i in within["powerConsumption"]] == [20.0]


def test_temporal_values_is_the_simplified_representation(city: Server):
    body = get(city, f"{T}/{LAMP}", attrs="powerConsumption", options="temporalValues").json()
    assert body["powerConsumption"] == {
        "type": "Property",
        "values": [[w, at(15 * i)] for i, w in enumerate(WATTS)],
    }
    rel = get(city, f"{T}/{OTHER}", attrs="refStreetlightControlCabinet", format="temporalValues")
    objects = rel.json()["refStreetlightControlCabinet"]
    assert objects["type"] == "Relationship"
    assert [o for o, _ in objects["objects"]] == [CABINET]


def test_a_relationship_instance_carries_its_object(city: Server):
    body = get(city, f"{T}/{OTHER}", attrs="refStreetlightControlCabinet").json()
    [instance] = body["refStreetlightControlCabinet"]
    assert (instance["type"], instance["object"]) == ("Relationship", CABINET)


def test_every_aggregation_method_per_hour(city: Server):
    r = get(
        city,
        f"{T}/{LAMP}",
        attrs="powerConsumption",
        timerel="between",
        timeAt=at(0),
        endTimeAt=at(120),
        aggrMethods="totalCount,distinctCount,sum,avg,min,max,stddev,sumsq",
        aggrPeriodDuration="PT1H",
        options="aggregatedValues",
    )
    assert r.status_code == 200, r.text
    attr = r.json()["powerConsumption"]
    assert attr["type"] == "Property"
    first, second = WATTS[:4], WATTS[4:]
    hours = [(at(0), at(60)), (at(60), at(120))]

    def periods(f) -> list[list]:
        return [[f(vs), s, e] for vs, (s, e) in zip((first, second), hours, strict=True)]

    assert attr["totalCount"] == periods(len)
    assert attr["distinctCount"] == periods(lambda vs: len(set(vs)))
    assert attr["sum"] == periods(sum)
    assert attr["avg"] == periods(lambda vs: sum(vs) / len(vs))
    assert attr["min"] == periods(min)
    assert attr["max"] == periods(max)
    assert attr["sumsq"] == periods(lambda vs: sum(v * v for v in vs))
    expected = periods(
        lambda vs: math.sqrt(sum((v - sum(vs) / len(vs)) ** 2 for v in vs) / (len(vs) - 1))
    )
    assert [p[1:] for p in attr["stddev"]] == [p[1:] for p in expected]
    assert [p[0] for p in attr["stddev"]] == pytest.approx([p[0] for p in expected])


def test_without_a_period_one_aggregate_spans_the_whole_range(city: Server):
    body = get(
        city,
        f"{T}/{LAMP}",
        attrs="powerConsumption,powerState",
        timerel="between",
        timeAt=at(15),
        endTimeAt=at(90),
        aggrMethods="max,distinctCount,totalCount",
    ).json()
    assert body["powerConsumption"]["max"] == [[60.0, at(15), at(90)]]
    assert body["powerState"]["distinctCount"] == [[3, at(15), at(90)]]  # off, on, low
    assert body["powerState"]["totalCount"] == [[5, at(15), at(90)]]


def test_query_chooses_entities_as_get_entities_does(city: Server):
    r = get(
        city,
        T,
        type="Streetlight",
        idPattern="temporal-",
        attrs="powerConsumption",
        options="temporalValues",
        count="true",
    )
    assert r.status_code == 200, r.text
    assert r.headers["NGSILD-Results-Count"] == "2"  # the deleted entity is not current
    by_id = {e["id"]: e for e in r.json()}
    assert set(by_id) == {LAMP, OTHER}
    assert by_id[OTHER]["powerConsumption"]["values"] == [[7.0, at(5)]]
    hourly = get(
        city,
        T,
        id=f"{LAMP},{OTHER}",
        attrs="powerConsumption",
        aggrMethods="avg",
        aggrPeriodDuration="PT1H",
    ).json()
    assert {e["id"]: e["powerConsumption"]["avg"] for e in hourly} == {
        LAMP: [[25.0, at(0), at(60)], [55.0, at(60), at(120)]],
        OTHER: [[7.0, at(0), at(60)]],
    }


def test_a_deleted_entity_keeps_its_temporal_evolution(city: Server):
    body = get(city, f"{T}/{GONE}", attrs="powerConsumption").json()
    assert [i["value"] for i in body["powerConsumption"]] == [3.0]


def test_an_unknown_entity_is_not_found(city: Server):
    r = get(city, f"{T}/urn:ngsi-ld:Streetlight:temporal-never")
    assert r.status_code == 404
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"timerel": "before"}, "timeAt"),
        ({"timerel": "between", "timeAt": at(0)}, "endTimeAt"),
        ({"timerel": "between", "timeAt": at(30), "endTimeAt": at(0)}, "endTimeAt"),
        ({"timerel": "after", "timeAt": at(0), "endTimeAt": at(30)}, "endTimeAt"),
        ({"timerel": "during", "timeAt": at(0)}, "timerel"),
        ({"timeAt": at(0)}, "timerel"),
        ({"timerel": "after", "timeAt": "yesterday"}, "timeAt"),
        ({"timeproperty": "modifiedAt"}, "timeproperty"),
        ({"aggrMethods": "median"}, "aggrMethods"),
        ({"options": "aggregatedValues"}, "aggrMethods"),
        ({"aggrMethods": "avg", "aggrPeriodDuration": "P1M"}, "aggrPeriodDuration"),
        ({"aggrMethods": "avg", "aggrPeriodDuration": "one hour"}, "aggrPeriodDuration"),
        ({"aggrPeriodDuration": "PT1H"}, "aggrPeriodDuration"),
        ({"aggrMethods": "avg", "lastN": 3}, "lastN"),
        ({"options": "temporalValues,aggregatedValues", "aggrMethods": "avg"}, "options"),
        ({"options": "keyValues"}, "options"),
        ({"format": "simplified"}, "format"),
    ],
)
def test_bad_temporal_parameters_are_400_naming_the_field(city: Server, params: dict, field: str):
    for path in (f"{T}/{LAMP}", T):
        r = get(city, path, **params)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["type"] == BAD_REQUEST
        assert r.json()["field"] == field


def test_last_n_must_be_a_positive_count(city: Server):
    assert get(city, f"{T}/{LAMP}", lastN=0).status_code == 400


def test_temporal_reads_need_a_credential(city: Server):
    with city.client(None) as anonymous:
        assert anonymous.get(f"{T}/{LAMP}").status_code == 401
        assert anonymous.get(T, params={"type": "Streetlight"}).status_code == 401
