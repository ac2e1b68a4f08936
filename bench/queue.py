"""Queue benchmark: enqueue and claim+complete throughput on SQLite and PostgreSQL.

Run: `.venv/bin/python -m bench.queue [--items N] [--skip-postgres]`. PostgreSQL comes from
SYNCD_TEST_POSTGRES_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test); a scratch
database is created beside it and dropped afterwards. Figures, not assertions.

Measures, per database:
- enqueue: items/s, 1,000 items (with a prospect-sized snapshot) per transaction;
- claim+complete: items/s for one claimer taking batches of 200 (claim in one transaction,
  complete in the next, as a worker does);
- the same with concurrent claimer processes (4 on PostgreSQL, 2 on SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from syncd.store import NewItem, Reason, Store

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
ENQUEUE_BATCH = 1_000
CLAIM_BATCH = 200


def snapshot(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "email": f"person{i}@example.com",
        "firstName": "Ada",
        "lastName": f"Lovelace{i}",
        "company": "Analytical Engines Ltd",
        "jobTitle": "Engineer",
        "phone": "+44 20 7946 0000",
        "score": i % 100,
        "userId": 1 + i % 7,
        "updatedAt": "2026-01-05T10:00:00.000-05:00",
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def enqueue_all(store: Store, n: int) -> float:
    now = datetime.now(UTC)
    start = time.perf_counter()
    for base in range(0, n, ENQUEUE_BATCH):
        batch = [
            NewItem.for_prospect(i, Reason.PARDOT_CHANGE, snapshot=snapshot(i))
            for i in range(base, min(n, base + ENQUEUE_BATCH))
        ]
        async with store.transaction() as tx:
            await store.queue.enqueue(tx, batch, now=now)
    return n / (time.perf_counter() - start)


async def drain(store: Store, worker: str) -> int:
    done = 0
    idle = 0
    while idle < 3:
        now = datetime.now(UTC)
        async with store.transaction() as tx:
            items = await store.queue.claim(
                tx, worker_id=worker, limit=CLAIM_BATCH, lease_s=300, now=now
            )
        if not items:
            idle += 1
            await asyncio.sleep(0.01)
            continue
        idle = 0
        async with store.transaction() as tx:
            done += len(await store.queue.complete(tx, [i.id for i in items], worker_id=worker))
    return done


def _claimer_process(url: str, worker: str, ready: Any, go: Any, results: Any) -> None:
    async def main() -> None:
        store = await Store.open(url, busy_timeout_ms=60_000)
        try:
            async with store.read() as tx:  # connect before the clock starts
                await store.queue.counts(tx, now=datetime.now(UTC))
            ready.release()
            go.wait()
            results.put(await drain(store, worker))
        finally:
            await store.aclose()

    asyncio.run(main())


def parallel_claim(url: str, workers: int, n: int) -> float:
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_claimer_process, args=(url, f"p{k}", ready, go, results))
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    start = time.perf_counter()
    go.set()
    total = sum(results.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    if total != n:
        raise RuntimeError(f"claimed {total} of {n} items")
    return n / elapsed


async def bench_one(label: str, url: str, n: int, workers: int) -> dict[str, float]:
    store = await Store.open(url, busy_timeout_ms=60_000, migrate=True)
    try:
        enq = await enqueue_all(store, n)
        start = time.perf_counter()
        claimed = await drain(store, "solo")
        single = claimed / (time.perf_counter() - start)
        if claimed != n:
            raise RuntimeError(f"{label}: claimed {claimed} of {n}")
        await enqueue_all(store, n)
    finally:
        await store.aclose()
    multi = parallel_claim(url, workers, n)
    return {"enqueue": enq, "claim1": single, "claimN": multi}


async def pg_scratch(admin: str) -> tuple[str, str]:
    name = f"syncd_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin.replace("postgresql+asyncpg", "postgresql"))
    try:
        version = await conn.fetchval("SHOW server_version")
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{admin.rpartition('/')[0]}/{name}", str(version)


async def pg_drop(admin: str, url: str) -> None:
    conn = await asyncpg.connect(admin.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    admin = os.environ.get("SYNCD_TEST_POSTGRES_URL", DEFAULT_PG)

    pg_version = "not measured"
    pg_url = None
    if not args.skip_postgres:
        pg_url, pg_version = asyncio.run(pg_scratch(admin))
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"SQLite {sqlite3.sqlite_version}; PostgreSQL {pg_version}"
    )
    print(
        f"{args.items} items; enqueue in batches of {ENQUEUE_BATCH}, claim+complete in batches "
        f"of {CLAIM_BATCH}"
    )
    rows: list[tuple[str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        rows.append(("sqlite", 2, asyncio.run(bench_one("sqlite", url, args.items, 2))))
    if pg_url is not None:
        try:
            rows.append(("postgresql", 4, asyncio.run(bench_one("pg", pg_url, args.items, 4))))
        finally:
            asyncio.run(pg_drop(admin, pg_url))
    head = ("database", "enqueue/s", "claim+complete/s", "N procs", "claim+complete/s")
    print(f"{head[0]:<12}{head[1]:>12}{head[2]:>20}{head[3]:>9}{head[4]:>20}")
    for label, workers, r in rows:
        print(
            f"{label:<12}{r['enqueue']:>12,.0f}{r['claim1']:>20,.0f}{workers:>9}{r['claimN']:>20,.0f}"
        )


if __name__ == "__main__":
    main()
