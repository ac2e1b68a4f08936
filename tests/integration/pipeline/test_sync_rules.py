"""RULES sections 4-7 end to end: fields, owners, email Tasks, faults, errors, budget."""

from __future__ import annotations

import json
from typing import Any

from syncd.simulators._base import Faults

from .conftest import CONNECTOR, DANA, OMAR, QUEUE, SAM, MakeSync, base_seed

LEAD = "00Q000000000001AAA"


def linked_seed(prospect: dict[str, Any], lead: dict[str, Any] | None = None) -> dict[str, Any]:
    seed = base_seed()
    seed["pardot"]["prospects"] = [{"id": 1, "email": "p@example.com", "userId": 2, **prospect}]
    seed["salesforce"]["leads"] = [
        {"Id": LEAD, "Email": "p@example.com", "LastName": "L", "Company": "C",
         "OwnerId": DANA, **(lead or {})}
    ]  # fmt: skip
    return seed


async def test_second_run_writes_nothing(make_sync: MakeSync) -> None:
    seed = linked_seed({"firstName": "Ann", "score": 10}, {"Title": "CTO"})
    seed["pardot"]["prospects"].append({"id": 2, "email": "n@example.com", "userId": 3})
    s = make_sync(seed)
    assert await s.once() == 0
    before = s.api_writes()
    assert before != (0, 0)
    assert await s.once() == 0  # reads the echoes of its own writes
    assert await s.once() == 0
    assert s.api_writes() == before


async def test_crm_is_master_on_conflict_and_value_beats_blank(make_sync: MakeSync) -> None:
    s = make_sync(linked_seed({"jobTitle": "Engineer", "phone": None}, {"Phone": "+1 555"}))
    assert await s.once() == 0
    assert s.sf.get("Lead", LEAD)["Title"] == "Engineer"  # Pardot value fills the blank CRM
    assert s.prospect(1)["phone"] == "+1 555"  # CRM value fills the blank Pardot field
    s.pd.edit_prospect(1, {"jobTitle": "Pardot title"})
    s.sf.modify("Lead", LEAD, {"Title": "CRM title"})
    assert await s.once() == 0
    assert s.prospect(1)["jobTitle"] == "CRM title"
    assert s.sf.get("Lead", LEAD)["Title"] == "CRM title"
    # A blank never overwrites a value.
    s.sf.modify("Lead", LEAD, {"Phone": None})
    assert await s.once() == 0
    assert s.prospect(1)["phone"] == "+1 555"


async def test_pardot_master_field_and_one_sided_change(make_sync: MakeSync) -> None:
    s = make_sync(linked_seed({"score": 10}))
    assert await s.once() == 0
    assert s.sf.get("Lead", LEAD)["pi__score__c"] == 10
    s.pd.edit_prospect(1, {"score": 55})
    s.sf.modify("Lead", LEAD, {"pi__score__c": 99})
    assert await s.once() == 0
    assert s.sf.get("Lead", LEAD)["pi__score__c"] == 55
    assert s.prospect(1)["score"] == 55


async def test_blank_overwrites_when_configured(make_sync: MakeSync) -> None:
    s = make_sync(
        linked_seed({"phone": "+1 555"}, {"Phone": "+1 555"}),
        fields={"phone": {"crm": "Phone", "policy": "crm", "blank_overwrites": True}},
    )
    assert await s.once() == 0
    s.sf.modify("Lead", LEAD, {"Phone": None})
    assert await s.once() == 0
    assert not s.prospect(1).get("phone")


async def test_recent_opt_out_wins(make_sync: MakeSync) -> None:
    s = make_sync(linked_seed({"optedOut": False}))
    assert await s.once() == 0
    s.pd.edit_prospect(1, {"optedOut": True})
    assert await s.once() == 0
    assert s.sf.get("Lead", LEAD)["HasOptedOutOfEmail"] is True


