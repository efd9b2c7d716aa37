"""``citypilot bench commands``: N badge readers disabled at once, until all are confirmed.

What a city mode does in a health emergency: ``--count`` AccessPoint ``disable``
commands submitted together, timed from the first submit until the simulated readers'
own reports have confirmed every one. Measured on the embedded path (the simulator
in-process, as in ``citypilot demo``: commands handed over directly, reports through
the broker) and, with ``--mqtt``, through a real MQTT broker with the simulator as the
gateway (``cmd`` / ``cmd/ack`` topics, reports on the device topics) and, with
``--processes`` too, on several processes: the engine in this process on the NATS bus
(``nats_url``, ``postgres_dsn`` of the settings, with a prefix and database of its
own), commands out and acks back through two ``citypilot worker ingest``, the reports
written by a ``citypilot worker writer``. The same-run
baseline is the MQTT transport's floor: ``--count`` QoS 1 messages sent and received
back through the broker, with no platform in between.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from citypilot.config import Settings

console = Console()
ACCESS_POINTS_PER_SCALE = 600  # about 620 badge readers at scale 1
BOUND_S = 120.0


def add_commands_bench(bench: Any) -> None:
    """Register ``bench commands``."""
    p = bench.add_parser("commands", help="N AccessPoint disable commands until all confirmed")
    p.add_argument("--count", type=int, default=600)
    p.add_argument("--mqtt", help="also through this MQTT broker (mqtt://host:port)")
    p.add_argument(
        "--processes",
        action="store_true",
        help="with --mqtt: also on several processes (bus = nats: ingest and writer workers;"
        " nats_url and postgres_dsn of the settings, a database and prefix of its own)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=bench_commands)


async def run_devices(sim: Any, send: Any, stop: asyncio.Event) -> None:
    """Step the simulated devices in real time and send what they report, until ``stop``."""
    while not stop.is_set():
        batch = sim.step(max(sim.now, time.time()))
        for k in range(0, len(batch), 5000):
            await send(batch[k : k + 5000])
        await asyncio.sleep(0.02)


def _city_with(count: int, seed: int) -> Any:
    from citypilot.twin import generate_city

    scale = max(0.05, count / ACCESS_POINTS_PER_SCALE)
    while True:
        city = generate_city(seed, scale)
        if len(city.of_type("AccessPoint")) >= count or scale >= 8:
            return city
        scale = min(8.0, scale * 1.25)


async def _run(
    city: Any, count: int, data: Path, mqtt: str | None, cluster: Settings | None = None
) -> dict[str, float]:
    """Seconds from the first submit to the last confirmation (and the submit time).

    With ``cluster`` (settings with ``bus = "nats"`` and ``store = "postgres"``) the
    engine runs here on the NATS bus and MQTT is taken by ingest worker processes, the
    reports written by a writer process: commands go out through the workers."""
    from citypilot.api.app import running_city
    from citypilot.bench.scale import drop_streams, start_workers
    from citypilot.twin import MqttPublisher, Simulator
    from citypilot.twin.command_channel import SimulatorChannel
    from citypilot.twin.command_gateway import MqttCommandGateway

    root = f"cpbench-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=data, mqtt_url=mqtt, mqtt_topic_root=root, log_level="warning")
    if cluster is not None:
        update = {"mqtt_url": mqtt, "mqtt_topic_root": root, "data_dir": data}
        settings = cluster.model_copy(update=update)
        data.mkdir(parents=True, exist_ok=True)
    async with running_city(settings) as running, contextlib.AsyncExitStack() as procs:
        broker, service = running.broker, running.commands
        docs = [d for d in city.entities if d["type"] in ("AccessPoint", "Building")]
        for k in range(0, len(docs), 2000):
            await broker.batch_upsert(docs[k : k + 2000])
        if cluster is not None:
            procs.push_async_callback(drop_streams, broker.bus)
            env = {"CITYPILOT_MQTT_URL": str(mqtt), "CITYPILOT_MQTT_TOPIC_ROOT": root}
            for role, n, ready in (
                ("writer", 1, "consumer writer of"),
                ("ingest", 2, "MQTT ingest subscribed"),
            ):
                for proc in start_workers(
                    cluster, cluster.nats_prefix, cluster.postgres_dsn, n, data, role, env
                ):
                    procs.callback(proc.stop)
                    await asyncio.to_thread(proc.wait_for_log, ready)
        sim = Simulator(city, city.seed, time.time() - 2, types=("AccessPoint",))
        stop = asyncio.Event()
        tasks = []
        if mqtt:
            publisher = MqttPublisher(mqtt, topic_root=root)
            await publisher.connect()
            gateway = MqttCommandGateway(mqtt, sim, topic_root=root)
            tasks.append(asyncio.create_task(gateway.run(stop)))
            await asyncio.wait_for(gateway.subscribed.wait(), BOUND_S)

            async def send(batch: list[dict[str, Any]]) -> None:
                await publisher.send(batch)
        else:
            service.channels.insert(1, SimulatorChannel(sim))
            publisher = None

            async def send(batch: list[dict[str, Any]]) -> None:
                await broker.ingest(batch, "simulator")

        tasks.append(asyncio.create_task(run_devices(sim, send, stop)))
        await asyncio.sleep(0.5)  # the readers' start-up snapshot goes in first
        doors = [d["id"] for d in city.of_type("AccessPoint")[:count]]
        confirmed = asyncio.Event()
        done: set[str] = set()
        acked: set[str] = set()
        sent: set[str] = set()
        marks: dict[str, float] = {}

        def follow(subject: str, payload: dict[str, Any]) -> None:
            for cmd in payload["commands"]:
                if cmd["state"] == "sent":
                    sent.add(cmd["id"])
                    if len(sent) >= count:
                        marks.setdefault("all_sent_s", time.perf_counter() - started)
                if cmd["state"] == "acknowledged":
                    acked.add(cmd["id"])
                    if len(acked) >= count:
                        marks.setdefault("all_acknowledged_s", time.perf_counter() - started)
                if cmd["state"] == "confirmed":
                    done.add(cmd["id"])
                elif cmd["state"] not in ("pending", "sent", "acknowledged"):
                    console.print(f"[red]{cmd['id']} ended {cmd['state']}: {cmd['answer']}[/]")
            if len(done) >= count:
                confirmed.set()

        unlisten = broker.bus.listen("commands.changed", follow)
        started = time.perf_counter()
        await asyncio.gather(  # as a city mode submits them: all at once
            *(
                service.submit(
                    door, "disable", None, reason="bench: health emergency", requested_by="bench"
                )
                for door in doors
            )
        )
        submitted = time.perf_counter() - started
        await asyncio.wait_for(confirmed.wait(), BOUND_S)
        elapsed = time.perf_counter() - started
        unlisten()
        stop.set()
        for task in tasks:
            await task
        if publisher is not None:
            await publisher.aclose()
    return {"all_confirmed_s": elapsed, "submit_s": submitted, **marks}


async def _echo_floor(mqtt: str, count: int) -> float:
    """Seconds for ``count`` QoS 1 messages to go through the broker and come back."""
    import aiomqtt

    from citypilot.twin.clients import MqttPublisher

    link = MqttPublisher(mqtt)
    topic = f"cpbench-echo-{uuid.uuid4().hex[:8]}/x"
    async with (
        aiomqtt.Client(link.hostname, link.port) as sub,
        aiomqtt.Client(link.hostname, link.port, max_inflight_messages=256) as pub,
    ):
        await sub.subscribe(topic, qos=1)
        started = time.perf_counter()
        sends = asyncio.gather(*(pub.publish(topic, b"{}", qos=1) for _ in range(count)))
        received = 0
        async for _ in sub.messages:
            received += 1
            if received >= count:
                break
        await sends
        return time.perf_counter() - started


@contextlib.contextmanager
def _cluster_settings(settings: Settings) -> Iterator[Settings]:
    """Settings for several processes on the NATS server and PostgreSQL of ``settings``,
    with a subject prefix and a database of their own (dropped at the end)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"citypilot_bench_{uuid.uuid4().hex[:8]}"
    cluster = settings.model_copy(
        update={
            "bus": "nats",
            "store": "postgres",
            "engine": "embedded",
            "nats_prefix": f"bench{uuid.uuid4().hex[:8]}",
            "postgres_dsn": make_conninfo(settings.postgres_dsn, dbname=name),
            "log_level": "warning",
        }
    )
    try:
        yield cluster
    finally:
        admin = make_conninfo(settings.postgres_dsn, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def bench_commands(args: argparse.Namespace, settings: Settings) -> int:
    """Disable ``--count`` badge readers and time until the simulator confirmed them all."""
    with console.status("Generating a city with enough badge readers …"):
        city = _city_with(args.count, args.seed)
    count = min(args.count, len(city.of_type("AccessPoint")))
    table = Table(title=f"{count} AccessPoint disable commands until all confirmed")
    table.add_column("path")
    table.add_column("submit all (s)", justify="right")
    table.add_column("all sent (s)", justify="right")
    table.add_column("all acknowledged (s)", justify="right")
    table.add_column("all confirmed (s)", justify="right")
    table.add_column("commands/s", justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        embedded = asyncio.run(_run(city, count, Path(tmp) / "embedded", None))
        rows = [("embedded (simulator in-process)", embedded)]
        if args.mqtt:
            rows.append(
                ("MQTT gateway", asyncio.run(_run(city, count, Path(tmp) / "mqtt", args.mqtt)))
            )
        if args.mqtt and args.processes:
            with _cluster_settings(settings) as cluster:
                several = asyncio.run(_run(city, count, Path(tmp) / "nats", args.mqtt, cluster))
            rows.append(("MQTT, several processes (NATS, 2 ingest workers, writer)", several))
    for name, r in rows:
        rate = count / r["all_confirmed_s"]
        sent, acked = r.get("all_sent_s"), r.get("all_acknowledged_s")
        table.add_row(
            name,
            f"{r['submit_s']:.2f}",
            "—" if sent is None else f"{sent:.2f}",
            "—" if acked is None else f"{acked:.2f}",
            f"{r['all_confirmed_s']:.2f}",
            f"{rate:,.0f}",
        )
    console.print(table)
    if args.mqtt:
        floor = asyncio.run(_echo_floor(args.mqtt, count))
        console.print(
            f"baseline: {count} QoS 1 messages through the broker and back in {floor:.3f} s"
        )
        for name, r in rows[1:]:
            console.print(f"  {name}: {r['all_confirmed_s'] / floor:.0f}× that")
    target = all(r["all_confirmed_s"] < 5.0 for _, r in rows)
    console.print(f"target < 5 s for all confirmed: {'met' if target else 'NOT met'}")
    return 0
