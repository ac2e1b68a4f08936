"""A batch's store writes are a few statements, not one round trip per prospect, on both
databases: email Task reservations, their completion and release, pending emails read and
removed. Counted with SQLAlchemy's `before_cursor_execute` event (an executemany counts once)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from syncd.store import Store
from syncd.store.pending_emails import PendingEmail

from .conftest import at

N = 60  # prospects (or email pairs) in the batch


def contact(n: int) -> str:
    return f"003{n:012d}AAA"


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: object, cursor: object, stmt: str, *args: object) -> None:
        if not stmt.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT")):
            seen.append(stmt)

    sync_engine = store.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(sync_engine, "before_cursor_execute", count)


async def test_task_reservations_of_a_batch_are_a_few_statements(store: Store) -> None:
    pairs = [(5000 + n, contact(n)) for n in range(N)]
    async with store.transaction() as tx:  # another worker holds the first ten already
        await store.activities.reserve(tx, pairs[:10], now=at(0), hold_until=at(300))
    with statements(store) as seen:
        async with store.transaction() as tx:
            mine = await store.activities.reserve(tx, pairs, now=at(1), hold_until=at(301))
    assert mine == sorted(pairs[10:])  # RETURNING names only the rows inserted here
    assert len(seen) <= 2, seen

    done = [(pair, f"00T{n:012d}AAA") for n, pair in enumerate(pairs[10:40])]
    with statements(store) as seen:
        async with store.transaction() as tx:
            assert await store.activities.mark_done(tx, done, now=at(2)) == 30
            assert await store.activities.release(tx, pairs[40:]) == 20
            # the first ten, held by the other worker until 300: taken over after it
            taken = await store.activities.take_over(
                tx, pairs[:10], now=at(400), hold_until=at(700)
            )
    assert taken == sorted(pairs[:10])
    assert len(seen) <= 4, seen
    async with store.read() as tx:
        got = await store.activities.get(tx, pairs)
    assert {k for k, a in got.items() if a.state == "done"} == {p for p, _ in done}
    assert got[pairs[10]].task_id == "00T000000000000AAA"
    assert all(p not in got for p in pairs[40:])  # released: a later attempt reserves again


def sent(n: int, pid: int) -> PendingEmail:
    return PendingEmail(id=n, prospect_id=pid, subject=f"s{n}", sent_at="2026-01-05T10:00:00Z")


async def test_pending_emails_of_a_batch_are_a_few_statements(store: Store) -> None:
    pids = list(range(1001, 1001 + N))
    with statements(store) as seen:
        async with store.transaction() as tx:  # one page of the emails feed
            await store.pending_emails.add(
                tx, {pid: [sent(2 * pid, pid), sent(2 * pid + 1, pid)] for pid in pids}, now=at(0)
            )
    assert len(seen) <= 2, seen
    with statements(store) as seen:
        async with store.read() as tx:
            read = await store.pending_emails.for_prospects(tx, pids)
    assert len(seen) == 1, seen
    assert read[1001] == [sent(2002, 1001), sent(2003, 1001)]
    # Settle: half the prospects logged both emails, a quarter one, the rest (activities
    # off) drop all; one email arrived for 1001 meanwhile and must stay.
    async with store.transaction() as tx:
        await store.pending_emails.add(tx, {1001: [sent(9, 1001)]}, now=at(1))
    logged: dict[int, frozenset[int] | None] = {}
    for i, pid in enumerate(pids):
        if i < N // 2:
            logged[pid] = frozenset({2 * pid, 2 * pid + 1})
        elif i < 3 * N // 4:
            logged[pid] = frozenset({2 * pid})
        else:
            logged[pid] = None
    with statements(store) as seen:
        async with store.transaction() as tx:
            await store.pending_emails.remove_logged_many(tx, logged, now=at(2))
    assert len(seen) <= 3, seen
    async with store.read() as tx:
        left = await store.pending_emails.for_prospects(tx, pids)
    assert left == {1001: [sent(9, 1001)]} | {
        pid: [sent(2 * pid + 1, pid)] for pid in pids[N // 2 : 3 * N // 4]
    }
