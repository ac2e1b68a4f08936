"""Poller election on the real PostgreSQL: one holder per feed, takeover when the holder goes."""

from __future__ import annotations

import asyncpg
import pytest

from syncd.runtime.leader import (
    AdvisoryLockElection,
    SoloElection,
    election_for,
    feed_lock_key,
)

pytestmark = pytest.mark.postgres
FEEDS = ["pardot.prospects", "pardot.emails", "salesforce.Lead"]


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def test_one_holder_per_feed_and_takeover_on_close(pg_url: str) -> None:
    a, b = AdvisoryLockElection(pg_url), AdvisoryLockElection(pg_url)
    try:
        assert await a.ensure(FEEDS[:2]) == frozenset(FEEDS[:2])
        # b gets only the feed a does not hold
        assert await b.ensure(FEEDS) == frozenset(FEEDS[2:])
        assert await a.ensure(FEEDS) == frozenset(FEEDS[:2])  # a keeps what it has
        await a.aclose()
        assert await b.ensure(FEEDS) == frozenset(FEEDS)
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_killed_lock_connection_frees_the_feed(pg_url: str) -> None:
    a, b = AdvisoryLockElection(pg_url), AdvisoryLockElection(pg_url)
    admin = await asyncpg.connect(_dsn(pg_url))
    try:
        assert await a.ensure(FEEDS[:1]) == frozenset(FEEDS[:1])
        assert await b.ensure(FEEDS[:1]) == frozenset()
        # the holder's connection dies (as when its process is SIGKILLed)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND classid = 1937337955 AND objid::int = $1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            feed_lock_key(FEEDS[0]),
        )
        assert killed == 1
        held_by_b: frozenset[str] = frozenset()
        for _ in range(50):  # the backend exits asynchronously
            held_by_b = await b.ensure(FEEDS[:1])
            if held_by_b:
                break
        assert held_by_b == frozenset(FEEDS[:1])
        # a notices its connection is gone, holds nothing, and does not steal the feed back
        assert await a.ensure(FEEDS[:1]) == frozenset()
        assert a.held == frozenset()
    finally:
        await admin.close()
        await a.aclose()
        await b.aclose()


async def test_unreachable_database_holds_nothing() -> None:
    election = AdvisoryLockElection("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    assert await election.ensure(FEEDS) == frozenset()
    await election.aclose()


async def test_sqlite_has_one_process_that_holds_every_feed(tmp_path: object) -> None:
    election = election_for("sqlite+aiosqlite:///syncd.db")
    assert isinstance(election, SoloElection)
    assert await election.ensure(FEEDS) == frozenset(FEEDS)


def test_lock_keys_are_stable_signed_int32() -> None:
    keys = {feed_lock_key(f) for f in FEEDS}
    assert len(keys) == len(FEEDS)
    assert all(-(2**31) <= k < 2**31 for k in keys)
    assert feed_lock_key("pardot.prospects") == feed_lock_key("pardot.prospects")
