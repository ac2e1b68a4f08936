"""syncd's own writes come back through both change feeds: read, counted as echoes, not queued;
a real edit right after syncd's write (even in the same second) is still synced."""

from __future__ import annotations

import argparse
import json
from typing import Any

from syncd.commands import once as once_cmd

from .conftest import DANA, SAM, MakeSync, Sync, base_seed

N = 6
# Seeded rows were changed long before the first poll (a poll re-reads the rows stamped in its
# own second, still unsettled: not what this file is about).
OLD = "2026-01-05T10:00:00Z"


def lead_id(n: int) -> str:
    return f"00Q{n:012d}AAA"


def seed() -> dict[str, Any]:
    """N linked-by-email pairs where each side fills a blank of the other (a write each way),
    and one assigned prospect with no record (syncd creates its Lead)."""
    s = base_seed()
    s["pardot"]["prospects"] = [
        {"id": n, "email": f"p{n}@example.com", "userId": 2, "jobTitle": f"Title {n}",
         "createdAt": OLD, "updatedAt": OLD}
        for n in range(1, N + 1)
    ] + [{"id": 100, "email": "new@example.com", "userId": 2, "lastName": "New",
          "createdAt": OLD, "updatedAt": OLD}]  # fmt: skip
    s["salesforce"]["leads"] = [
        {"Id": lead_id(n), "Email": f"p{n}@example.com", "LastName": f"L{n}", "Company": "C",
         "OwnerId": DANA, "Phone": f"+1 555 000{n}", "CreatedDate": OLD,
         "LastModifiedDate": OLD, "SystemModstamp": OLD}
        for n in range(1, N + 1)
    ]  # fmt: skip
    return s


async def once_json(s: Sync) -> dict[str, Any]:
    s.capsys.readouterr()
    rc = await once_cmd.run(
        argparse.Namespace(dry_run=False, json=True),
        s.settings,
        transports=s.world.transports(),
        clock=s.clock,
    )
    out = json.loads(s.capsys.readouterr().out)
    assert rc == 0, out
    return dict(out)


async def test_echoes_of_a_backfill_are_read_but_not_queued(make_sync: MakeSync) -> None:
    s = make_sync(seed())
    first = await once_json(s)
    assert first["records_linked"] == N and first["leads_created"] == 1
    assert all(s.prospect(n)["phone"] == f"+1 555 000{n}" for n in range(1, N + 1))
    assert all(s.sf.get("Lead", lead_id(n))["Title"] == f"Title {n}" for n in range(1, N + 1))

    second = await once_json(s)
    feeds = second["feeds"]
    # Every prospect syncd PATCHed and every Lead it wrote or created comes back once (the
    # prospect it did not write is re-read in the overlap window and known as seen) ...
    assert feeds["pardot.prospects"]["read"] == N + 1
    assert feeds["pardot.prospects"]["echoes"] == N
    assert feeds["salesforce.Lead"]["read"] == N + 1
    assert feeds["salesforce.Lead"]["echoes"] == N + 1
    # ... and nothing is queued or processed again.
    assert feeds["pardot.prospects"]["queued"] == feeds["salesforce.Lead"]["queued"] == 0
    assert second["items_processed"] == 0


async def test_a_real_edit_right_after_syncds_write_is_synced(make_sync: MakeSync) -> None:
    s = make_sync(seed())
    await once_json(s)
    # Pardot stamps updatedAt in whole seconds: an edit in the second of syncd's own write
    # carries the very stamp syncd recorded. Its values tell it apart.
    stamp = s.prospect(1)["updatedAt"]
    s.pd.edit_prospect(1, {"jobTitle": "Edited in Pardot", "updatedAt": stamp})
    assert s.prospect(1)["updatedAt"] == stamp
    s.sf.modify("Lead", lead_id(2), {"Title": "Edited in Salesforce"})
    s.sf.modify("Lead", lead_id(3), {"OwnerId": SAM})  # no Pardot user: the assignee stays
    result = await once_json(s)
    assert s.sf.get("Lead", lead_id(1))["Title"] == "Edited in Pardot"
    assert s.prospect(2)["jobTitle"] == "Edited in Salesforce"
    feeds = result["feeds"]
    assert feeds["pardot.prospects"]["queued"] == 1
    # Lead 2 (a value) and Lead 3 (its owner: the owner rule reads it) are queued.
    assert feeds["salesforce.Lead"]["queued"] == 2
