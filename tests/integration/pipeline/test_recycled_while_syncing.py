"""A prospect sent to Pardot's recycle bin after syncd read it (issue 15, found by the soak).

The soak sent a linked prospect to the recycle bin while its queued item still carried the
poller's snapshot of it, live; the retry planned a Pardot update from that snapshot, Pardot
answered 400 code 219 ("Deleted records can't be updated"), and the prospect landed in the error
queue. A prospect in the recycle bin is skipped, never an error, and syncs again once restored.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from syncd.commands import status as status_cmd
from syncd.store.models import NewItem, Reason

from .conftest import DANA, MakeSync, base_seed

CONTACT = "003000000000001AAA"


def _world() -> dict[str, Any]:
    seed = base_seed()
    seed["pardot"]["prospects"] = [{"id": 1, "email": "ann@example.com", "userId": 2}]
    seed["salesforce"]["contacts"] = [
        {"Id": CONTACT, "Email": "ann@example.com", "LastName": "Ann", "OwnerId": DANA}
    ]
    return seed


async def test_a_prospect_recycled_after_it_was_read_is_skipped_not_an_error(
    make_sync: MakeSync,
) -> None:
    s = make_sync(_world())
    assert await s.once() == 0
    s.pd.edit_prospect(1, {"score": 5})
    snapshot = s.prospect(1)  # what the Pardot feed read: live, newer than syncd's last write
    async with s.store(write=True) as (store, tx):
        item = NewItem.for_prospect(1, Reason.PARDOT_CHANGE, snapshot=snapshot)
        await store.queue.enqueue(tx, [item], now=s.clock())
    s.pd.recycle_prospect(1)  # a Pardot user, before the worker runs
    s.sf.modify("Contact", CONTACT, {"Title": "CTO"})  # a change for the prospect to receive
    assert await s.once() == 0, s.last_out
    assert await s.errors("list", as_json=True) == 0
    assert json.loads(s.last_out) == []
    history = await s.history_lines(1)
    assert any("recycle bin" in (line["reason"] or "") for line in history)
    assert await s.crm_id_of(1) == CONTACT  # the link stays
    assert await s._cmd(status_cmd, argparse.Namespace(json=True)) == 0
    assert json.loads(s.last_out)["recycle_bin"] == {"count": 1, "prospect_ids": [1]}
    s.pd.restore_prospect(1)
    assert await s.once() == 0, s.last_out
    assert s.prospect(1)["jobTitle"] == "CTO"  # restored, it syncs again
