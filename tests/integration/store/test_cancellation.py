"""A task cancelled inside a SQLite transaction must not leave the database locked."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

from syncd.store import NewItem, Reason, Store

from .conftest import at


async def _write_then_cancel(store: Store, i: int, delay_s: float) -> None:
    """Start a 200-item enqueue and cancel it mid-flight (the task is dropped on return)."""

    async def write() -> None:
        async with store.transaction() as tx:
            items = [NewItem.for_prospect(i * 1000 + j, Reason.PARDOT_CHANGE) for j in range(200)]
            await store.queue.enqueue(tx, items, now=at(i))

    task = asyncio.create_task(write())
    await asyncio.sleep(delay_s)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_cancelled_writers_leave_no_lock_behind(tmp_path: Path) -> None:
    # Cancelling mid-statement can leave SQLite's write lock with a driver connection nobody
    # uses any more; without the store's clean-up, later writes failed with "database is
    # locked" after about one cancel in six.
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    store = await Store.open(url, busy_timeout_ms=500, migrate=True)
    rng = random.Random(5)
    try:
        for i in range(40):
            await _write_then_cancel(store, i, rng.random() * 0.006)
            async with store.transaction() as tx:  # raises StoreError if the lock leaked
                await store.kv.set(tx, "after-cancel", i, now=at(i))
        async with store.read() as tx:
            counts = await store.queue.counts(tx, now=at(99))
        # Each cancelled enqueue committed all its items or none of them.
        assert counts.pending % 200 == 0
    finally:
        await store.aclose()
