"""The metrics every process exposes: documented, and those the Grafana dashboard draws exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from citypilot import metrics

DOCS = Path(__file__).parents[2] / "docs"


def _families() -> set[str]:
    text = metrics.exposition()[0].decode()
    return set(re.findall(r"^# TYPE (citypilot_\w+) ", text, re.M))


def test_every_metric_is_documented() -> None:
    text = (DOCS / "deploy.md").read_text()
    families = _families()
    assert "citypilot_observations_received_total" in families
    missing = [name for name in families if f"`{name}" not in text and f"`{name}_total" not in text]
    assert not missing, f"metrics without docs in deploy.md: {missing}"


def test_the_dashboard_draws_only_metrics_that_exist() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"citypilot_\w+", e)}
    families = _families()
    suffixes = ("_total", "_bucket", "_count", "_sum")
    unknown = [
        m
        for m in used
        if m not in families
        and not any(m.endswith(s) and m[: -len(s)] in families for s in suffixes)
    ]
    assert not unknown, f"the dashboard queries metrics nobody exports: {unknown}"


def test_channel_of_source() -> None:
    assert metrics.channel_of("http:gateway-1") == "http"
    assert metrics.channel_of("mqtt:city/Streetlight/1/attrs") == "mqtt"
