"""The queue on SQLite and PostgreSQL: coalescing, claims, leases, retries and the error queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.store import Cursor, NewItem, Reason, State, Store

from .conftest import T0, at

P = Reason.PARDOT_CHANGE
C = Reason.CRM_CHANGE


async def enqueue(store: Store, *items: NewItem, now: datetime) -> None:
    async with store.transaction() as tx:
        await store.queue.enqueue(tx, items, now=now)


async def claim(store: Store, worker: str, now: datetime, limit: int = 10, lease_s: float = 60):
    return await store.run(
        lambda tx: store.queue.claim(tx, worker_id=worker, limit=limit, lease_s=lease_s, now=now)
    )


async def by_key(store: Store, key: str):
    async with store.read() as tx:
        return await store.queue.by_key(tx, key)


async def test_enqueue_coalesces_one_pending_item_per_key(store: Store) -> None:
    await enqueue(
        store, NewItem.for_prospect(1001, P, snapshot={"v": 1}, first_seen_at=at(0)), now=at(1)
    )
    await enqueue(
        store,
        NewItem.for_prospect(1001, C, crm_id="00Q000000000001AAA", first_seen_at=at(5)),
        now=at(6),
    )
    await enqueue(store, NewItem.for_prospect(1001, P, snapshot={"v": 3}), now=at(9))
    [item] = await by_key(store, "p:1001")
    assert item.state is State.PENDING
    assert item.reasons == {"pardot_change", "crm_change"}
    assert item.snapshot == {"v": 3}  # the newer snapshot replaced the older one
    assert item.first_seen_at == at(0)  # the earliest sighting is kept
    assert item.available_at == at(9)
    assert item.crm_id == "00Q000000000001AAA"  # a later item's CRM id is kept
    assert item.attempts == 0


async def test_a_change_without_snapshot_keeps_the_last_snapshot(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(7, P, snapshot={"email": "a@x.io"}), now=at(0))
    await enqueue(store, NewItem.for_prospect(7, C), now=at(1))
    [item] = await by_key(store, "p:7")
    assert item.snapshot == {"email": "a@x.io"}


async def test_duplicate_keys_in_one_batch_coalesce(store: Store) -> None:
    await enqueue(
        store,
        NewItem.for_prospect(5, P, snapshot={"v": 1}, first_seen_at=at(3)),
        NewItem.for_prospect(5, C, snapshot={"v": 2}, first_seen_at=at(1)),
        NewItem.for_crm("003000000000001AAA", C),
        NewItem.for_email("Someone+Tag@Example.com"),
        now=at(4),
    )
    [item] = await by_key(store, "p:5")
    assert item.reasons == {"pardot_change", "crm_change"}
    assert item.snapshot == {"v": 2}
    assert item.first_seen_at == at(1)
    assert len(await by_key(store, "c:003000000000001AAA")) == 1
    [by_email] = await by_key(store, "e:someone+tag@example.com")
    assert by_email.email == "Someone+Tag@Example.com"
    assert by_email.reasons == {"reprocess"}


async def test_claim_takes_due_items_oldest_first_with_a_lease(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(2, P), now=at(2))
    await enqueue(store, NewItem.for_prospect(1, P), now=at(1))
    await enqueue(store, NewItem.for_prospect(3, P), now=at(100))  # not due yet at t=10
    items = await claim(store, "w1", at(10), lease_s=30)
    assert [i.prospect_id for i in items] == [1, 2]
    assert all(i.state is State.CLAIMED and i.claimed_by == "w1" for i in items)
    assert all(i.lease_until == at(40) and i.attempts == 1 for i in items)
    assert await claim(store, "w2", at(10)) == []  # nothing else due
    assert [i.prospect_id for i in await claim(store, "w2", at(100))] == [3]


async def test_claim_respects_the_limit(store: Store) -> None:
    await enqueue(store, *(NewItem.for_prospect(i, P) for i in range(25)), now=at(0))
    first = await claim(store, "w1", at(1), limit=10)
    second = await claim(store, "w2", at(1), limit=10)
    third = await claim(store, "w3", at(1), limit=10)
    ids = [i.id for i in first + second + third]
    assert (len(first), len(second), len(third)) == (10, 10, 5)
    assert len(set(ids)) == 25


async def test_enqueue_while_claimed_waits_for_the_first_to_complete(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(9, P, snapshot={"v": 1}), now=at(0))
    [held] = await claim(store, "w1", at(1))
    await enqueue(store, NewItem.for_prospect(9, C, snapshot={"v": 2}), now=at(2))
    items = await by_key(store, "p:9")
    assert [(i.state, i.snapshot) for i in items] == [
        (State.CLAIMED, {"v": 1}),
        (State.PENDING, {"v": 2}),
    ]
    assert await claim(store, "w2", at(3)) == []  # the same prospect is never held twice
    async with store.transaction() as tx:
        assert await store.queue.complete(tx, [held.id], worker_id="w1") == [held.id]
    [follower] = await claim(store, "w2", at(4))
    assert follower.snapshot == {"v": 2} and follower.reasons == {"crm_change"}


async def test_only_the_lease_holder_completes(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(1, P), now=at(0))
    [item] = await claim(store, "w1", at(1))
    async with store.transaction() as tx:
        assert await store.queue.complete(tx, [item.id], worker_id="intruder") == []
        assert (
            await store.queue.retry(
                tx,
                [item.id],
                worker_id="intruder",
                available_at=at(5),
                code="X",
                message="x",
                now=at(2),
            )
            == []
        )
        assert await store.queue.complete(tx, [item.id], worker_id="w1") == [item.id]
        assert await store.queue.get(tx, item.id) is None


async def test_retry_backs_off_and_counts_attempts(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(1, P), now=at(0))
    [item] = await claim(store, "w1", at(1))
    async with store.transaction() as tx:
        done = await store.queue.retry(
            tx,
            [item.id],
            worker_id="w1",
            available_at=at(61),
            code="HTTP_503",
            message="Salesforce unavailable",
            now=at(1),
        )
    assert done == [item.id]
    [back] = await by_key(store, "p:1")
    assert (back.id, back.state, back.attempts) == (item.id, State.PENDING, 1)
    assert back.available_at == at(61)
    assert (back.last_error_code, back.last_error_message) == ("HTTP_503", "Salesforce unavailable")
    assert await claim(store, "w1", at(60)) == []  # still backing off
    [again] = await claim(store, "w1", at(61))
    assert again.attempts == 2


async def test_retry_merges_into_a_newer_pending_item(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(1, P, first_seen_at=at(0)), now=at(0))
    [item] = await claim(store, "w1", at(1))
    await enqueue(store, NewItem.for_prospect(1, C, snapshot={"v": 2}), now=at(2))
    async with store.transaction() as tx:
        await store.queue.retry(
            tx,
            [item.id],
            worker_id="w1",
            available_at=at(30),
            code="TIMEOUT",
            message="timed out",
            now=at(3),
        )
    [merged] = await by_key(store, "p:1")
    assert merged.state is State.PENDING
    assert merged.reasons == {"pardot_change", "crm_change"}
    assert merged.snapshot == {"v": 2}
    assert merged.first_seen_at == at(0)
    assert merged.available_at == at(30)  # the backoff is kept
    assert merged.attempts == 1
    assert merged.last_error_code == "TIMEOUT"


async def test_fail_moves_to_the_error_queue_and_a_change_revives_it(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(1, P, snapshot={"v": 1}), now=at(0))
    [item] = await claim(store, "w1", at(1))
    async with store.transaction() as tx:
        await store.queue.fail(
            tx,
            [item.id],
            worker_id="w1",
            code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
            message="Phone is invalid",
            now=at(2),
        )
        [err] = await store.queue.errors(tx)
    assert (err.id, err.state, err.last_error_code) == (
        item.id,
        State.ERROR,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    )
    assert err.first_failed_at == at(2) and err.last_failed_at == at(2)
    assert await claim(store, "w1", at(100)) == []  # error items are never claimed

    # The prospect changes again: the error item is revived (RULES 7), attempts reset.
    await enqueue(store, NewItem.for_prospect(1, P, snapshot={"v": 2}), now=at(200))
    [revived] = await by_key(store, "p:1")
    assert (revived.id, revived.state, revived.attempts) == (item.id, State.PENDING, 0)
    assert revived.snapshot == {"v": 2}
    [again] = await claim(store, "w1", at(200))
    async with store.transaction() as tx:
        await store.queue.fail(tx, [again.id], worker_id="w1", code="E2", message="m", now=at(300))
        [err2] = await store.queue.errors(tx)
    assert err2.first_failed_at == at(2) and err2.last_failed_at == at(300)
    assert err2.last_error_code == "E2"


async def test_fail_while_changed_keeps_the_change_pending(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(1, P), now=at(0))
    [item] = await claim(store, "w1", at(1))
    await enqueue(store, NewItem.for_prospect(1, C), now=at(2))
    async with store.transaction() as tx:
        await store.queue.fail(tx, [item.id], worker_id="w1", code="E", message="m", now=at(3))
    [merged] = await by_key(store, "p:1")
    assert merged.state is State.PENDING  # the newer change is the retry
    assert merged.last_error_code == "E"


async def test_errors_retry_revives_error_items(store: Store) -> None:
    await enqueue(store, *(NewItem.for_prospect(i, P) for i in (1, 2, 3)), now=at(0))
    items = await claim(store, "w1", at(1))
    async with store.transaction() as tx:
        await store.queue.fail(
            tx, [i.id for i in items], worker_id="w1", code="E", message="m", now=at(2)
        )
    async with store.transaction() as tx:
        assert await store.queue.retry_errors(tx, [items[0].id], now=at(3)) == [items[0].id]
        assert len(await store.queue.errors(tx)) == 2
        assert sorted(await store.queue.retry_errors(tx, None, now=at(4))) == sorted(
            i.id for i in items[1:]
        )
        assert await store.queue.errors(tx) == []
    again = await claim(store, "w1", at(5))
    assert len(again) == 3
    assert all("reprocess" in i.reasons for i in again)


async def test_release_gives_items_back_without_counting(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(1, P), now=at(0))
    [item] = await claim(store, "w1", at(1))
    async with store.transaction() as tx:
        assert await store.queue.release(tx, [item.id], worker_id="w1", now=at(2)) == [item.id]
    [back] = await by_key(store, "p:1")
    assert (back.state, back.attempts, back.available_at) == (State.PENDING, 0, at(2))
    assert back.claimed_by is None and back.lease_until is None


async def test_reap_returns_expired_leases(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(1, P), NewItem.for_prospect(2, P), now=at(0))
    [a] = await claim(store, "w1", at(1), limit=1, lease_s=10)
    [b] = await claim(store, "w2", at(5), limit=1, lease_s=10)
    async with store.transaction() as tx:
        assert await store.queue.reap(tx, now=at(11)) == []  # a's lease ends at t=11, not before
        assert await store.queue.reap(tx, now=at(12)) == [a.id]
        counts = await store.queue.counts(tx, now=at(12))
    assert (counts.pending, counts.claimed) == (1, 1)
    async with store.transaction() as tx:  # the dead worker cannot complete it any more
        assert await store.queue.complete(tx, [a.id], worker_id="w1") == []
    [again] = await claim(store, "w3", at(13))
    assert (again.id, again.attempts) == (a.id, 2)
    assert b.id != again.id


async def test_reap_parks_items_that_keep_killing_workers(store: Store) -> None:
    await enqueue(store, NewItem.for_prospect(1, P), now=at(0))
    t = 0.0
    for _ in range(3):
        t += 1
        await claim(store, "w", at(t), lease_s=1)
        t += 2
        async with store.transaction() as tx:
            await store.queue.reap(tx, now=at(t), max_attempts=3)
    async with store.read() as tx:
        [err] = await store.queue.errors(tx)
    assert (err.state, err.attempts, err.last_error_code) == (State.ERROR, 3, "LEASE_EXPIRED")


async def test_reprocess_by_id_in_any_state(store: Store) -> None:
    await enqueue(store, *(NewItem.for_prospect(i, P) for i in (1, 2, 3)), now=at(0))
    one, two, three = await claim(store, "w1", at(1))
    async with store.transaction() as tx:
        await store.queue.fail(tx, [one.id], worker_id="w1", code="E", message="m", now=at(2))
        await store.queue.retry(
            tx,
            [two.id],
            worker_id="w1",
            available_at=at(1000),
            code="T",
            message="t",
            now=at(2),
        )
        found = await store.queue.reprocess(tx, [one.id, two.id, three.id, 999_999], now=at(3))
    assert found == sorted([one.id, two.id, three.id])  # 999999 is unknown
    assert [(i.state, i.available_at) for i in await by_key(store, "p:1")] == [
        (State.PENDING, at(3))
    ]
    assert [(i.state, i.available_at) for i in await by_key(store, "p:2")] == [
        (State.PENDING, at(3))
    ]
    # p:3 is still held by w1: reprocessing queues a follower behind it.
    assert [i.state for i in await by_key(store, "p:3")] == [State.CLAIMED, State.PENDING]


async def test_counts_for_status(store: Store) -> None:
    await enqueue(
        store,
        NewItem.for_prospect(1, P, first_seen_at=at(-50)),
        NewItem.for_prospect(2, P),
        NewItem.for_prospect(3, P),
        now=at(0),
    )
    await enqueue(store, NewItem.for_prospect(4, P), now=at(20))
    [held] = await claim(store, "w1", at(1), limit=1, lease_s=5)
    assert held.prospect_id == 1
    [failed] = await claim(store, "w2", at(1), limit=1)
    async with store.transaction() as tx:
        await store.queue.fail(tx, [failed.id], worker_id="w2", code="E", message="m", now=at(2))
        counts = await store.queue.counts(tx, now=at(10))
    assert (counts.pending, counts.due, counts.claimed, counts.error) == (2, 1, 1, 1)
    assert counts.expired_leases == 1
    assert counts.oldest_pending_first_seen_at == at(0)
    assert counts.oldest_due_available_at == at(0)


async def test_empty_queue_counts(store: Store) -> None:
    async with store.read() as tx:
        counts = await store.queue.counts(tx, now=T0)
    assert (counts.pending, counts.claimed, counts.error) == (0, 0, 0)
    assert counts.oldest_pending_first_seen_at is None


class Boom(Exception):
    pass


async def test_cursor_and_enqueue_are_atomic(store: Store) -> None:
    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await store.queue.enqueue(tx, [NewItem.for_prospect(1, P)], now=at(0))
            await store.cursors.save(tx, "pardot.prospects", Cursor(position=at(0)), now=at(0))
            raise Boom
    async with store.read() as tx:
        assert await store.cursors.get(tx, "pardot.prospects") is None
        assert (await store.queue.counts(tx, now=at(1))).pending == 0
    async with store.transaction() as tx:
        await store.queue.enqueue(tx, [NewItem.for_prospect(1, P)], now=at(0))
        await store.cursors.save(
            tx, "pardot.prospects", Cursor(position=at(0), last_id="1001"), now=at(0)
        )
    async with store.read() as tx:
        cursor = await store.cursors.get(tx, "pardot.prospects")
        assert cursor is not None and cursor.last_id == "1001" and cursor.position == at(0)
        assert (await store.queue.counts(tx, now=at(1))).pending == 1


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        async with store.transaction() as tx:
            await store.queue.enqueue(tx, [NewItem.for_prospect(1, P)], now=datetime(2026, 1, 1))


async def test_datetimes_come_back_aware_utc(store: Store) -> None:
    from zoneinfo import ZoneInfo

    paris = datetime(2026, 7, 1, 14, 0, tzinfo=ZoneInfo("Europe/Paris"))
    await enqueue(store, NewItem.for_prospect(1, P, first_seen_at=paris), now=paris)
    [item] = await by_key(store, "p:1")
    assert item.first_seen_at.tzinfo is UTC
    assert item.first_seen_at == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert item.available_at - timedelta(hours=0) == paris
