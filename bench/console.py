"""`python -m bench.console`: how fast the web console answers on a large store.

A benchmark, not a test: it seeds a fresh store (SQLite file, or a new PostgreSQL database)
with `--prospects` linked prospects (100,000 by default), three audit lines each spread over
the last 30 days, `--errors` items in the error queue (10,000) under a dozen codes, 5,000
pending items, API usage and cursors; then starts the real `syncd console` in a child process
and times each page over real HTTP (`--runs` requests each, after two warm-ups). The aim is
each page under 200 ms; the results say whether it holds on this machine. The first view of
a page is reported apart: the first overview or activity view on a store counts the settled
hours of the last 30 days once (`syncd.web.rollup`), which later views reuse.

Results go to `bench/results/console.md` and `console.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from bench._harness import (
    RESULTS,
    Database,
    free_port,
    machine,
    machine_line,
    markdown_table,
    postgres_available,
    write_results,
)
from syncd.store import Cursor, Store
from syncd.store import tables as t

AIM_MS = 200.0
CODES = [
    ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Phone must have 10 digits"),
    ("INVALID_EMAIL_ADDRESS", "Email: invalid email address: {email}"),
    ("STRING_TOO_LONG", "Last Name: data value too large (max length=80)"),
    ("DUPLICATES_DETECTED", "Use one of these records?"),
    ("REQUIRED_FIELD_MISSING", "Required fields are missing: [Company]"),
    ("ENTITY_IS_DELETED", "entity is deleted"),
    ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Lead Source: bad value for restricted picklist"),
    ("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"),
    ("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id"),
    ("INTERNAL_ERROR", "unexpected KeyError while syncing"),
    ("LEASE_EXPIRED", "claimed 8 times and never finished"),
    ("66", "Too many concurrent requests"),
]
ACTIONS = ["link", "update_crm", "update_pardot", "create_lead", "create_task", "owner", "skip"]
TOKEN = "bench-console-admin-token-0123456789"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.splitlines()[0])
    p.add_argument("--prospects", type=int, default=100_000)
    p.add_argument("--errors", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=20, help="timed requests per page")
    p.add_argument("--databases", default="sqlite,postgresql")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


async def seed(url: str, prospects: int, error_items: int, now: datetime) -> dict[str, int]:
    """Bulk-insert a realistic store; returns the row counts."""
    rng = random.Random(14)
    store = await Store.open(url, migrate=True)
    counts = {"links": 0, "audit_lines": 0, "queue_items": 0}
    try:
        step = 10_000
        for start in range(0, prospects, step):
            ids = range(1_000_000 + start, 1_000_000 + min(prospects, start + step))
            links, audit = [], []
            for pid in ids:
                synced = now - timedelta(seconds=rng.randrange(30 * 86400))
                crm = f"00Q{pid:012d}AAA"
                links.append(
                    {"prospect_id": pid, "crm_type": "Lead", "crm_id": crm,
                     "email": f"p{pid}@example.com", "base": {"jobTitle": "CEO", "phone": "1"},
                     "crm_deleted": False, "synced_at": synced, "created_at": synced,
                     "updated_at": synced}
                )  # fmt: skip
                for k in range(3):
                    at = synced - timedelta(hours=k * 5)
                    action = ACTIONS[(pid + k) % len(ACTIONS)]
                    audit.append(
                        {"prospect_id": pid, "crm_id": crm, "at": at, "action": action,
                         "field": "jobTitle" if action.startswith("update") else None,
                         "old": None, "new": "CEO", "policy": "crm", "reason": "value beats blank",
                         "detail": None}
                    )  # fmt: skip
            async with store.transaction() as tx:
                await tx.execute(insert(t.links), links)
                await tx.execute(insert(t.audit_lines), audit)
            counts["links"] += len(links)
            counts["audit_lines"] += len(audit)
        rows = []
        for i in range(error_items + 5_000):
            pid = 1_000_000 + rng.randrange(prospects)
            failed = now - timedelta(seconds=rng.randrange(7 * 86400))
            code, message = CODES[min(int(rng.expovariate(0.5)), len(CODES) - 1)]
            is_error = i < error_items
            rows.append(
                {"key": f"p:{pid}:{i}", "prospect_id": pid, "crm_id": None, "email": None,
                 "reasons": 1, "snapshot": None, "state": "error" if is_error else "pending",
                 "attempts": 1 if is_error else 0, "available_at": failed,
                 "first_seen_at": failed, "enqueued_at": failed, "updated_at": failed,
                 "last_error_code": code if is_error else None,
                 "last_error_message": message.format(email=f"p{pid}@x") if is_error else None,
                 "first_failed_at": failed if is_error else None,
                 "last_failed_at": failed if is_error else None}
            )  # fmt: skip
        async with store.transaction() as tx:
            for start in range(0, len(rows), 5_000):
                await tx.execute(insert(t.queue_items), rows[start : start + 5_000])
            counts["queue_items"] = len(rows)
            for system in ("salesforce", "pardot"):
                for h in range(24):
                    await store.usage.add(tx, system, 400, at=now - timedelta(hours=h))
            for feed in ("pardot.prospects", "pardot.emails", "salesforce.Lead"):
                await store.cursors.save(tx, feed, Cursor(position=now), now=now)
        if store.dialect == "postgresql":
            async with store.transaction() as tx:
                await tx.execute(text("ANALYZE"))
    finally:
        await store.aclose()
    return counts


PAGES = [
    ("overview", "/"),
    ("errors", "/errors"),
    ("errors, one group", "/errors?code=FIELD_CUSTOM_VALIDATION_EXCEPTION"),
    ("prospect search (email)", "/prospects?q=p1000042@example.com"),
    ("prospect", "/prospects/1000042"),
    ("activity", "/activity"),
    ("settings", "/settings"),
    ("api/status", "/api/status"),
    ("api/errors", "/api/errors"),
    ("api/prospects/{id}", "/api/prospects/1000042"),
]


def _ok(r: httpx.Response) -> None:
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.url} answered {r.status_code}")


def time_pages(base: str, runs: int) -> list[dict[str, Any]]:
    out = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for name, path in PAGES:
            t0 = time.perf_counter()
            r = client.get(path)  # the first view (the activity rollup is counted here)
            first_ms = (time.perf_counter() - t0) * 1000
            _ok(r)
            r = client.get(path)
            _ok(r)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                _ok(r)
            times.sort()
            out.append(
                {
                    "page": name,
                    "path": path,
                    "first_ms": round(first_ms, 1),
                    "median_ms": round(statistics.median(times), 1),
                    "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
                    "max_ms": round(times[-1], 1),
                    "bytes": len(r.content),
                }
            )
    return out


def serve_and_time(url: str, runs: int) -> list[dict[str, Any]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env |= {
        "SYNCD_DATABASE__URL": url,
        "SYNCD_OPS__BEARER_TOKEN": TOKEN,
        "SYNCD_LOG__LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "console", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "syncd console on http://..."
        if "http://" not in line:
            raise RuntimeError(f"syncd console did not start: {line!r}")
        return time_pages(f"http://127.0.0.1:{port}", runs)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [k for k in args.databases.split(",") if k]
    if "postgresql" in kinds and not postgres_available():
        print("PostgreSQL not reachable: skipping it", file=sys.stderr)
        kinds.remove("postgresql")
    now = datetime.now(UTC)
    results: dict[str, Any] = {"machine": machine(), "aim_ms": AIM_MS, "runs": {}}
    sections = []
    for kind in kinds:
        with Database(kind) as db:
            t0 = time.monotonic()
            counts = asyncio.run(seed(db.url, args.prospects, args.errors, now))
            seed_s = round(time.monotonic() - t0, 1)
            print(f"{kind}: seeded {counts} in {seed_s} s", file=sys.stderr)
            pages = serve_and_time(db.url, args.runs)
        results["runs"][kind] = {"rows": counts, "seed_s": seed_s, "pages": pages}
        rows = [
            [p["page"], p["first_ms"], p["median_ms"], p["p95_ms"], p["max_ms"],
             "yes" if p["p95_ms"] < AIM_MS else "NO"]
            for p in pages
        ]  # fmt: skip
        sections.append(
            f"### {kind}\n\n{counts['links']:,} linked prospects, {counts['audit_lines']:,} "
            f"audit lines, {args.errors:,} errors (+5,000 pending); {args.runs} timed requests "
            f"a page over HTTP to `syncd console` in its own process.\n\n"
            + markdown_table(
                ["page", "first view ms", "median ms", "p95 ms", "max ms", "p95 < 200 ms"], rows
            )
        )
        for p in pages:
            print(f"  {p['page']:<26} median {p['median_ms']:>7} ms  p95 {p['p95_ms']:>7} ms",
                  file=sys.stderr)  # fmt: skip
    markdown = (
        "# Console page times\n\n"
        + machine_line(results["machine"])
        + "\n\n"
        + "\n\n".join(sections)
    )
    write_results("console", results, markdown, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
