"""One prospect is synced by one worker at a time, whichever key its queue items carry.

Queue items are keyed `p:<prospect>` or, for a CRM record with no known prospect when it was
polled, `c:<record>`; the claim keeps two workers off one KEY. A `c:` item whose record turned
out to be linked must therefore not sync the prospect itself (another worker may hold `p:`
right now: the 10,000-prospect soak logged one email as two Tasks that way); it hands the work
to the prospect's key instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from integration.pipeline.conftest import MakeSync, base_seed
from syncd.runtime.pollers import Pollers, PollStats
from syncd.runtime.signals import Stop
from syncd.runtime.wiring import build_runtime
from syncd.runtime.worker import Worker
from syncd.store import NewItem, Reason, State, prospect_key


async def test_crm_keyed_item_of_a_linked_record_defers_to_the_prospect_key(
    make_sync: MakeSync,
) -> None:
    seed = base_seed()
    seed["pardot"]["prospects"] = [{"id": 1, "email": "p@example.com", "userId": 2}]
    s = make_sync(seed)
    assert await s.once() == 0
    (lead,) = s.leads("p@example.com")

    # Changes on both sides: a new email to log and a new title to copy.
    s.pd.add_email({"prospectId": 1, "subject": "Hello", "sentAt": "2026-01-05T10:00:00Z"})
    s.pd.edit_prospect(1, {"jobTitle": "Engineer"})
    rt = await build_runtime(s.settings, transports=s.world.transports(), clock=s.clock)
    try:
        now = datetime.now(UTC)
        async with rt.store.transaction() as tx:
            await rt.store.queue.enqueue(
                tx, [NewItem.for_prospect(1, Reason.PARDOT_CHANGE)], now=now
            )
        # worker A holds the prospect's item ...
        held = await rt.store.run(
            lambda tx: rt.store.queue.claim(tx, worker_id="A", limit=10, lease_s=300, now=now)
        )
        assert [i.key for i in held] == [prospect_key(1)]
        async with rt.store.transaction() as tx:
            await rt.store.queue.enqueue(
                tx, [NewItem.for_crm(lead["Id"], Reason.CRM_CHANGE)], now=now
            )
        # ... while worker B claims the record's item: B must not sync prospect 1 itself.
        writes = s.api_writes()
        assert await Worker(rt, worker_id="B", stop=Stop(), burst=True).batch() == 1
        assert s.api_writes() == writes, "worker B wrote while worker A held the prospect"
        async with rt.store.read() as tx:
            items = await rt.store.queue.by_key(tx, prospect_key(1))
        assert sorted(i.state for i in items) == [State.CLAIMED, State.PENDING]

        # Worker A's batch (and then the handed-over item) syncs it, once.
        await rt.store.run(
            lambda tx: rt.store.queue.release(tx, [held[0].id], worker_id="A", now=now)
        )
    finally:
        await rt.aclose()
    assert await s.once() == 0
    assert s.sf.get("Lead", lead["Id"])["Title"] == "Engineer"
    assert len(s.tasks(lead["Id"])) == 1


async def test_an_email_polled_while_its_prospect_syncs_is_still_logged(
    make_sync: MakeSync,
) -> None:
    """The emails feed adds E2 to a prospect's pending emails while a worker logs E1: the
    worker's settle must remove only what it logged (the PostgreSQL soak lost one Task so)."""
    seed = base_seed()
    seed["pardot"]["prospects"] = [{"id": 1, "email": "p@example.com", "userId": 2}]
    s = make_sync(seed)
    assert await s.once() == 0
    (lead,) = s.leads("p@example.com")
    s.pd.add_email({"prospectId": 1, "subject": "First", "sentAt": "2026-01-05T10:00:00Z"})

    poller_rt = await build_runtime(s.settings, transports=s.world.transports(), clock=s.clock)
    real = s.sf.app
    fired: list[int] = []

    async def mid_batch(scope: Any, receive: Any, send: Any) -> None:
        # the first Task create: the worker has loaded the prospect's emails and not settled
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/composite/sobjects")
            and not fired
        ):
            fired.append(1)
            s.pd.add_email({"prospectId": 1, "subject": "Second", "sentAt": "2026-01-06T10:00:00Z"})
            await Pollers(poller_rt).poll_pardot_emails(PollStats())
        await real(scope, receive, send)

    s.sf.app = mid_batch
    try:
        assert await s.once() == 0
    finally:
        s.sf.app = real
        await poller_rt.aclose()
    assert fired
    assert await s.once() == 0
    subjects = sorted(t["Subject"] for t in s.tasks(lead["Id"]))
    assert subjects == ["Email: First", "Email: Second"]
