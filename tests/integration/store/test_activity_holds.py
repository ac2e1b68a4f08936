"""Email Task reservations are held by one worker at a time, on both databases.

Two queue items can name the same (email, record) pair, so two workers can reach the same Task at
once. The store must let exactly one of them create it, let a crashed or unsure holder's pair be
taken over by exactly one other worker, and never hand a live hold to anyone else.
"""

from __future__ import annotations

import asyncio

from syncd.store import Store

from .conftest import at

CONTACT = "003000000000001AAA"
PAIR = (5001, CONTACT)


async def test_a_live_hold_is_not_taken_over(store: Store) -> None:
    async with store.transaction() as tx:
        assert await store.activities.reserve(tx, [PAIR], now=at(0), hold_until=at(300)) == [PAIR]
    async with store.transaction() as tx:
        # Another worker, while the holder may be creating the Task right now: hands off.
        assert await store.activities.reserve(tx, [PAIR], now=at(10), hold_until=at(310)) == []
        assert await store.activities.take_over(tx, [PAIR], now=at(10), hold_until=at(310)) == []
    async with store.transaction() as tx:
        # The holder died: after its hold, exactly one taker wins.
        assert await store.activities.take_over(tx, [PAIR], now=at(301), hold_until=at(601)) == [
            PAIR
        ]
        assert await store.activities.take_over(tx, [PAIR], now=at(302), hold_until=at(602)) == []
        [held] = (await store.activities.get(tx, [PAIR])).values()
    assert held.held_until == at(601)


async def test_let_go_hands_an_unsure_pair_to_the_next_attempt(store: Store) -> None:
    async with store.transaction() as tx:
        await store.activities.reserve(tx, [PAIR], now=at(0), hold_until=at(300))
        # The create's answer was lost: the holder lets go so the retry searches at once.
        assert await store.activities.let_go(tx, [PAIR], now=at(5)) == 1
    async with store.transaction() as tx:
        assert await store.activities.take_over(tx, [PAIR], now=at(6), hold_until=at(306)) == [PAIR]


async def test_done_pairs_are_never_taken_over(store: Store) -> None:
    async with store.transaction() as tx:
        await store.activities.reserve(tx, [PAIR], now=at(0), hold_until=at(1))
        await store.activities.mark_done(tx, [(PAIR, "00T000000000001AAA")], now=at(2))
        assert await store.activities.let_go(tx, [PAIR], now=at(3)) == 0
        assert await store.activities.take_over(tx, [PAIR], now=at(900), hold_until=at(999)) == []


async def test_two_concurrent_reservations_one_winner(db_url: str) -> None:
    """Two connections reserve the same pair at the same moment: exactly one gets it."""
    a = await Store.open(db_url, busy_timeout_ms=10_000, migrate=True)
    b = await Store.open(db_url, busy_timeout_ms=10_000)
    try:
        release = asyncio.Event()
        b_started = asyncio.Event()

        async def first() -> list[tuple[int, str]]:
            async with a.transaction() as tx:
                got = await a.activities.reserve(tx, [PAIR], now=at(0), hold_until=at(300))
                b_started.set()
                await release.wait()  # hold the transaction open while b tries
                return got

        async def second() -> list[tuple[int, str]]:
            await b_started.wait()
            async with b.transaction() as tx:
                known = await b.activities.get(tx, [PAIR])
                if known:  # a committed first (SQLite serialises writers at BEGIN)
                    return []
                return await b.activities.reserve(tx, [PAIR], now=at(1), hold_until=at(301))

        t1 = asyncio.create_task(first())
        t2 = asyncio.create_task(second())
        await b_started.wait()
        await asyncio.sleep(0.3)  # b is now blocked behind a's uncommitted row or write lock
        release.set()
        results = await asyncio.gather(t1, t2)
    finally:
        await a.aclose()
        await b.aclose()
    assert sorted(len(r) for r in results) == [0, 1]


async def test_a_batch_of_thousands_of_pairs_is_read_and_let_go(store: Store) -> None:
    """A batch of 1,000 prospects with their emails asks for thousands of pairs at once; SQLite
    refuses an OR chain that long ("Expression tree is too large"), so the store must not
    build one (found by the 50,000-prospect bench, where every batch failed until retried)."""
    pairs = [(9000 + n, f"003{n:012d}AAA") for n in range(2500)]
    async with store.transaction() as tx:
        assert len(await store.activities.reserve(tx, pairs, now=at(0), hold_until=at(300))) == 2500
    async with store.transaction() as tx:
        found = await store.activities.get(tx, pairs)
        assert set(found) == set(pairs)
        assert await store.activities.let_go(tx, pairs, now=at(5)) == 2500
