"""Concurrent claimers never share an item; a killed claimer's items come back after the lease.

Real OS processes against one database: four on PostgreSQL (SKIP LOCKED), two on SQLite
(BEGIN IMMEDIATE). Each records its claims in `claim_log` inside the claim's transaction, so
the log is exactly what was committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from syncd.store import NewItem, Reason, Store

from .conftest import T0

CLAIMER = Path(__file__).with_name("_claimer.py")


async def fill(store: Store, n: int) -> None:
    async with store.transaction() as tx:
        await tx.execute(text("CREATE TABLE claim_log (item_id BIGINT NOT NULL, worker TEXT)"))
        for start in range(0, n, 1000):
            await store.queue.enqueue(
                tx,
                [
                    NewItem.for_prospect(i, Reason.PARDOT_CHANGE)
                    for i in range(start, min(n, start + 1000))
                ],
                now=T0,
            )


def spawn(url: str, worker: str, batch: int, lease_s: float, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CLAIMER), url, worker, str(batch), str(lease_s), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


async def run_claimers(url: str, workers: int, batch: int) -> list[dict[str, object]]:
    procs = [spawn(url, f"w{k}", batch, 300, "drain") for k in range(workers)]
    results = []
    for proc in procs:
        out, err = await asyncio.to_thread(proc.communicate, timeout=240)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


async def check_exactly_once(store: Store, n: int) -> dict[str, int]:
    async with store.read() as tx:
        total, distinct = (
            await tx.execute(text("SELECT count(*), count(DISTINCT item_id) FROM claim_log"))
        ).one()
        per_worker = dict(
            (await tx.execute(text("SELECT worker, count(*) FROM claim_log GROUP BY worker"))).all()
        )
        counts = await store.queue.counts(tx, now=datetime.now(UTC))
    assert (total, distinct) == (n, n)  # every item claimed, none twice
    assert (counts.pending, counts.claimed, counts.error) == (0, 0, 0)
    return per_worker


@pytest.mark.postgres
async def test_four_processes_claim_10000_items_exactly_once_on_postgres(pg_url: str) -> None:
    n = 10_000
    store = await Store.open(pg_url, migrate=True)
    try:
        await fill(store, n)
        results = await run_claimers(pg_url, workers=4, batch=50)
        per_worker = await check_exactly_once(store, n)
    finally:
        await store.aclose()
    assert sum(int(r["claimed"]) for r in results) == n  # type: ignore[call-overload]
    assert len(per_worker) >= 2, f"the claimers did not overlap: {per_worker}"


async def test_two_processes_claim_exactly_once_on_sqlite(sqlite_url: str) -> None:
    n = 3_000
    store = await Store.open(sqlite_url, migrate=True)
    try:
        await fill(store, n)
        results = await run_claimers(sqlite_url, workers=2, batch=25)
        await check_exactly_once(store, n)
    finally:
        await store.aclose()
    assert sum(int(r["claimed"]) for r in results) == n  # type: ignore[call-overload]


async def test_concurrent_tasks_in_one_process_never_share_an_item(db_url: str) -> None:
    store = await Store.open(db_url, migrate=True)
    n = 600
    try:
        async with store.transaction() as tx:
            await store.queue.enqueue(
                tx, [NewItem.for_prospect(i, Reason.CRM_CHANGE) for i in range(n)], now=T0
            )

        async def worker(name: str) -> list[int]:
            got: list[int] = []
            while True:
                items = await store.run(
                    lambda tx: store.queue.claim(tx, worker_id=name, limit=20, lease_s=60, now=T0)
                )
                if not items:
                    return got
                got.extend(i.id for i in items)

        claimed = await asyncio.gather(*(worker(f"t{k}") for k in range(4)))
    finally:
        await store.aclose()
    flat = [i for ids in claimed for i in ids]
    assert len(flat) == n and len(set(flat)) == n


async def test_items_of_a_killed_claimer_are_claimed_again_after_the_lease(db_url: str) -> None:
    store = await Store.open(db_url, migrate=True)
    try:
        now = datetime.now(UTC)
        async with store.transaction() as tx:
            await store.queue.enqueue(
                tx, [NewItem.for_prospect(i, Reason.PARDOT_CHANGE) for i in range(30)], now=now
            )
        victim = spawn(db_url, "victim", 10, 1.0, "hold")
        assert victim.stdout is not None
        line = await asyncio.to_thread(victim.stdout.readline)
        held = set(json.loads(line))
        assert len(held) == 10
        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait, 30)

        # Real time passes; reap and claim in a bounded loop until the held items come back.
        seen: set[int] = set()
        for _ in range(200):
            t = datetime.now(UTC)
            async with store.transaction() as tx:
                await store.queue.reap(tx, now=t)
                items = await store.queue.claim(
                    tx, worker_id="rescuer", limit=100, lease_s=60, now=t
                )
                await store.queue.complete(tx, [i.id for i in items], worker_id="rescuer")
            seen.update(i.id for i in items)
            if held <= seen:
                break
            await asyncio.sleep(0.1)
        assert held <= seen
        assert len(seen) == 30  # the other 20 were claimed too, each once
        async with store.read() as tx:
            counts = await store.queue.counts(tx, now=datetime.now(UTC))
        assert (counts.pending, counts.claimed) == (0, 0)
    finally:
        if victim.poll() is None:
            victim.kill()
        await store.aclose()
