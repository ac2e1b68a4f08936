"""Hourly activity counts for the console, settled once and kept in the store.

The Activity page counts audit lines per day and outcome over 30 days, and the overview
charts prospects synced per hour over a day. Counting a busy month of audit lines on every
view is too slow (about a second for 300,000 lines on SQLite), so each UTC hour that has
*settled* (it ended more than `SETTLE` ago: every batch that wrote lines stamped in it has
committed, since a batch holds its items for at most `sync.lease_s`) is counted once and kept
in the key-value table (`console.hours`): per hour, the lines per action and the distinct
prospects. A view then counts only the unsettled last hour or so, plus any settled hour not
counted yet (all of them, once, on the first view after an upgrade). Hours older than the
30-day window are dropped. Several consoles may count the same hour; they write the same
numbers.
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import datetime, timedelta
from typing import Any

from syncd.store import Store

KEY = "console.hours"
WINDOW = timedelta(days=31)
FMT = "%Y-%m-%d %H"


# One count at a time per store in this process: a page view waits for the warm-up's count
# instead of repeating it.
_locks: weakref.WeakKeyDictionary[Store, asyncio.Lock] = weakref.WeakKeyDictionary()


def hour_floor(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


async def hours(store: Store, *, now: datetime, settle: timedelta) -> dict[str, dict[str, Any]]:
    """Per UTC hour ('YYYY-MM-DD HH') of the last 31 days: {"a": {action: n}, "p": prospects}."""
    lock = _locks.setdefault(store, asyncio.Lock())
    async with lock:
        return await _hours(store, now=now, settle=settle)


async def _hours(store: Store, *, now: datetime, settle: timedelta) -> dict[str, dict[str, Any]]:
    start = hour_floor(now - WINDOW)
    settled_to = hour_floor(now - settle)  # hours before this one have settled
    async with store.read() as tx:
        cached = await store.kv.get(tx, KEY)
    kept: dict[str, dict[str, Any]] = {}
    if isinstance(cached, dict):
        first = start.strftime(FMT)
        kept = {h: v for h, v in cached.items() if h >= first and isinstance(v, dict)}
    missing_from = start
    while missing_from < settled_to and missing_from.strftime(FMT) in kept:
        missing_from += timedelta(hours=1)
    async with store.read() as tx:
        fresh: dict[str, dict[str, Any]] = {}
        if missing_from < settled_to:
            fresh = await _count(store, tx, missing_from, settled_to)
        live = await _count(store, tx, settled_to, None)
    pruned = isinstance(cached, dict) and len(kept) != len(cached)
    if missing_from < settled_to or pruned:
        settled = dict(kept)
        hour = missing_from
        while hour < settled_to:  # an hour with no line is settled too (as zero)
            key = hour.strftime(FMT)
            settled[key] = fresh.get(key, {"a": {}, "p": 0})
            hour += timedelta(hours=1)
        async with store.transaction() as tx:
            await store.kv.set(tx, KEY, settled, now=now)
        kept = settled
    return {**kept, **live}


async def _count(
    store: Store, tx: Any, since: datetime, until: datetime | None
) -> dict[str, dict[str, Any]]:
    actions = await store.console.activity(tx, since=since, until=until, width=13)
    prospects = await store.console.synced_per_bucket(tx, since=since, until=until, width=13)
    return {
        h: {"a": actions.get(h, {}), "p": prospects.get(h, 0)}
        for h in sorted(set(actions) | set(prospects))
    }
