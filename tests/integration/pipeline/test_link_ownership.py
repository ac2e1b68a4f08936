"""RULES.md 2a end to end: the link lives in syncd's store, nothing read-only is written to
Pardot, and a lost store duplicates nothing (the Task marker, the mirror field)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .conftest import DANA, OMAR, MakeSync, Sync, base_seed

MIRROR = "Pardot_Prospect_Id__c"
# The native connector's fields: read-only for an API client (wire-formats C.3a).
CONNECTOR_OWNED = ("salesforceId", "salesforceLeadId", "salesforceContactId", "grade")


def mixed_world(*, mirror: bool = False) -> dict[str, Any]:
    """Contacts, Leads, duplicates, new Leads, an unassigned prospect, a blank Pardot grade
    against a CRM grade, sent emails."""
    seed = base_seed()
    seed["pardot"]["prospects"] = [
        {"id": 1, "email": "ada@example.com", "userId": 2, "firstName": "Ada"},
        {"id": 2, "email": "alan@example.com", "userId": 3},
        {"id": 3, "email": "grace@example.com", "userId": 2, "grade": None},
        {"id": 4, "email": "dup@example.com", "userId": 3},
        {"id": 5, "email": "new.one@example.com", "userId": 2, "lastName": "New"},
        {"id": 6, "email": "new.two@example.com", "userId": 3, "company": "Two Co"},
        {"id": 7, "email": "nobody@example.com", "userId": None},
    ]
    seed["salesforce"]["contacts"] = [
        {"Id": "003000000000001AAA", "Email": "ada@example.com", "LastName": "Lovelace",
         "OwnerId": DANA},
        {"Id": "003000000000003AAA", "Email": "grace@example.com", "LastName": "Hopper",
         "OwnerId": DANA, "pi__grade__c": "A"},
    ]  # fmt: skip
    seed["salesforce"]["leads"] = [
        {"Id": "00Q000000000002AAA", "Email": "alan@example.com", "LastName": "Turing",
         "Company": "Bletchley", "OwnerId": OMAR},
        {"Id": "00Q000000000004AAA", "Email": "dup@example.com", "LastName": "First",
         "Company": "Dup", "OwnerId": OMAR, "CreatedDate": "2025-01-01T00:00:00.000+0000"},
        {"Id": "00Q000000000005AAA", "Email": "dup@example.com", "LastName": "Second",
         "Company": "Dup", "OwnerId": OMAR, "CreatedDate": "2025-06-01T00:00:00.000+0000"},
    ]  # fmt: skip
    seed["pardot"]["emails"] = [
        {"id": 5001, "prospectId": 1, "subject": "Welcome", "sentAt": "2026-01-05T10:00:00Z"},
        {"id": 5002, "prospectId": 2, "subject": "Trial", "sentAt": "2026-01-06T10:00:00Z"},
        {"id": 5003, "prospectId": 5, "subject": "Hello", "sentAt": "2026-01-07T10:00:00Z"},
    ]
    if mirror:
        field = {"name": MIRROR, "type": "string", "length": 18}
        seed["salesforce"]["custom_fields"] = {"Lead": [field], "Contact": [field]}
    return seed


async def links(s: Sync, ids: range) -> dict[int, str | None]:
    return {pid: await s.crm_id_of(pid) for pid in ids}


def forget_the_store(tmp_path: Path) -> None:
    """A lost store: the SQLite file (and its WAL) deleted, as a container without its volume."""
    for name in ("syncd.db", "syncd.db-wal", "syncd.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)


def crm_counts(s: Sync) -> tuple[int, int, int]:
    return len(s.leads()), len(s.contacts()), len(s.tasks())


async def test_a_mixed_world_syncs_fully_and_the_second_run_writes_nothing(
    make_sync: MakeSync,
) -> None:
    s = make_sync(copy.deepcopy(mixed_world()))
    assert await s.once() == 0, s.last_out
    assert await links(s, range(1, 8)) == {
        1: "003000000000001AAA",  # Contact by email
        2: "00Q000000000002AAA",  # Lead by email
        3: "003000000000003AAA",
        4: "00Q000000000004AAA",  # the oldest of two duplicate Leads
        5: s.leads("new.one@example.com")[0]["Id"],  # new Leads for assigned prospects
        6: s.leads("new.two@example.com")[0]["Id"],
        7: None,  # unassigned, no match: waits until assigned
    }
    # The CRM grade reached the CRM only: Pardot's grade is read-only (a grading profile's).
    assert s.contacts("grace@example.com")[0]["pi__grade__c"] == "A"
    for pid in range(1, 8):
        p = s.prospect(pid)
        assert not any(p.get(name) for name in CONNECTOR_OWNED), (pid, p)
    assert sorted(t["Subject"] for t in s.tasks()) == ["Email: Hello", "Email: Trial",
                                                       "Email: Welcome"]  # fmt: skip
    # The simulators refuse read-only writes, and count every field any write carried.
    sent = s.pd.written().get("Prospect", {})
    assert not set(sent) & {*CONNECTOR_OWNED, "createdAt", "lastActivityAt"}, sent
    before = s.api_writes()
    assert await s.once() == 0
    assert s.api_writes() == before, "the second run must write nothing on either side"


async def test_a_lost_store_duplicates_no_lead_and_no_task(
    make_sync: MakeSync, tmp_path: Path
) -> None:
    s = make_sync(copy.deepcopy(mixed_world()))
    assert await s.once() == 0, s.last_out
    first = await links(s, range(1, 8))
    counts = crm_counts(s)
    assert counts[2] == 3
    forget_the_store(tmp_path)
    assert await s.once() == 0, s.last_out
    assert crm_counts(s) == counts, "a new store must not create a Lead or a Task twice"
    assert await links(s, range(1, 8)) == first  # relinked by email, the same records


async def test_with_the_mirror_a_lost_store_relinks_even_a_changed_email(
    make_sync: MakeSync, tmp_path: Path
) -> None:
    s = make_sync(copy.deepcopy(mixed_world(mirror=True)), sync={"crm_link_field": MIRROR})
    assert await s.once() == 0, s.last_out
    first = await links(s, range(1, 8))
    # Every linked record carries the prospect id; a new Lead got it in its create.
    for pid, crm_id in first.items():
        if crm_id is not None:
            sobject = "Contact" if crm_id.startswith("003") else "Lead"
            assert s.sf.get(sobject, crm_id)[MIRROR] == str(pid)
    counts = crm_counts(s)
    # Ada's email changes in Pardot after the store is lost: email matching would not find her
    # Contact (and would create a Lead, since she is assigned); the mirror does.
    forget_the_store(tmp_path)
    s.pd.edit_prospect(1, {"email": "ada.lovelace@newmail.example"})
    assert await s.once() == 0, s.last_out
    assert await links(s, range(1, 8)) == first
    assert crm_counts(s) == counts
    history = await s.history_lines(1)
    assert any("mirror field" in (line["reason"] or "") for line in history)


async def test_relink_rebuilds_the_links_from_the_mirror(
    make_sync: MakeSync, tmp_path: Path
) -> None:
    import argparse

    from syncd.commands import relink as relink_cmd

    s = make_sync(copy.deepcopy(mixed_world(mirror=True)), sync={"crm_link_field": MIRROR})
    assert await s.once() == 0, s.last_out
    first = await links(s, range(1, 8))
    forget_the_store(tmp_path)
    from syncd.store import migrate

    await migrate.upgrade(s.settings.database.url)
    dry = await s._cmd(relink_cmd, argparse.Namespace(dry_run=True))
    assert dry == 0 and "would rebuild 6 link(s)" in s.last_out, s.last_out
    assert await links(s, range(1, 8)) == dict.fromkeys(range(1, 8))  # nothing written
    assert await s._cmd(relink_cmd, argparse.Namespace(dry_run=False)) == 0
    assert "rebuilt 6 link(s)" in s.last_out
    assert await links(s, range(1, 8)) == first
    assert await s._cmd(relink_cmd, argparse.Namespace(dry_run=False)) == 0
    assert "rebuilt 0 link(s)" in s.last_out and "6 already right" in s.last_out
