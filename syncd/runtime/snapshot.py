"""What the store says about the sync right now: queue, feeds, API usage, processes.

One read transaction gathers it; `syncd status` prints it, `syncd check` judges it, and the
daemon's `/metrics` and `/readyz` turn it into gauges and reasons. No API is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.store import Cursor, Heartbeat, OrgUsage, QueueCounts, Store
from syncd.store import migrate as migrations

SYSTEMS = ("salesforce", "pardot")
RUN_ROLE = "run"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedState:
    """A change feed's cursor and when it was last polled successfully."""

    feed: str
    position: datetime
    last_id: str | None
    last_poll_at: datetime | None

    def lag_s(self, now: datetime) -> float:
        """Seconds since the last successful poll (the cursor's age when never recorded)."""
        since = self.last_poll_at or self.position
        return max(0.0, (now - since).total_seconds())


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The store's view of the sync at `now`."""

    now: datetime
    schema_current: str | None
    schema_head: str
    queue: QueueCounts
    feeds: list[FeedState]
    own_calls_24h: dict[str, int]
    org_usage: dict[str, OrgUsage | None]
    processes: list[Heartbeat]
    stale_s: float

    @property
    def migrated(self) -> bool:
        return self.schema_current == self.schema_head

    def oldest_pending_age_s(self) -> float | None:
        """Age of the oldest due pending item (since it became due), or None when none is due."""
        at = self.queue.oldest_due_available_at
        return None if at is None else max(0.0, (self.now - at).total_seconds())

    def oldest_change_age_s(self) -> float | None:
        """Age of the oldest pending change (since it was first seen), or None."""
        at = self.queue.oldest_pending_first_seen_at
        return None if at is None else max(0.0, (self.now - at).total_seconds())

    def live(self, role: str | None = RUN_ROLE) -> list[Heartbeat]:
        """Processes whose heartbeat is younger than `stale_s` (of `role`, when given)."""
        return [
            h
            for h in self.processes
            if (role is None or h.role == role)
            and (self.now - h.last_beat_at).total_seconds() <= self.stale_s
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601, ages in seconds)."""
        q = self.queue
        live = {h.process_id for h in self.live(role=None)}
        return {
            "now": _iso(self.now),
            "schema": {
                "current": self.schema_current,
                "head": self.schema_head,
                "migrated": self.migrated,
            },
            "queue": {
                "pending": q.pending,
                "due": q.due,
                "claimed": q.claimed,
                "error": q.error,
                "expired_leases": q.expired_leases,
                "oldest_pending_age_s": _round(self.oldest_pending_age_s()),
                "oldest_change_age_s": _round(self.oldest_change_age_s()),
            },
            "feeds": [
                {
                    "feed": f.feed,
                    "cursor": _iso(f.position),
                    "cursor_last_id": f.last_id,
                    "last_poll_at": _iso(f.last_poll_at),
                    "lag_s": _round(f.lag_s(self.now)),
                }
                for f in self.feeds
            ],
            "processes": [
                {
                    "process_id": h.process_id,
                    "host": h.host,
                    "pid": h.pid,
                    "role": h.role,
                    "started_at": _iso(h.started_at),
                    "last_beat_at": _iso(h.last_beat_at),
                    "age_s": _round((self.now - h.last_beat_at).total_seconds()),
                    "live": h.process_id in live,
                }
                for h in self.processes
            ],
        }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def read_snapshot(store: Store, *, now: datetime, stale_s: float) -> Snapshot:
    """Read the snapshot in one read transaction (raises `StoreError` when unreachable)."""
    async with store.read() as tx:
        current = await migrations.current_on(tx)
        counts = await store.queue.counts(tx, now=now)
        cursors: dict[str, Cursor] = await store.cursors.all(tx)
        own = {s: await store.usage.last_24h(tx, s, now=now) for s in SYSTEMS}
        org = {s: await store.usage.org(tx, s) for s in SYSTEMS}
        processes = await store.heartbeats.all(tx)
    feeds = [
        FeedState(feed=name, position=c.position, last_id=c.last_id, last_poll_at=c.updated_at)
        for name, c in sorted(cursors.items())
    ]
    return Snapshot(
        now=now,
        schema_current=current,
        schema_head=migrations.head(),
        queue=counts,
        feeds=feeds,
        own_calls_24h=own,
        org_usage=org,
        processes=processes,
        stale_s=stale_s,
    )
