"""A claimer process for the concurrency and crash tests (run as a script, not collected).

usage: python _claimer.py URL WORKER_ID BATCH LEASE_S MODE
MODE "drain": claim batches until none is due, recording each claim in `claim_log` in the
claim's own transaction, then complete them. MODE "hold": claim one batch, print the ids as one
JSON line, then sleep until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

from sqlalchemy import text

from syncd.store import Store


async def drain(store: Store, worker: str, batch: int, lease_s: float) -> int:
    claimed = 0
    empty_rounds = 0
    while empty_rounds < 3:  # SKIP LOCKED may briefly hide rows another claimer is taking
        async with store.transaction() as tx:
            items = await store.queue.claim(
                tx, worker_id=worker, limit=batch, lease_s=lease_s, now=datetime.now(UTC)
            )
            if items:
                await tx.execute(
                    text("INSERT INTO claim_log (item_id, worker) VALUES (:i, :w)"),
                    [{"i": item.id, "w": worker} for item in items],
                )
        if not items:
            empty_rounds += 1
            await asyncio.sleep(0.05)
            continue
        empty_rounds = 0
        claimed += len(items)
        async with store.transaction() as tx:
            done = await store.queue.complete(tx, [i.id for i in items], worker_id=worker)
        assert len(done) == len(items), "lost a lease while holding it"
    return claimed


async def main() -> None:
    url, worker, batch, lease_s, mode = sys.argv[1:6]
    store = await Store.open(url, busy_timeout_ms=30_000)
    try:
        if mode == "drain":
            n = await drain(store, worker, int(batch), float(lease_s))
            print(json.dumps({"worker": worker, "claimed": n}), flush=True)
        else:
            items = await store.run(
                lambda tx: store.queue.claim(
                    tx,
                    worker_id=worker,
                    limit=int(batch),
                    lease_s=float(lease_s),
                    now=datetime.now(UTC),
                )
            )
            print(json.dumps([i.id for i in items]), flush=True)
            await asyncio.sleep(3600)
    finally:
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
