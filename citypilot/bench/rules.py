"""``citypilot bench rules``: changes evaluated per second with 1,000 active rules, and
the latency from a change to the command its rule sends.

The rules (``--rules``, default 1,000) cover every attribute of the built-in types:
threshold rules on numeric attributes (no CEL) and change rules with a CEL condition
on the others (half of them starting with a constant test ``change.attrs.x == '…'``,
decided without CEL when the report holds another value; half evaluated by CEL on
every report), about 13 per attribute, none firing. Changes are batches
of device reports as the broker publishes them (``--batch``), one attribute each, on
random entities of those types. The same-run baseline is the bare in-process bus
with one listener that only looks at each change (counts its attributes). Then, under a steady
background load of ``--load`` changes/s through the same 1,000 rules, ``--latency``
reports each make one rule command its streetlight: the time from the publish to the
command's hand-over to the device channel (``sent``), through the real command
service and its store.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from citypilot.config import Settings

console = Console()
SKIP_TYPES = ("Alarm", "Rule", "Incident", "ServiceRequest", "RoadClosure", "Municipality")


def add_rules_bench(bench: Any) -> None:
    """Register ``bench rules``."""
    p = bench.add_parser("rules", help="changes/s with N active rules; change -> command p99")
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--changes", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--entities", type=int, default=20_000)
    p.add_argument("--latency", type=int, default=300, help="change -> command samples")
    p.add_argument(
        "--load", type=int, default=5000, help="background changes/s while measuring latency"
    )
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=bench_rules)


def _targets(registry: Any) -> list[tuple[str, str, Any]]:
    """(type, attribute, spec) of every attribute a bench rule may watch."""
    out = []
    for t in sorted(registry, key=lambda t: t.name):
        if t.name in SKIP_TYPES:
            continue
        for name, spec in sorted(t.attributes.items()):
            if spec.value in ("number", "integer") or spec.choices:
                out.append((t.name, name, spec))
    return out


def bench_rule_docs(registry: Any, count: int) -> list[dict[str, Any]]:
    """``count`` rules spread over the attributes of the built-in types, none firing."""
    targets = _targets(registry)
    docs = []
    for k in range(count):
        type_name, attr, spec = targets[k % len(targets)]
        doc: dict[str, Any] = {
            "id": f"bench-{k}",
            "owner": "bench",
            "type": type_name,
            "attributes": [attr],
            "actions": [{"kind": "alarm", "severity": "low", "message": "bench"}],
        }
        if spec.value in ("number", "integer"):
            top = 1e9 + k  # never crossed
            doc["trigger"] = {"kind": "threshold", "attribute": attr, "above": top}
        else:
            # half start with a constant test (decided without CEL when it fails), half
            # need CEL every time
            test = f"change.attrs.{attr} == 'never-{k}'"
            doc["condition"] = test if k % 4 == 1 else f"has(change.attrs.{attr}) && {test}"
            doc["trigger"] = {"kind": "change"}
        docs.append(doc)
    return docs


def _changes(registry: Any, entities: int, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    targets = _targets(registry)
    out = []
    for _ in range(count):
        type_name, attr, spec = targets[rng.randrange(len(targets))]
        if spec.choices:
            value: Any = rng.choice(spec.choices)
        else:
            value = round(rng.uniform(spec.minimum or 0.0, min(spec.maximum or 100.0, 1e6)), 2)
        out.append(
            {
                "id": f"urn:ngsi-ld:{type_name}:b{rng.randrange(entities)}",
                "type": type_name,
                "attrs": {attr: value},
                "observedAt": "2026-12-01T10:00:00.000Z",
                "lon": None,
                "lat": None,
            }
        )
    return out


class _Channel:
    """A device channel that accepts at once and notes when each command reached it."""

    name = "bench"

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}

    def reaches(self, command: Any) -> bool:
        return True

    async def deliver(self, command: Any) -> Any:
        from citypilot.engine.commands import DeviceAnswer

        self.sent[command.entity_id] = time.perf_counter()
        return DeviceAnswer(True)

    async def close(self) -> None:
        """Nothing to close."""


async def _publish_all(bus: Any, changes: list[dict[str, Any]], batch: int) -> float:
    """Seconds to publish every change in batches (yielding between batches)."""
    start = time.perf_counter()
    for k in range(0, len(changes), batch):
        await bus.publish("entities.changed", {"changes": changes[k : k + batch]})
        await asyncio.sleep(0)
    return time.perf_counter() - start


async def _run(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    from citypilot.api.app import running_city

    settings = Settings(data_dir=data, log_level="warning")
    async with running_city(settings) as city:
        registry, bus = city.broker.registry, city.broker.bus
        changes = _changes(registry, args.entities, args.changes, args.seed)
        counted = [0]

        def count(subject: str, payload: dict[str, Any]) -> None:
            for change in payload["changes"]:  # a listener that looks at every change
                counted[0] += len(change["attrs"])

        # the baseline: the bus with a listener that only counts
        city.rules.stop_listening()
        unlisten = bus.listen("entities.changed", count)
        bare_s = await _publish_all(bus, changes, args.batch)
        unlisten()
        city.rules.listen()
        for doc in bench_rule_docs(registry, args.rules):
            await city.rules.create(doc, "bench")
        rules_s = await _publish_all(bus, changes, args.batch)
        evaluations = sum(s.evaluations for s in city.rules.stats.values())
        errors = sum(s.errors for s in city.rules.stats.values())
        latency = await _latency(city, changes, args)
    return {
        "bare": len(changes) / bare_s,
        "rules": len(changes) / rules_s,
        "evaluations": evaluations,
        "errors": errors,
        "latency": latency,
        "counted": counted[0],
    }


async def _latency(city: Any, background: list[dict[str, Any]], args: argparse.Namespace) -> Any:
    """Publish -> ``sent`` of the command a rule sends, with background load between."""
    channel = _Channel()
    city.commands.channels.insert(0, channel)
    lamps = [f"urn:ngsi-ld:Streetlight:lat-{k}" for k in range(args.latency)]
    for k in range(0, len(lamps), 1000):
        await city.broker.batch_upsert(
            [{"id": i, "type": "Streetlight", "status": "ok"} for i in lamps[k : k + 1000]]
        )
    await city.rules.create(
        {
            "id": "bench-latency",
            "owner": "bench",
            "type": "Streetlight",
            "attributes": ["status"],
            "condition": "change.attrs.status == 'columnIssue'",
            "trigger": {"kind": "change"},
            "actions": [{"kind": "command", "command": "switch", "args": {"state": "off"}}],
        },
        "bench",
    )
    published: dict[str, float] = {}
    tick_s = 0.01
    chunk = max(1, int(args.load * tick_s))
    offset = 0
    for k, lamp in enumerate(lamps):
        change = {
            "id": lamp,
            "type": "Streetlight",
            "attrs": {"status": "columnIssue"},
            "observedAt": f"2026-12-01T11:{k // 60 % 60:02d}:{k % 60:02d}.000Z",
            "lon": None,
            "lat": None,
        }
        started = time.perf_counter()
        published[lamp] = started
        await city.broker.bus.publish("entities.changed", {"changes": [change]})
        load = background[offset : offset + chunk] or background[:chunk]
        offset = (offset + chunk) % len(background)
        await city.broker.bus.publish("entities.changed", {"changes": load})
        await asyncio.sleep(max(0.0, tick_s - (time.perf_counter() - started)))
    deadline = time.monotonic() + 60
    while len(channel.sent) < len(lamps) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    ms = sorted((channel.sent[i] - published[i]) * 1000 for i in lamps if i in channel.sent)
    if not ms:
        return None
    return {
        "samples": len(ms),
        "missing": len(lamps) - len(ms),
        "p50": statistics.median(ms),
        "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max": ms[-1],
    }


def bench_rules(args: argparse.Namespace, settings: Settings) -> int:
    """Run the rules bench and print its table."""
    with tempfile.TemporaryDirectory() as tmp:
        got = asyncio.run(_run(args, Path(tmp)))
    table = Table(title=f"citypilot bench rules ({args.rules} rules, {args.changes:,} changes)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("bare bus, changes/s (baseline)", f"{got['bare']:,.0f}")
    table.add_row(f"with {args.rules} rules, changes/s", f"{got['rules']:,.0f}")
    table.add_row("latency measured under a load of (changes/s)", f"{args.load:,}")
    table.add_row("ratio to the bare bus", f"{got['rules'] / got['bare']:.2f}")
    table.add_row("rule evaluations per change", f"{got['evaluations'] / args.changes:.2f}")
    table.add_row("evaluation errors", str(got["errors"]))
    lat = got["latency"]
    if lat:
        table.add_row(f"change -> command sent p50 ({lat['samples']})", f"{lat['p50']:.1f} ms")
        table.add_row("change -> command sent p99", f"{lat['p99']:.1f} ms")
        table.add_row("change -> command sent max", f"{lat['max']:.1f} ms")
        if lat["missing"]:
            table.add_row("commands never sent", str(lat["missing"]))
    console.print(table)
    return 0
