"""Metrics registry: counters, gauges and histograms rendered in Prometheus text format 0.0.4.

Written here rather than taken from `prometheus-client`: syncd needs a dozen series, one process
per registry, no multiprocess mode and no push gateway, and the text format is small and stable
(https://prometheus.io/docs/instrumenting/exposition_formats/). Keeping it in ~150 lines saves a
dependency and keeps the metric names and help texts in one readable place (`SyncdMetrics`).

Everything runs on the event loop thread, so no locks. Gauges that describe the store (queue depth,
oldest pending, poll lag, budget left) are set by the ops server's collect step just before each
scrape; counters and the histogram are updated as things happen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the text format spells it (`+Inf`, `-Inf`, `NaN`, shortest float)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_
        self.labelnames = tuple(labelnames)

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count; the name should end in `_total`."""

    kind = "counter"

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_, labelnames)
        self._values: dict[LabelValues, float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labelnames, key)} {format_value(v)}"
            for key, v in sorted(self._values.items())
        ]


class Gauge(_Metric):
    """A value that goes up and down; `replace` swaps every labelled value at once."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_, labelnames)
        self._values: dict[LabelValues, float] = {}

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def replace(self, values: Iterable[tuple[dict[str, str], float]]) -> None:
        """Set exactly these series (labels that disappeared are dropped)."""
        self._values = {self._key(labels): float(v) for labels, v in values}

    def clear(self) -> None:
        self._values = {}

    def value(self, **labels: str) -> float | None:
        return self._values.get(self._key(labels))

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labelnames, key)} {format_value(v)}"
            for key, v in sorted(self._values.items())
        ]


class Histogram(_Metric):
    """Observations counted into cumulative `le` buckets, with `_sum` and `_count`."""

    kind = "histogram"

    def __init__(self, name: str, help_: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_, ())
        self.buckets = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        self._counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self._counts[i] += 1
                break
        else:
            self._counts[-1] += 1
        self.sum += value
        self.count += 1

    def samples(self) -> list[str]:
        lines = []
        running = 0
        for bound, n in zip((*self.buckets, math.inf), self._counts, strict=True):
            running += n
            le = 'le="' + format_value(bound) + '"'
            lines.append(f"{self.name}_bucket{{{le}}} {running}")
        lines.append(f"{self.name}_sum {format_value(self.sum)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Registry:
    """An ordered set of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def add(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric

    def render(self) -> str:
        """The whole registry in text format 0.0.4 (ends with a newline)."""
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


# Change seen -> synced: most items sync within a poll interval or two; the tail is retries.
LATENCY_BUCKETS_S = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


class SyncdMetrics:
    """The daemon's metrics: every series syncd exports, by name."""

    def __init__(self) -> None:
        self.registry = Registry()
        add = self.registry.add
        self.info = Gauge("syncd_info", "syncd build information (always 1).", ["version"])
        self.start_time = Gauge(
            "syncd_process_start_time_seconds", "Start time of the process (unix seconds)."
        )
        self.queue_items = Gauge(
            "syncd_queue_items", "Queue items by state (pending, claimed, done, error).", ["state"]
        )
        self.oldest_pending_age = Gauge(
            "syncd_queue_oldest_pending_age_seconds",
            "Age of the oldest pending queue item that is due, in seconds (0 when none).",
        )
        self.items_processed = Counter(
            "syncd_items_processed_total", "Queue items this process synced successfully."
        )
        self.items_failed = Counter(
            "syncd_items_failed_total",
            "Queue items this process could not sync, by outcome (retry: re-queued; error: "
            "moved to the error queue).",
            ["outcome"],
        )
        self.api_calls = Counter(
            "syncd_api_calls_total",
            "HTTP calls this process made to an API, by system and outcome.",
            ["system", "outcome"],
        )
        self.api_budget_left = Gauge(
            "syncd_api_budget_remaining",
            "API calls syncd may still make today within its share of the daily limit.",
            ["system"],
        )
        self.poll_lag = Gauge(
            "syncd_poll_lag_seconds",
            "Seconds since the feed was last polled successfully (its cursor's age when never).",
            ["feed"],
        )
        self.sync_latency = Histogram(
            "syncd_sync_latency_seconds",
            "Time from a change being seen (queued) to the prospect being synced.",
            LATENCY_BUCKETS_S,
        )
        self.live_processes = Gauge(
            "syncd_live_processes", "syncd processes with a fresh heartbeat on this store."
        )
        self.login_failing = Gauge(
            "syncd_login_failing",
            "1 while this process's login to the side is refused (0 when it works).",
            ["system"],
        )
        for metric in (
            self.info,
            self.start_time,
            self.queue_items,
            self.oldest_pending_age,
            self.items_processed,
            self.items_failed,
            self.api_calls,
            self.api_budget_left,
            self.poll_lag,
            self.sync_latency,
            self.live_processes,
            self.login_failing,
        ):
            add(metric)

    def render(self) -> str:
        return self.registry.render()
