"""Poller election: each feed is polled by ONE process at a time, under a PostgreSQL advisory lock.

Every `syncd run` sharing a PostgreSQL store opens one dedicated connection (outside the
store's pool) and, before each round of polling, tries `pg_try_advisory_lock(ns, feed key)` for
every feed it does not hold yet. A session-level advisory lock stays held for as long as that
connection lives, so the process that got it keeps polling the feed; when the process dies
(crash, SIGKILL, host lost) its connection closes, PostgreSQL releases the lock, and the next
process to try takes the feed over within one poll interval. PostgreSQL is the coordinator;
syncd adds none of its own.

If the lock connection itself fails, the locks are gone with it: `ensure()` notices (a cheap
`SELECT 1` before every round), forgets every feed it held, and reconnects. Between the loss and
that check another process may start polling the same feed; that is harmless (enqueue coalesces,
a cursor re-read overlaps) and brief.

On SQLite there is one process by design and `SoloElection` holds every feed.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from syncd import logs

log = logs.get(__name__)

# First key of the two-int advisory lock form: "sync" as a big-endian int32, so syncd's locks
# are easy to spot in pg_locks (classid = 1937337955) and never collide with the migration lock.
LOCK_NAMESPACE = 0x73796E63
CONNECT_TIMEOUT_S = 10.0


def feed_lock_key(feed: str) -> int:
    """The second advisory-lock key of a feed: CRC-32 of its name as a signed int32."""
    crc = zlib.crc32(feed.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class Election(Protocol):
    """Which feeds this process polls now."""

    async def ensure(self, feeds: Iterable[str]) -> frozenset[str]:
        """Try to hold every feed in `feeds`; return the ones held (kept until `aclose`)."""
        ...

    async def aclose(self) -> None:
        """Release every feed."""
        ...


class SoloElection:
    """The single-process case (SQLite): this process holds every feed."""

    async def ensure(self, feeds: Iterable[str]) -> frozenset[str]:
        return frozenset(feeds)

    async def aclose(self) -> None:
        return None


class AdvisoryLockElection:
    """Per-feed `pg_try_advisory_lock` on one dedicated asyncpg connection."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._where = url.render_as_string(hide_password=True)
        self._conn: Any = None
        self._held: set[str] = set()

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    async def _connection(self) -> Any:
        import asyncpg

        if self._conn is not None:
            try:
                await self._conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_S)
                return self._conn
            except Exception as exc:  # any failure (asyncpg has errors outside its tree)
                if self._held:
                    log.warning(
                        "poller_locks_lost", feeds=sorted(self._held), error=type(exc).__name__
                    )
                self._held.clear()
                await self._drop()
        self._conn = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": "syncd poller election"},
        )
        return self._conn

    async def ensure(self, feeds: Iterable[str]) -> frozenset[str]:
        wanted = list(feeds)
        try:
            conn = await self._connection()
            for feed in wanted:
                if feed in self._held:
                    continue
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    LOCK_NAMESPACE,
                    feed_lock_key(feed),
                    timeout=CONNECT_TIMEOUT_S,
                )
                if got:
                    self._held.add(feed)
                    log.info("poller_lock_acquired", feed=feed)
        except Exception as exc:
            # Cannot tell which locks survive: poll nothing this round, reconnect next round.
            log.warning("poller_election_failed", database=self._where, error=type(exc).__name__)
            self._held.clear()
            await self._drop()
        return frozenset(f for f in wanted if f in self._held)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def aclose(self) -> None:
        """Close the connection; PostgreSQL releases the locks with it."""
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()


def election_for(database_url: str) -> Election:
    """Advisory locks on PostgreSQL; a single holder of everything on SQLite."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return AdvisoryLockElection(database_url)
    return SoloElection()
