"""Worker processes of a CityPilot on several machines: ingest, writer, engine (docs/deploy.md).

Each runs with ``bus = "nats"`` and ``store = "postgres"``, any number of each:

* ``citypilot worker ingest``: MQTT (shared subscription) → validate → JetStream;
* ``citypilot worker writer``: JetStream → PostgreSQL in batches, then change events;
* ``citypilot worker engine``: commands, alarms, rules and modes, in the one worker
  holding the engine lease (the others stand by).
"""
