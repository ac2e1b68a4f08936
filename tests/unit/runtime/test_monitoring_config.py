"""config/grafana and config/prometheus only use metrics that syncd's /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from syncd.runtime.metrics import SyncdMetrics

CONFIG = Path(__file__).resolve().parents[3] / "config"
METRIC = re.compile(r"\bsyncd_[a-z0-9_]+")


def exposed() -> set[str]:
    m = SyncdMetrics()
    m.info.set(1, version="x")
    m.queue_items.replace([({"state": "pending"}, 1.0)])
    m.items_processed.inc()
    m.items_failed.inc(outcome="retry")
    m.api_calls.inc(system="pardot", outcome="ok")
    m.api_budget_left.replace([({"system": "pardot"}, 1.0)])
    m.poll_lag.replace([({"feed": "pardot.prospects"}, 1.0)])
    m.sync_latency.observe(1.0)
    m.live_processes.set(1)
    m.oldest_pending_age.set(0.0)
    names = set()
    for line in m.render().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_alert_rules_use_exposed_metrics_and_say_what_to_do() -> None:
    text = (CONFIG / "prometheus" / "syncd-rules.yml").read_text()
    exprs = re.findall(r"^\s+expr: (.+)$", text, flags=re.M)
    alerts = re.findall(r"^\s+- alert: (\w+)$", text, flags=re.M)
    assert len(exprs) == len(alerts) >= 6
    assert text.count("severity:") == len(alerts)
    assert text.count("description:") == len(alerts)
    used = {name for e in exprs for name in METRIC.findall(e)}
    assert used <= exposed(), used - exposed()
    assert {"syncd_queue_items", "syncd_api_budget_remaining"} <= used


def test_dashboard_panels_use_exposed_metrics() -> None:
    dash = json.loads((CONFIG / "grafana" / "syncd-dashboard.json").read_text())
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {name for e in exprs for name in METRIC.findall(e)}
    assert used <= exposed(), used - exposed()
    assert len(used) >= 7
