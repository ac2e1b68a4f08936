"""Backfill benchmark: a first sync of a whole org, end to end, over real HTTP.

The world (`generate_seed`, the issue's shape): N prospects, 0.8 N CRM records, 0.4 N sent
emails; every prospect assigned; about half the prospects match a Contact or Lead by email and
the rest need a new Lead; the CRM records beyond the matches have no prospect. `syncd run`
starts on an empty store and syncs until its queue is drained for good (the echoes of its own
writes included). Measured: wall time from the daemon's start, prospects a second, Salesforce
and Pardot calls per prospect (counted by the simulators), peak RSS of the daemon process.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench._harness import (
    Daemon,
    Daemons,
    Database,
    Simulators,
    StoreWatch,
    api_calls,
    calls_by_route,
    stored_links,
    wait_drained,
)
from bench.worlds import BENCH_SHAPE, make_world, pardot_write_share
from syncd.store import QueueCounts

__all__ = ["BENCH_SHAPE", "backfill_seed", "run_backfill"]

POLL_INTERVAL_S = 5.0
QUIET_POLLS = 2.5  # an empty queue for this many poll intervals: the echoes were polled and done
PATIENCE_POLLS = 6  # x QUIET_POLLS: how long an empty queue waits for prospects not yet linked
PATCH_ROUTE = "pardot PATCH /api/v5/objects/prospects/{id}"
IMPORT_ROUTES = ("pardot POST /api/v5/imports", "pardot POST /api/v5/imports/{id}/batches")


def backfill_seed(prospects: int, world: str = "today") -> dict[str, Any]:
    """The issue's world scaled to `prospects` (50,000 -> 40,000 CRM records, 20,000 emails);
    `world` is one of `bench.worlds.WORLDS`."""
    return make_world(prospects, world)


class _Progress:
    """Prints progress every 10 s and notes the daemon's peak RSS (so far) when the linked
    prospects first reach each tenth of the world: with `--full`, the figure at 50,000 of
    500,000 beside the one at the end shows whether memory stays flat within one run."""

    def __init__(
        self, label: str, watch: StoreWatch, daemon: Daemon | Daemons, prospects: int
    ) -> None:
        self.label, self.watch, self.daemon, self.prospects = label, watch, daemon, prospects
        self.last = 0.0
        self.rss_mb_at: dict[str, float] = {}

    async def all_linked(self) -> bool:
        """Every prospect of the world linked: the backfill's work is complete."""
        linked = await self.watch.links_count()
        return linked is not None and linked >= self.prospects

    async def __call__(self, elapsed: float, q: QueueCounts) -> None:
        if elapsed - self.last < 10:
            return
        self.last = elapsed
        print(
            f"  [{self.label}] {elapsed:5.0f} s: pending {q.pending}, claimed {q.claimed}, "
            f"errors {q.error}, RSS {self.daemon.rss() / 2**20:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
        linked = await self.watch.links_count()
        if linked is None:
            return
        for tenth in range(1, 11):
            mark = self.prospects * tenth // 10
            if linked >= mark and str(mark) not in self.rss_mb_at:
                self.rss_mb_at[str(mark)] = round(self.daemon.peak_rss / 2**20, 1)


def run_backfill(
    prospects: int,
    db_kind: str,
    *,
    latency_ms: float = 20.0,
    settings: Mapping[str, str] | None = None,
    timeout_s: float = 900.0,
    log_dir: Path | None = None,
    poll_interval_s: float = POLL_INTERVAL_S,
    world: str = "today",
    instances: int = 1,
) -> dict[str, Any]:
    """One backfill run; returns its figures (a row of the table).

    `timeout_s` grows with the size (one second for every 20 prospects at least), so the
    500,000-prospect run of `--full` is not cut short. `instances` > 1 runs that many
    `syncd run` on the one database (PostgreSQL only: SQLite takes one per file)."""
    if instances > 1 and db_kind != "postgresql":
        raise ValueError("several syncd run instances share PostgreSQL only (SQLite: one a file)")
    timeout_s = max(timeout_s, prospects / 20.0)
    seed = backfill_seed(prospects, world)
    crm = len(seed["salesforce"]["leads"]) + len(seed["salesforce"]["contacts"])
    emails = len(seed["pardot"]["emails"])
    built_share = pardot_write_share(seed)
    label = f"backfill {prospects:,} {db_kind} ({world})" + (
        f" x{instances} instances" if instances > 1 else ""
    )
    print(f"{label}: starting", file=sys.stderr, flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
        Database(db_kind) as db,
        Simulators(seed, latency_ms=latency_ms, workdir=Path(tmp)) as sims,
    ):
        del seed  # the simulator process holds it; keep the bench process small
        before = sims.counters()
        name = f"backfill-{prospects}-{db_kind}-{world}"
        members = [
            Daemon(
                sims,
                db.url,
                settings={"SYNCD_SYNC__POLL_INTERVAL_S": str(poll_interval_s), **(settings or {})},
                log_path=(log_dir / f"{name}{'-' + str(i) if i else ''}.log") if log_dir else None,
            )
            for i in range(instances)
        ]
        daemon: Daemon | Daemons = members[0] if instances == 1 else Daemons(members)
        watch = StoreWatch(db.url)
        daemon.start()
        try:
            quiet_s = QUIET_POLLS * poll_interval_s
            progress = _Progress(label, watch, daemon, prospects)
            wall_s = asyncio.run(_drain(watch, daemon, timeout_s, progress, quiet_s))
            after = sims.counters()
            daemon.cpu_seconds()
            final = asyncio.run(_final_counts(db.url))
        finally:
            daemon.stop()
        synced = len(stored_links(db.url, limit=prospects + 1))
    calls = api_calls(before, after)
    routes = calls_by_route(before, after)
    patches = routes.get(PATCH_ROUTE, 0)
    row = {
        "world": world,
        "prospects": prospects,
        "crm_records": crm,
        "emails": emails,
        "database": db_kind,
        "instances": instances,
        "latency_ms": latency_ms,
        "wall_s": round(wall_s, 1),
        "prospects_per_s": round(prospects / wall_s, 1),
        "salesforce_calls": calls["salesforce"],
        "pardot_calls": calls["pardot"],
        "pardot_refused_66": calls["pardot_refused"],
        "salesforce_calls_per_prospect": round(calls["salesforce"] / prospects, 4),
        "pardot_calls_per_prospect": round(calls["pardot"] / prospects, 3),
        "peak_rss_mb": round(daemon.peak_rss / 2**20, 1),  # the largest instance's
        "peak_rss_mb_all": round(sum(m.peak_rss for m in members) / 2**20, 1),
        "peak_rss_mb_at_linked": progress.rss_mb_at,
        "daemon_cpu_s": round(daemon.cpu_s, 1),
        "daemon_cpu_ms_per_prospect": round(daemon.cpu_s * 1000.0 / prospects, 2),
        "daemon_processes": daemon.processes_seen,
        "built_pardot_write_share": None if built_share is None else round(built_share, 3),
        "pardot_patches_per_prospect": round(patches / prospects, 3),
        "pardot_import_calls": sum(routes.get(r, 0) for r in IMPORT_ROUTES),
        "synced_prospects": synced,
        "error_queue": final.error,
        "calls_by_route": routes,
    }
    print(f"{label}: {row}", file=sys.stderr, flush=True)
    return row


async def _drain(
    watch: StoreWatch,
    daemon: Daemon | Daemons,
    timeout_s: float,
    progress: _Progress,
    quiet_s: float,
) -> float:
    try:
        return await wait_drained(
            watch,
            daemon,
            quiet_s=quiet_s,
            timeout_s=timeout_s,
            progress=progress,
            complete=progress.all_linked,
            patience_s=PATIENCE_POLLS * quiet_s,
        )
    finally:
        await watch.aclose()


async def _final_counts(url: str) -> QueueCounts:
    watch = StoreWatch(url)
    try:
        snap = await watch.snapshot()
        assert snap is not None
        return snap.queue
    finally:
        await watch.aclose()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    kind = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
    t = time.monotonic()
    print(run_backfill(n, kind, log_dir=Path("/tmp")))
    print(f"bench wall {time.monotonic() - t:.1f} s")
