"""`reconcile`: Lead creation, the seed's assignment table, owners, conversion, deletion,
email Tasks, link fields, CRM-only records, audit lines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from syncd.domain.models import CrmType, Link, LinkAction, ProspectInput, SentEmail, SyncConfig
from syncd.domain.plan import Plan, TaskSpec, parse_task_marker, task_fields, task_marker

from . import (
    CONFIG,
    CONNECTOR,
    FIELD_MAP,
    LINK_FIELDS,
    QUEUE,
    T0,
    apply_plan,
    contact,
    contact_id,
    lead,
    lead_id,
    link_to,
    prospect,
    run,
    user_id,
)

EMAILS = (
    SentEmail(id=502, prospect_id=1001, subject="Q3 pricing", sent_at=T0),
    SentEmail(
        id=501,
        prospect_id=1001,
        subject=" Welcome ",
        sent_at=datetime(2026, 1, 4, 23, 30, tzinfo=UTC),
    ),
)


def _new(**kw: Any) -> ProspectInput:
    return ProspectInput(prospect=kw.pop("prospect", prospect()), link=None, linked=None, **kw)


def _synced(p: Any, rec: Any, **kw: Any) -> ProspectInput:
    """A prospect already linked and merged with `rec` (base = both sides as they are)."""
    p = replace(
        p,
        crm_id=rec.id,
        fields={**p.fields, "salesforceId": rec.id, f"salesforce{rec.type.value}Id": rec.id},
    )
    first = run(ProspectInput(prospect=p, link=None, linked=rec, candidates=(rec,)))
    assert first.new_base is not None
    return ProspectInput(prospect=p, link=link_to(rec, p, first.new_base), linked=rec, **kw)


# --- creating a Lead ------------------------------------------------------------------------


def test_create_lead_with_mapped_fields_and_unknown_placeholders() -> None:
    p = prospect(firstName=" Jane ", phone="555", score="12", optedOut="false", city="Paris")
    plan = run(_new(prospect=p))
    assert plan.action is LinkAction.CREATE_LEAD
    assert plan.crm_id is None and plan.crm_type is CrmType.LEAD
    assert dict(plan.create_lead or {}) == {
        "City": "Paris",
        "Company": "[[unknown]]",
        "Email": "jane@acme.example",
        "FirstName": "Jane",
        "HasOptedOutOfEmail": False,
        "LastName": "[[unknown]]",
        "OwnerId": user_id(10),
        "Phone": "555",
        "pi__score__c": 12,
    }
    assert list(plan.create_lead or {}) == sorted(plan.create_lead or {})
    assert not plan.auto_assign and plan.writes == 1


def test_create_lead_keeps_given_last_name_and_company() -> None:
    plan = run(_new(prospect=prospect(lastName="Doe", company="Acme")))
    assert plan.create_lead is not None
    assert (plan.create_lead["LastName"], plan.create_lead["Company"]) == ("Doe", "Acme")


@pytest.mark.parametrize(
    ("config", "assignee", "owner", "auto_assign"),
    [
        pytest.param(CONFIG, 10, user_id(10), False, id="user-assignee-crm-user"),
        pytest.param(CONFIG, 11, CONNECTOR, False, id="user-inactive-crm-user-connector"),
        pytest.param(CONFIG, 13, CONNECTOR, False, id="user-deleted-pardot-user-connector"),
        pytest.param(
            replace(CONFIG, assignment="queue", assignment_queue_id=QUEUE),
            10,
            QUEUE,
            False,
            id="queue",
        ),
        pytest.param(replace(CONFIG, assignment="rule"), 10, None, True, id="assignment-rule"),
    ],
)
def test_new_lead_owner_per_assignment_mode(
    config: SyncConfig, assignee: int, owner: str | None, auto_assign: bool
) -> None:
    plan = run(_new(prospect=prospect(user=assignee)), config=config)
    assert plan.create_lead is not None
    assert plan.create_lead.get("OwnerId") == owner
    assert plan.auto_assign is auto_assign
    assert any(d.action == "owner" for d in plan.decisions)


def test_queue_mode_needs_a_queue_id() -> None:
    with pytest.raises(ValueError, match="assignment_queue_id"):
        SyncConfig(field_map=FIELD_MAP, assignment="queue")


def test_follow_up_after_create_writes_nothing_the_link_lives_in_the_store() -> None:
    # Pardot's link fields are read-only for API clients (RULES.md 2a): never written back.
    inp = _new()
    created = run(inp)
    follow = run(apply_plan(created, inp))
    assert follow.action is LinkAction.KEEP
    assert follow.is_noop, follow.decisions
    assert not set(follow.pardot_update) & set(LINK_FIELDS)


def test_follow_up_after_assignment_rule_syncs_the_owner_back() -> None:
    config = replace(CONFIG, assignment="rule")
    inp = _new(prospect=prospect(user=10))
    created = run(inp, config=config)
    # the rule gave the Lead to CRM user 15, who is Pardot user 15
    after = apply_plan(created, inp)
    assert after.linked is not None
    after = replace(after, linked=replace(after.linked, owner_id=user_id(15)))
    follow = run(after, config=config)
    assert follow.pardot_update["userId"] == 15


# --- the seed's assignment table --------------------------------------------------------------


def test_seed_row1_assignee_without_crm_username_gets_the_connector_user() -> None:
    plan = run(_new(prospect=prospect(user=12)))
    assert plan.create_lead is not None and plan.create_lead["OwnerId"] == CONNECTOR


def test_seed_row2_crm_record_with_unmapped_owner_creates_an_unassigned_prospect() -> None:
    rec = lead(
        1,
        owner=user_id(14),
        FirstName="Ann",
        LastName="Lee",
        Company="Acme",
        pi__created_date__c="2025-01-01T00:00:00Z",  # read-only in Pardot: never sent
    )
    plan = run(
        ProspectInput(prospect=None, link=None, linked=None, crm_record=rec),
        config=replace(CONFIG, auto_create_prospects=True),
    )
    assert plan.action is LinkAction.CREATE_PROSPECT
    assert plan.prospect_id is None and plan.crm_id == lead_id(1)
    assert dict(plan.pardot_create or {}) == {
        "company": "Acme",
        "email": "jane@acme.example",
        "firstName": "Ann",
        "lastName": "Lee",
    }


def test_seed_row3_reassigned_to_user_not_in_pardot_keeps_the_assignee() -> None:
    p = prospect(user=10)
    rec = lead(1, owner=user_id(10))
    inp = _synced(p, rec)
    plan = run(replace(inp, linked=replace(rec, owner_id=user_id(14))))
    assert "userId" not in plan.pardot_update
    assert "OwnerId" not in plan.crm_update  # the old assignee is never pushed back
    assert plan.is_noop
    assert any(d.action == "owner_kept" for d in plan.decisions)


def test_seed_row4_reassigned_to_user_in_pardot_reassigns_the_prospect() -> None:
    p = prospect(user=10)
    rec = lead(1, owner=user_id(10))
    inp = _synced(p, rec)
    plan = run(replace(inp, linked=replace(rec, owner_id=user_id(15))))
    assert dict(plan.pardot_update) == {"userId": 15}
    assert "OwnerId" not in plan.crm_update


def test_pardot_reassignment_is_not_pushed_to_an_owned_record() -> None:
    rec = lead(1, owner=user_id(10))
    inp = _synced(prospect(user=10), rec)
    plan = run(replace(inp, prospect=replace(inp.prospect, user_id=15)))  # type: ignore[arg-type]
    assert "OwnerId" not in plan.crm_update
    assert dict(plan.pardot_update) == {"userId": 10}  # the CRM owner is master


def test_queue_owned_record_leaves_the_assignee() -> None:
    rec = lead(1, owner=QUEUE)
    plan = run(_synced(prospect(user=10), rec))
    assert plan.is_noop
    assert "OwnerId" not in plan.crm_update


# --- CRM-only records -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "rec", "link", "reason"),
    [
        pytest.param(CONFIG, lead(1), None, "auto-create prospects is off", id="auto-create-off"),
        pytest.param(
            replace(CONFIG, auto_create_prospects=True),
            lead(1, email=None),
            None,
            "email",
            id="no-email",
        ),
        pytest.param(
            replace(CONFIG, auto_create_prospects=True),
            lead(1, is_deleted=True),
            None,
            "deleted",
            id="deleted",
        ),
        pytest.param(
            replace(CONFIG, auto_create_prospects=True),
            lead(1, is_converted=True, converted_contact_id=contact_id(1)),
            None,
            "converted",
            id="converted-lead",
        ),
        pytest.param(
            replace(
                CONFIG,
                auto_create_prospects=True,
                auto_create_since=datetime(2027, 1, 1, tzinfo=UTC),
            ),
            lead(1),
            None,
            "not retroactive",
            id="created-before-auto-create",
        ),
        pytest.param(
            replace(CONFIG, auto_create_prospects=True),
            lead(1),
            Link(prospect_id=7, crm_type=CrmType.LEAD, crm_id=lead_id(1)),
            "not found",
            id="linked-prospect-missing",
        ),
    ],
)
def test_crm_only_skips(config: SyncConfig, rec: Any, link: Link | None, reason: str) -> None:
    plan = run(ProspectInput(prospect=None, link=link, linked=None, crm_record=rec), config=config)
    assert plan.action is LinkAction.SKIP
    assert plan.skip_reason and reason in plan.skip_reason
    assert plan.is_noop


def test_crm_only_owner_with_pardot_user_is_the_assignee() -> None:
    rec = contact(3, owner=user_id(10), LastName="Lee")
    plan = run(
        ProspectInput(prospect=None, link=None, linked=None, crm_record=rec),
        config=replace(CONFIG, auto_create_prospects=True),
    )
    assert plan.pardot_create is not None and plan.pardot_create["userId"] == 10
    assert plan.crm_type is CrmType.CONTACT and plan.writes == 1


# --- conversion and deletion --------------------------------------------------------------------


def test_converted_lead_moves_to_the_contact_and_merges_with_it() -> None:
    p = prospect(city="Paris")
    old = lead(1, City="Paris")
    inp = _synced(p, old)
    converted = replace(old, is_converted=True, converted_contact_id=contact_id(4))
    plan = run(
        replace(
            inp,
            linked=converted,
            converted_contact=contact(4, MailingCity="Lyon", modified=T0),
        )
    )
    assert plan.action is LinkAction.MOVE_TO_CONTACT
    assert (plan.crm_type, plan.crm_id, plan.from_crm_id) == (
        CrmType.CONTACT,
        contact_id(4),
        lead_id(1),
    )
    assert plan.pardot_update["city"] == "Lyon"  # the CRM changed it (against the old base)
    assert not set(plan.pardot_update) & set(LINK_FIELDS)  # the store holds the new link
    assert not plan.crm_update


def test_deleted_record_is_marked_and_never_recreated() -> None:
    p = prospect()
    inp = ProspectInput(prospect=p, link=link_to(lead(1), p), linked=None, emails=EMAILS)
    plan = run(inp)
    assert plan.action is LinkAction.MARK_DELETED
    assert plan.is_noop and plan.create_lead is None and not plan.tasks
    assert "never re-created" in plan.decisions[0].reason
    again = run(replace(inp, link=replace(inp.link, crm_deleted=True)))  # type: ignore[arg-type]
    assert again.action is LinkAction.SKIP and again.create_lead is None


# --- merging a linked prospect ------------------------------------------------------------------


def test_first_link_fills_blanks_both_ways_and_crm_wins_conflicts() -> None:
    p = prospect(firstName="Jane", phone="111", score=40, city=None)
    rec = contact(1, FirstName="Janet", Phone=None, MailingCity="Oslo", pi__score__c=12)
    plan = run(ProspectInput(prospect=p, link=None, linked=None, candidates=(rec,)))
    assert plan.action is LinkAction.LINK
    assert dict(plan.crm_update) == {"Phone": "111", "pi__score__c": 40}
    assert dict(plan.pardot_update) == {"city": "Oslo", "firstName": "Janet"}
    assert plan.writes == 2
    for d in plan.decisions:
        if d.action.startswith("update_"):
            assert d.policy and d.reason and d.side


def test_echo_of_our_own_write_is_a_noop() -> None:
    rec = lead(1, FirstName="Jane", pi__created_date__c="2026-01-05T10:00:00.000+0000")
    p = prospect(firstName="Jane", createdAt="2026-01-05T05:00:00-05:00")
    plan = run(_synced(p, rec))
    assert plan.is_noop, plan.decisions


# --- email Tasks ----------------------------------------------------------------------------------


def test_emails_become_tasks_on_the_linked_record_in_send_order() -> None:
    rec = contact(2, owner=user_id(10))
    plan = run(_synced(prospect(), rec, emails=EMAILS))
    assert plan.tasks == (
        TaskSpec(
            email_id=501,
            subject="Email: Welcome",
            activity_date=date(2026, 1, 4),
            who_id=contact_id(2),
            owner_id=user_id(10),
            description=plan.tasks[0].description,
        ),
        TaskSpec(
            email_id=502,
            subject="Email: Q3 pricing",
            activity_date=date(2026, 1, 5),
            who_id=contact_id(2),
            owner_id=user_id(10),
            description=plan.tasks[1].description,
        ),
    )
    assert [parse_task_marker(t.description) for t in plan.tasks] == [501, 502]
    assert plan.writes == 2
    assert sum(d.action == "create_task" for d in plan.decisions) == 2


def test_tasks_for_a_created_lead_wait_for_its_id() -> None:
    plan = run(_new(emails=EMAILS))
    assert [t.who_id for t in plan.tasks] == [None, None]
    assert task_fields(plan.tasks[0], who_id=lead_id(900))["WhoId"] == lead_id(900)
    assert plan.writes == 3


def test_task_on_a_queue_owned_record_belongs_to_the_connector_user() -> None:
    plan = run(_synced(prospect(), lead(1, owner=QUEUE), emails=EMAILS[:1]))
    assert plan.tasks[0].owner_id == CONNECTOR


def test_email_activities_off_plans_no_tasks() -> None:
    plan = run(
        _synced(prospect(), lead(1), emails=EMAILS), config=replace(CONFIG, email_activities=False)
    )
    assert plan.tasks == () and plan.is_noop
    assert any(d.action == "skip_tasks" for d in plan.decisions)


def test_skipped_prospect_logs_no_tasks() -> None:
    plan = run(_new(prospect=prospect(user=None), emails=EMAILS))
    assert plan.action is LinkAction.SKIP and plan.tasks == ()
    assert plan.skip_reason == "unassigned: syncs once assigned"


def test_task_body_and_marker() -> None:
    spec = TaskSpec(
        email_id=7,
        subject="Email: Hi",
        activity_date=date(2026, 1, 5),
        who_id="00Qx",
        owner_id="005x",
        description=task_marker(7),
    )
    assert task_fields(spec) == {
        "Subject": "Email: Hi",
        "WhoId": "00Qx",
        "OwnerId": "005x",
        "Status": "Completed",
        "TaskSubtype": "Email",
        "ActivityDate": "2026-01-05",
        "Description": "[pardot-email:7]",
    }
    assert parse_task_marker("x [pardot-email:123] y") == 123
    assert parse_task_marker("no marker") is None


def test_plan_is_read_only_and_json_ready() -> None:
    import json

    from syncd.domain.models import thaw

    plan = run(_synced(prospect(city="Paris"), lead(1)))
    with pytest.raises(TypeError):
        plan.pardot_update["x"] = 1  # type: ignore[index]
    assert isinstance(plan, Plan)
    json.dumps(thaw(plan.new_base))


# --- the link's mirror in Salesforce (sync.crm_link_field, RULES.md 2a) -------------------------

MIRROR = "Pardot_Prospect_Id__c"
MIRROR_CONFIG = replace(CONFIG, crm_link_field=MIRROR)


def test_a_new_lead_carries_the_mirror_and_its_follow_up_writes_nothing() -> None:
    inp = _new()
    created = run(inp, config=MIRROR_CONFIG)
    assert created.create_lead is not None and created.create_lead[MIRROR] == "1001"
    follow = run(apply_plan(created, inp), config=MIRROR_CONFIG)
    assert follow.is_noop, follow.decisions


def test_a_new_link_writes_the_mirror_in_the_crm_update_once() -> None:
    p = prospect(firstName="Jane")
    rec = contact(1, FirstName="Jane")
    inp = ProspectInput(prospect=p, link=None, linked=None, candidates=(rec,))
    plan = run(inp, config=MIRROR_CONFIG)
    assert plan.action is LinkAction.LINK
    assert dict(plan.crm_update) == {MIRROR: "1001"}
    assert not plan.pardot_update
    assert any(d.field == MIRROR and d.side == "crm" for d in plan.decisions)
    assert run(apply_plan(plan, inp), config=MIRROR_CONFIG).is_noop


@pytest.mark.parametrize("stored", ["1001", 1001.0, " 1001 "], ids=["text", "number", "spaces"])
def test_a_right_mirror_costs_nothing(stored: Any) -> None:
    p = prospect()
    rec = lead(1, **{MIRROR: stored})
    plan = run(ProspectInput(prospect=p, link=link_to(rec, p), linked=rec), config=MIRROR_CONFIG)
    assert MIRROR not in plan.crm_update


def test_with_no_stored_link_the_mirror_rebuilds_the_link_before_email_matching() -> None:
    # The store was lost, and the prospect's email no longer matches its record.
    p = prospect(email="jane.new@acme.example")
    mirrored = lead(7, email="jane.old@acme.example", **{MIRROR: "1001"})
    other = contact(2, email="jane.new@acme.example")
    inp = ProspectInput(
        prospect=p, link=None, linked=None, candidates=(other,), mirrored=(mirrored,)
    )
    plan = run(inp, config=MIRROR_CONFIG)
    assert (plan.action, plan.crm_id) == (LinkAction.LINK, lead_id(7))
    assert "mirror field" in plan.decisions[0].reason
    assert plan.create_lead is None


def test_a_deleted_mirrored_record_falls_back_to_email() -> None:
    p = prospect()
    gone = lead(7, is_deleted=True, **{MIRROR: "1001"})
    rec = contact(2)
    inp = ProspectInput(prospect=p, link=None, linked=None, candidates=(rec,), mirrored=(gone,))
    plan = run(inp, config=MIRROR_CONFIG)
    assert (plan.action, plan.crm_id) == (LinkAction.LINK, contact_id(2))


def test_without_the_setting_nothing_is_mirrored() -> None:
    plan = run(_new())
    assert plan.create_lead is not None and MIRROR not in plan.create_lead
