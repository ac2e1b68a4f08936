"""An idle feed still records its poll: `syncd status` must not show a healthy feed as stuck.

Found by the soak, which waits until every feed has polled since the queue emptied: the sent
emails feed moved its cursor (the feed's "last successful poll") only when it read an email.
"""

from __future__ import annotations

from datetime import datetime

from integration.pipeline.conftest import MakeSync, base_seed
from syncd.runtime.pollers import FEED_PARDOT_EMAILS
from syncd.store import Store


async def _polled_at(url: str) -> dict[str, datetime | None]:
    store = await Store.open(url, check_schema=False)
    try:
        async with store.read() as tx:
            return {feed: c.updated_at for feed, c in (await store.cursors.all(tx)).items()}
    finally:
        await store.aclose()


async def test_every_feed_records_a_poll_that_found_nothing(make_sync: MakeSync) -> None:
    seed = base_seed()
    seed["pardot"]["prospects"] = [{"id": 1, "email": "p@example.com", "userId": 2}]
    s = make_sync(seed)
    assert await s.once() == 0
    first = await _polled_at(s.settings.database.url)
    assert FEED_PARDOT_EMAILS in first, "the emails feed records its first (empty) poll"
    s.later(seconds=5)
    assert await s.once() == 0
    second = await _polled_at(s.settings.database.url)
    assert set(second) == set(first)
    for feed, at in second.items():
        before = first[feed]
        assert at is not None and before is not None and at > before, f"{feed} looks stuck"
