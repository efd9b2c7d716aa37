"""The demo metropole: a generated city and a live simulator of all its silos.

Public surface (what the CLI, the demo command and the benchmarks call)::

    city = generate_city(seed=7, scale=1.0)          # deterministic, ~2 s at scale 1
    write_city(city, "out/")                         # NDJSON entities, GeoJSON layers, GTFS
    sim = Simulator(city, seed=7, start=start, speed=10.0,
                    scenario=load_scenario(example_scenario("flood_and_fire")))
    observations = sim.step(sim_time)                # compact observations due so far
    async with HttpIngestClient(url, device_key) as sink:
        await run_simulation(sim, sink, stop_event=stop)

Modules: ``land`` (boundary, municipalities, zoning, river), ``roads`` (graph),
``transit`` (lines, stops, timetables), ``street_assets`` and ``facilities``
(placement), ``entities`` (NGSI-LD documents), ``city`` (orchestration),
``export`` (files), ``environment`` (the simulated world), ``devices`` (one
model per device kind), ``simulator``, ``scenario``, ``clients``, ``runner``.
"""

from citypilot.twin.city import TYPE_ORDER, City, generate_city
from citypilot.twin.clients import (
    HttpIngestClient,
    IngestRejected,
    IngestResult,
    MemorySink,
    MqttPublisher,
    Sink,
    mqtt_payload,
    topic_for,
)
from citypilot.twin.export import write_city, write_entities, write_gtfs, write_layers
from citypilot.twin.runner import RunStats, replay_start, run_simulation
from citypilot.twin.scenario import (
    Scenario,
    ScenarioError,
    example_scenario,
    load_scenario,
    parse_scenario,
)
from citypilot.twin.simulator import Simulator

__all__ = [
    "TYPE_ORDER",
    "City",
    "HttpIngestClient",
    "IngestRejected",
    "IngestResult",
    "MemorySink",
    "MqttPublisher",
    "RunStats",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "Sink",
    "example_scenario",
    "generate_city",
    "load_scenario",
    "mqtt_payload",
    "parse_scenario",
    "replay_start",
    "run_simulation",
    "topic_for",
    "write_city",
    "write_entities",
    "write_gtfs",
    "write_layers",
]
