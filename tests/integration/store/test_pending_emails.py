"""Pending emails (sent, not yet logged as Tasks) on both databases: add, read, remove logged."""

from __future__ import annotations

from syncd.store import Store
from syncd.store.pending_emails import PendingEmail

from .conftest import T0, at


def sent(n: int, pid: int = 1001) -> PendingEmail:
    return PendingEmail(id=n, prospect_id=pid, subject=f"s{n}", sent_at="2026-01-05T10:00:00Z")


async def test_add_is_idempotent_per_email_and_read_per_prospect(store: Store) -> None:
    async with store.transaction() as tx:
        await store.pending_emails.add(
            tx, {1001: [sent(1), sent(2)], 1002: [sent(3, 1002)]}, now=T0
        )
    async with store.transaction() as tx:  # the feed re-reads its overlap: no duplicates
        await store.pending_emails.add(tx, {1001: [sent(2), sent(4)]}, now=at(1))
    async with store.read() as tx:
        got = await store.pending_emails.for_prospects(tx, [1001, 1002, 1003])
    assert got == {1001: [sent(1), sent(2), sent(4)], 1002: [sent(3, 1002)]}


async def test_remove_logged_keeps_emails_added_since_the_batch_read(store: Store) -> None:
    async with store.transaction() as tx:
        await store.pending_emails.add(tx, {1001: [sent(1), sent(2)]}, now=T0)
    async with store.read() as tx:
        read = await store.pending_emails.for_prospects(tx, [1001])
    async with store.transaction() as tx:  # the feed adds one while the batch runs
        await store.pending_emails.add(tx, {1001: [sent(3)]}, now=at(1))
    logged = frozenset(e.id for e in read[1001])
    async with store.transaction() as tx:
        await store.pending_emails.remove_logged(tx, 1001, logged, now=at(2))
    async with store.read() as tx:
        assert await store.pending_emails.for_prospects(tx, [1001]) == {1001: [sent(3)]}
    async with store.transaction() as tx:  # activities off: everything goes
        await store.pending_emails.remove_logged(tx, 1001, None, now=at(3))
    async with store.read() as tx:
        assert await store.pending_emails.for_prospects(tx, [1001]) == {}


async def test_rows_written_by_the_emails_feed_before_the_repo_still_read(store: Store) -> None:
    """Existing stores keep their pending emails (same kv key and JSON shape as before)."""
    row = {"id": 9, "prospectId": 1001, "subject": "Hi", "sentAt": "2026-01-05T10:00:00Z"}
    async with store.transaction() as tx:
        await store.kv.set(tx, "emails.1001", [row], now=T0)
    async with store.read() as tx:
        got = await store.pending_emails.for_prospects(tx, [1001])
    assert got == {1001: [PendingEmail(9, 1001, "Hi", "2026-01-05T10:00:00Z")]}
