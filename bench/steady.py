"""Steady-state benchmark: a stream of edits on both sides; time from each edit to synced.

After a backfill of a small world has drained, edits arrive at a steady rate for `duration_s`,
alternating sides: a prospect's `jobTitle` in Pardot, or the linked Lead's or Contact's `Title`
in Salesforce, each set to a unique marker (`bench-edit-<n>`). The simulator process applies
each edit through its own request handler (so it costs the daemon nothing and takes none of
Pardot's 5 connections) and notes the moment the daemon's write carrying the marker reaches the
other side. Measured: p50/p95/p99 of edit -> synced, edits never synced, and the daemon's API
calls per edit (idle polling included: that is what a steady state costs).

When more edits are asked for than the world has synced prospects (100 edits a second for a
minute on a 1,000-prospect world), the edits cycle over the prospects again with new markers;
an edit overwritten by the next edit of the same record before it synced is counted as not
synced (`edits` - `synced`), never as a fast one.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from random import Random
from typing import Any

import httpx

from bench._harness import (
    Daemon,
    Database,
    Simulators,
    StoreWatch,
    api_calls,
    stored_links,
    wait_drained,
)
from bench.backfill import backfill_seed

POLL_INTERVAL_S = 5.0


def percentile(values: list[float], q: float) -> float | None:
    """The `q` quantile (0..1) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _edits(
    sims: Simulators, pairs: list[list[Any]], *, rate_per_s: float, duration_s: float
) -> dict[str, float]:
    """Send edits at `rate_per_s` for `duration_s`; returns {marker: unix time applied}."""
    rng = Random(11)
    rng.shuffle(pairs)
    sent: dict[str, float] = {}
    url = f"{sims.salesforce_url}/__bench__/edit"
    start = time.monotonic()
    n = 0
    async with httpx.AsyncClient(timeout=30) as http:
        while True:
            due = start + n / rate_per_s
            now = time.monotonic()
            if due - start >= duration_s or not pairs:
                break
            if due > now:
                await asyncio.sleep(due - now)
            # Past the last pair, edit the first ones again (with new markers): at 100 edits a
            # second a small world is edited many times over.
            pid, crm_id = pairs[n % len(pairs)]
            marker = f"bench-edit-{n}"
            if n % 2 == 0:
                body = {"side": "pardot", "id": pid, "fields": {"jobTitle": marker}}
            else:
                sobject = "Contact" if str(crm_id).startswith("003") else "Lead"
                body = {
                    "side": "salesforce",
                    "sobject": sobject,
                    "id": crm_id,
                    "fields": {"Title": marker},
                }
            answer = (await http.post(url, json=body)).json()
            if answer["status"] < 300:
                sent[marker] = float(answer["at"])
            n += 1
    return sent


def run_steady(
    db_kind: str,
    *,
    base_prospects: int = 2000,
    rate_per_s: float = 10.0,
    duration_s: float = 60.0,
    latency_ms: float = 20.0,
    settings: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> dict[str, Any]:
    """One steady-state run; returns its figures (a row of the table)."""
    seed = backfill_seed(base_prospects)
    label = f"steady {db_kind} {rate_per_s:g}/s"
    print(f"{label}: backfilling {base_prospects:,} prospects first", file=sys.stderr, flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
        Database(db_kind) as db,
        Simulators(seed, latency_ms=latency_ms, workdir=Path(tmp)) as sims,
    ):
        del seed
        daemon = Daemon(
            sims,
            db.url,
            settings={"SYNCD_SYNC__POLL_INTERVAL_S": str(poll_interval_s), **(settings or {})},
            log_path=(log_dir / f"steady-{db_kind}-{rate_per_s:g}.log") if log_dir else None,
        )
        daemon.start()
        try:
            asyncio.run(_drain(db.url, daemon, poll_interval_s))
            pairs = stored_links(db.url, limit=max(1, int(rate_per_s * duration_s)))
            print(f"{label}: {rate_per_s:g} edits/s for {duration_s:g} s", file=sys.stderr)
            before = sims.counters()
            rss_before = daemon.rss()
            sent = asyncio.run(_edits(sims, pairs, rate_per_s=rate_per_s, duration_s=duration_s))
            seen = asyncio.run(_wait_seen(sims, set(sent), timeout_s=4 * poll_interval_s + 30))
            after = sims.counters()
        finally:
            daemon.stop()
    calls = api_calls(before, after)
    lags = [seen[m] - t for m, t in sent.items() if m in seen]
    changes = len(sent)

    def ms(q: float) -> float | None:
        v = percentile(lags, q)
        return None if v is None else round(v * 1000.0)

    row = {
        "database": db_kind,
        "latency_ms": latency_ms,
        "poll_interval_s": poll_interval_s,
        "rate_per_s": rate_per_s,
        "duration_s": duration_s,
        "changes": changes,
        "synced": len(lags),
        "p50_ms": ms(0.50),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "max_ms": round(max(lags) * 1000.0) if lags else None,
        "aim_p95_ms": round((poll_interval_s + 1.0) * 1000.0),
        "salesforce_calls": calls["salesforce"],
        "pardot_calls": calls["pardot"],
        "calls_per_change": round((calls["salesforce"] + calls["pardot"]) / changes, 2)
        if changes
        else None,
        "salesforce_calls_per_change": round(calls["salesforce"] / changes, 3) if changes else None,
        "pardot_calls_per_change": round(calls["pardot"] / changes, 3) if changes else None,
        "rss_mb": round(rss_before / 2**20, 1),
    }
    print(f"{label}: {row}", file=sys.stderr, flush=True)
    return row


async def _drain(url: str, daemon: Daemon, poll_interval_s: float) -> None:
    watch = StoreWatch(url)
    try:
        await wait_drained(watch, daemon, quiet_s=2.5 * poll_interval_s, timeout_s=600)
    finally:
        await watch.aclose()


async def _wait_seen(sims: Simulators, markers: set[str], *, timeout_s: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=30) as http:
        while True:
            seen: dict[str, float] = (
                await http.get(f"{sims.salesforce_url}/__bench__/seen")
            ).json()
            if markers <= set(seen) or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    print(run_steady(kind, duration_s=duration, log_dir=Path("/tmp")))