async def test_crm_owner_is_master(make_sync: MakeSync) -> None:
    s = make_sync(linked_seed({}))
    assert await s.once() == 0
    s.sf.modify("Lead", LEAD, {"OwnerId": OMAR})  # has a Pardot user: reassign
    assert await s.once() == 0
    assert s.prospect(1)["userId"] == 3
    s.sf.modify("Lead", LEAD, {"OwnerId": SAM})  # no Pardot user: prospect keeps Omar
    assert await s.once() == 0
    assert s.prospect(1)["userId"] == 3
    assert s.sf.get("Lead", LEAD)["OwnerId"] == SAM  # the old owner is not pushed back


async def test_new_lead_owner_when_assignee_has_no_crm_user(make_sync: MakeSync) -> None:
    seed = base_seed()
    seed["pardot"]["prospects"] = [
        {"id": 1, "email": "a@example.com", "userId": 4},  # Pardot user without CRM user
        {"id": 2, "email": "b@example.com", "userId": 5},  # CRM user is inactive
    ]
    s = make_sync(seed)
    assert await s.once() == 0
    assert s.leads("a@example.com")[0]["OwnerId"] == CONNECTOR
    assert s.leads("b@example.com")[0]["OwnerId"] == CONNECTOR


async def test_crm_record_creates_unassigned_prospect_when_auto_create_is_on(
    make_sync: MakeSync,
) -> None:
    s = make_sync(base_seed(), sync={"auto_create_prospects": True})
    s.sf.insert("Contact", {"Email": "crm@example.com", "LastName": "Only", "OwnerId": SAM})
    s.sf.insert("Contact", {"Email": "dana-owned@example.com", "LastName": "D", "OwnerId": DANA})
    assert await s.once() == 0
    by_email = {p["email"]: p for p in s.pd.prospects()}
    assert by_email["crm@example.com"].get("userId") is None  # owner has no Pardot user
    assert by_email["dana-owned@example.com"]["userId"] == 2
    assert await s.once() == 0
    assert len(s.pd.prospects()) == 2


async def test_assign_to_queue(make_sync: MakeSync) -> None:
    seed = base_seed()
    seed["pardot"]["prospects"] = [{"id": 1, "email": "q@example.com", "userId": 2}]
    s = make_sync(seed, sync={"assignment": "queue", "assignment_queue_id": QUEUE})
    assert await s.once() == 0
    assert s.leads("q@example.com")[0]["OwnerId"] == QUEUE


async def test_active_assignment_rule_owner_is_read_back(make_sync: MakeSync) -> None:
    seed = base_seed()
    seed["salesforce"]["assignment_rule"] = {"owner_id": OMAR}
    seed["pardot"]["prospects"] = [{"id": 1, "email": "r@example.com", "userId": 2}]
    s = make_sync(seed, sync={"assignment": "rule"})
    assert await s.once() == 0
    assert s.leads("r@example.com")[0]["OwnerId"] == OMAR
    assert s.prospect(1)["userId"] == 3  # the rule's owner, synced back to Pardot


def email_seed() -> dict[str, Any]:
    seed = linked_seed({})
    seed["pardot"]["prospects"].append({"id": 2, "email": "new@example.com", "userId": 2})
    seed["pardot"]["emails"] = [
        {"id": 5001, "prospectId": 1, "subject": "Welcome", "sentAt": "2026-01-05T10:00:00Z"},
        {"id": 5002, "prospectId": 2, "subject": "Trial", "sentAt": "2026-01-06T10:00:00Z"},
    ]
    return seed


async def test_email_tasks_logged_exactly_once(make_sync: MakeSync) -> None:
    s = make_sync(email_seed(), sync={"start_at": "2026-01-01T00:00:00Z"})
    assert await s.once() == 0
    [task] = s.tasks(LEAD)
    assert task["Subject"] == "Email: Welcome"
    assert task["TaskSubtype"] == "Email" and task["Status"] == "Completed"
    assert str(task["ActivityDate"]) == "2026-01-05"
    new_lead = s.leads("new@example.com")[0]["Id"]
    assert [t["Subject"] for t in s.tasks(new_lead)] == ["Email: Trial"]
    assert await s.reprocess("1", "2") == 0
    assert await s.once() == 0
    assert len(s.tasks()) == 2


