"""The Prometheus text exposition (format 0.0.4), parsed back line by line."""

from __future__ import annotations

import math
import re

import pytest

from syncd.runtime.metrics import Counter, Gauge, Histogram, Registry, SyncdMetrics, format_value

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*)?\}})? "
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|Inf|NaN))$"
)
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(
    text: str,
) -> tuple[dict[str, str], dict[str, str], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """A strict reader for the text format: every line must be HELP, TYPE or a valid sample."""
    assert text.endswith("\n")
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert name not in helps, f"HELP twice for {name}"
            helps[name] = help_
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            assert name in helps and name not in types
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, f"not a valid sample line: {line!r}"
            labels = frozenset(
                (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                for k, v in _LABEL_PAIR.findall(m["labels"] or "")
            )
            family = re.sub(r"_(bucket|sum|count)$", "", m["name"])
            assert m["name"] in types or family in types, f"sample before its TYPE: {line}"
            key = (m["name"], labels)
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = float(m["value"].replace("Inf", "inf"))
    return helps, types, samples


def test_counter_gauge_histogram_round_trip() -> None:
    registry = Registry()
    calls = Counter("x_calls_total", "Calls.\nSecond line \\ here.", ["system", "outcome"])
    depth = Gauge("x_depth", "Depth.", ["state"])
    latency = Histogram("x_latency_seconds", "Latency.", [1, 5, 10])
    for m in (calls, depth, latency):
        registry.add(m)
    calls.inc(system="pardot", outcome="ok")
    calls.inc(2, system="pardot", outcome="ok")
    calls.inc(system='sales"force\\\n', outcome="retriable")
    depth.set(7, state="pending")
    depth.set(0.25, state="claimed")
    for v in (0.5, 1, 3, 11, 400):
        latency.observe(v)

    helps, types, samples = parse(registry.render())

    assert types == {
        "x_calls_total": "counter",
        "x_depth": "gauge",
        "x_latency_seconds": "histogram",
    }
    assert helps["x_calls_total"] == "Calls.\\nSecond line \\\\ here."
    assert samples[("x_calls_total", frozenset({("system", "pardot"), ("outcome", "ok")}))] == 3
    odd = frozenset({("system", 'sales"force\\\n'), ("outcome", "retriable")})
    assert samples[("x_calls_total", odd)] == 1
    assert samples[("x_depth", frozenset({("state", "claimed")}))] == 0.25
    buckets = {
        dict(k[1])["le"]: v for k, v in samples.items() if k[0] == "x_latency_seconds_bucket"
    }
    assert buckets == {"1": 2, "5": 3, "10": 3, "+Inf": 5}
    assert samples[("x_latency_seconds_count", frozenset())] == 5
    assert samples[("x_latency_seconds_sum", frozenset())] == 415.5


def test_gauge_replace_drops_vanished_series() -> None:
    g = Gauge("g", "G.", ["feed"])
    g.replace([({"feed": "a"}, 1), ({"feed": "b"}, 2)])
    g.replace([({"feed": "b"}, 3)])
    assert g.value(feed="a") is None
    assert g.value(feed="b") == 3


def test_wrong_labels_and_negative_increments_are_refused() -> None:
    c = Counter("c_total", "C.", ["system"])
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(sistem="pardot")
    with pytest.raises(ValueError, match="only goes up"):
        c.inc(-1, system="pardot")


def test_format_value_special_floats() -> None:
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert format_value(3.0) == "3"
    assert format_value(0.1) == "0.1"


def test_syncd_metrics_render_every_family_and_parse() -> None:
    m = SyncdMetrics()
    m.info.set(1, version="0.1.0")
    m.queue_items.replace([({"state": s}, n) for s, n in (("pending", 4), ("claimed", 1))])
    m.api_calls.inc(system="salesforce", outcome="ok")
    m.items_processed.inc(5)
    m.items_failed.inc(outcome="retry")
    m.sync_latency.observe(2.0)
    m.poll_lag.set(1.5, feed="pardot_prospects")
    _helps, types, samples = parse(m.render())
    assert {
        "syncd_queue_items",
        "syncd_queue_oldest_pending_age_seconds",
        "syncd_items_processed_total",
        "syncd_items_failed_total",
        "syncd_api_calls_total",
        "syncd_api_budget_remaining",
        "syncd_poll_lag_seconds",
        "syncd_sync_latency_seconds",
    } <= set(types)
    assert samples[("syncd_items_processed_total", frozenset())] == 5
    assert samples[("syncd_queue_items", frozenset({("state", "pending")}))] == 4
