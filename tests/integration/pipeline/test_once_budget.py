"""`syncd once` and a spent API budget: exit 3 naming the work left, or `--wait-budget`."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from syncd.commands import once as once_cmd
from syncd.runtime import worker

from .conftest import DANA, MakeSync, Sync, base_seed

PROSPECTS = 29


def _seed() -> dict[str, object]:
    """Each prospect matches a Contact whose first name fills the prospect's blank one: one
    Pardot update per prospect (the link itself is never written to Pardot, RULES.md 2a)."""
    seed = base_seed()
    seed["pardot"]["prospects"] = [  # type: ignore[index]
        {"id": i, "email": f"b{i}@example.com", "userId": 2} for i in range(1, PROSPECTS + 1)
    ]
    seed["salesforce"]["contacts"] = [  # type: ignore[index]
        {"Id": f"003{i:012d}AAA", "Email": f"b{i}@example.com", "FirstName": f"F{i}",
         "LastName": f"B{i}", "OwnerId": DANA}
        for i in range(1, PROSPECTS + 1)
    ]  # fmt: skip
    return seed


def _synced(s: Sync) -> int:
    return sum(1 for p in s.pd.prospects() if p.get("firstName"))


async def test_once_with_a_spent_budget_exits_3_and_says_what_is_left(
    make_sync: MakeSync,
) -> None:
    # a share of 0.5 of 8 calls a day: syncd may make 4 Pardot calls
    s = make_sync(_seed(), pardot={"daily_api_limit": 8}, sync={"api_budget_share": 0.5})
    assert await s.once() == 3
    assert "stopped with work left:" in s.last_out
    assert "pardot until" in s.last_out and "--wait-budget" in s.last_out
    assert _synced(s) < PROSPECTS


async def test_wait_budget_waits_for_the_budget_and_finishes(
    make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    # re-check a paused side often, so the test does not wait a real minute per check
    monkeypatch.setattr(worker, "BUDGET_WAIT_MAX_S", 0.1)
    monkeypatch.setattr(once_cmd, "BUDGET_WAIT_MAX_S", 0.1)
    # One item a batch, so the budget runs out between batches: the Pardot update stage still
    # turns a budget spent mid-batch into a retry later that uses an attempt (issue 12).
    sync = {"api_budget_share": 0.5, "batch_size": 1}
    s = make_sync(_seed(), pardot={"daily_api_limit": 8}, sync=sync)
    args = argparse.Namespace(dry_run=False, wait_budget=True)
    task = asyncio.create_task(
        once_cmd.run(args, s.settings, transports=s.world.transports(), clock=s.clock)
    )
    days = 0
    async with asyncio.timeout(120):
        while not task.done():
            # the day's share is spent (4 calls): it waits, and does not exit 3 ...
            while s.pd.counters.total < 4 * (days + 1) and not task.done():
                await asyncio.sleep(0.02)
            # ... until a day later, when the budget allows calls again
            s.later(hours=25)
            days += 1
    assert days > 1  # it did wait for the budget, more than once
    rc = await asyncio.wait_for(task, 120)
    out = s.capsys.readouterr().out
    assert rc == 0, out
    assert "stopped with work left" not in out
    assert _synced(s) == PROSPECTS
    assert s.leads() == []  # every prospect matched its Contact: no Lead created
    counts = await s.queue_counts()
    assert (counts.pending, counts.claimed, counts.error) == (0, 0, 0)