async def test_no_tasks_when_email_activities_are_off(make_sync: MakeSync) -> None:
    off = {"start_at": "2026-01-01T00:00:00Z", "email_activities": False}
    s = make_sync(email_seed(), sync=off)
    assert await s.once() == 0
    assert s.tasks() == []


async def test_lost_answers_create_no_duplicates(make_sync: MakeSync) -> None:
    faults = Faults(lost_response_rate=1.0, seed=7)
    s = make_sync(email_seed(), sync={"start_at": "2026-01-01T00:00:00Z"}, salesforce_faults=faults)
    await s.once()
    faults.lost_response_rate = 0.0
    for _ in range(3):
        s.later(hours=2)  # retries become due
        await s.once()
    assert len(s.leads("new@example.com")) == 1
    assert len(s.tasks()) == 2
    assert sorted(t["Subject"] for t in s.tasks()) == ["Email: Trial", "Email: Welcome"]


async def test_permanent_error_goes_to_the_error_queue_and_retries(make_sync: MakeSync) -> None:
    seed = base_seed()
    seed["pardot"]["prospects"] = [
        {"id": 1, "email": "long@example.com", "userId": 2, "lastName": "x" * 120}
    ]
    s = make_sync(seed)
    assert await s.once() == 1
    assert await s.errors("list", as_json=True) == 0
    [error] = json.loads(s.last_out)
    assert error["prospect_id"] == 1 and error["code"] == "STRING_TOO_LONG"
    assert s.leads("long@example.com") == []
    # Fix the data where it lives (Salesforce: LastName max 80), then retry.
    s.pd.edit_prospect(1, {"lastName": "Short"})
    assert await s.errors("retry", all_=True) == 0
    assert await s.once() == 0
    assert s.leads("long@example.com")[0]["LastName"] == "Short"
    assert await s.errors("list", as_json=True) == 0
    assert json.loads(s.last_out) == []


async def test_reprocess_twice_changes_nothing(make_sync: MakeSync) -> None:
    s = make_sync(linked_seed({"firstName": "Ann"}))
    assert await s.once() == 0
    before = s.api_writes()
    for _ in range(2):
        assert await s.reprocess("1", crm_ids=(LEAD,)) == 0
        assert await s.once() == 0
    assert s.api_writes() == before
    assert await s.reprocess("999999") == 2


async def test_pardot_budget_pause(make_sync: MakeSync) -> None:
    seed = base_seed()
    seed["pardot"]["prospects"] = [
        {"id": i, "email": f"b{i}@example.com", "userId": 2} for i in range(1, 30)
    ]
    # Each Contact fills the blank first name of its prospect: one Pardot PATCH per prospect.
    seed["salesforce"]["contacts"] = [
        {"Id": f"003{i:012d}AAA", "Email": f"b{i}@example.com", "FirstName": f"B{i}",
         "LastName": "Budget", "OwnerId": DANA}
        for i in range(1, 30)
    ]  # fmt: skip
    # share 0.5 of 8 calls a day: syncd may make 4 Pardot calls.
    s = make_sync(seed, pardot={"daily_api_limit": 8}, sync={"api_budget_share": 0.5})
    assert await s.once() == 3  # stopped with work left (docs/interfaces.md)
    assert "paused for API budget: pardot" in s.last_out
    assert "stopped with work left" in s.last_out
    # A call or two may be in flight when the share runs out; never the whole batch.
    assert s.pd.counters.total <= 4 + 2
    # The rest waits in the queue, and goes out when the budget allows.
    assert sum(1 for p in s.pd.prospects() if p.get("firstName")) < 29
