"""The pure settle stage: the link to store, the audit lines and each item's fate (table-driven).

No store and no API: `settle.settle` is a function of the finished works, the time and the
retry rules, and these tables pin what it decides.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd import errors
from syncd.domain.models import (
    CrmRecord,
    CrmType,
    Decision,
    LinkAction,
    Prospect,
    ProspectInput,
    SentEmail,
)
from syncd.domain.plan import Plan
from syncd.runtime.pipeline import settle as s
from syncd.runtime.pipeline.decide import NOT_FOUND, decide_one
from syncd.runtime.pipeline.stages import SYNC_META, Status, Work
from syncd.store.models import Link as StoredLink
from syncd.store.models import NewItem, QueueItem, Reason, State

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STAMP = datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
LEAD = "00Q000000000001AAA"
CONTACT = "003000000000001AAA"
RULES = s.RetryRules(base_s=30.0, max_attempts=3)


def item(n: int = 1, attempts: int = 1) -> QueueItem:
    return QueueItem(
        id=n, key=f"p:{n}", prospect_id=1001, crm_id=None, email=None,
        reasons=frozenset({"pardot_change"}), snapshot=None, state=State.CLAIMED,
        attempts=attempts, available_at=NOW, first_seen_at=NOW, enqueued_at=NOW, updated_at=NOW,
    )  # fmt: skip


def prospect() -> Prospect:
    return Prospect(id=1001, email="a@x.example", user_id=1, fields={}, updated_at=NOW)


def stored(crm_id: str = LEAD, base: dict[str, object] | None = None, **kw: object) -> StoredLink:
    return StoredLink(
        prospect_id=1001, crm_type="Lead" if crm_id.startswith("00Q") else "Contact",
        crm_id=crm_id, email="a@x.example", base=base or {"firstName": "Ann"},
        synced_at=NOW - timedelta(days=1), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def plan(action: LinkAction, crm_id: str | None = LEAD, **kw: object) -> Plan:
    kind = None if crm_id is None else (CrmType.LEAD if crm_id[:3] == "00Q" else CrmType.CONTACT)
    return Plan(prospect_id=1001, action=action, crm_type=kind, crm_id=crm_id, **kw)  # type: ignore[arg-type]


def work(p: Plan | None, **kw: object) -> Work:
    fields: dict[str, object] = {
        "items": (item(),), "prospect_id": 1001, "prospect": prospect(), "plan": p,
        "status": Status.APPLIED,
    }  # fmt: skip
    fields.update(kw)
    return Work(**fields)  # type: ignore[arg-type]


RETRIABLE = errors.RetriableAPIError(system="salesforce", status=503, code="SERVER", message="x")
PERMANENT = errors.PermanentAPIError(
    system="salesforce", status=400, code="REQUIRED_FIELD_MISSING", message="LastName"
)
SPENT = errors.BudgetExhaustedError(system="pardot", status=200, code="122", message="limit")

# -- final_link ----------------------------------------------------------------------------------

BASE = {"firstName": "Ann"}
NEW_BASE = {"firstName": "Anna"}

FINAL_LINK = [
    # (name, work, expected (crm_id, base without meta, crm_deleted) or None)
    ("no plan keeps what apply stored", work(None), None),
    (
        "link to an email match",
        work(plan(LinkAction.LINK, CONTACT, new_base=BASE)),
        (CONTACT, BASE, False),
    ),
    (
        "keep with nothing written and the same link: no store write",
        work(
            plan(LinkAction.KEEP, new_base=BASE),
            stored_link=stored(base={**BASE, SYNC_META: {"pardot_user_id": 1}}),
        ),
        None,
    ),
    (
        "keep with nothing written, but the assignee first known: written once",
        work(plan(LinkAction.KEEP, new_base=BASE), stored_link=stored(base=BASE)),
        (LEAD, BASE, False),
    ),
    (
        "keep with a new base: written",
        work(
            plan(LinkAction.KEEP, new_base=NEW_BASE, crm_update={"FirstName": "Anna"}),
            stored_link=stored(base=BASE),
        ),
        (LEAD, NEW_BASE, False),
    ),
    (
        "create lead: the created id is the target",
        work(
            Plan(
                prospect_id=1001,
                action=LinkAction.CREATE_LEAD,
                crm_type=CrmType.LEAD,
                crm_id=None,
                create_lead={"LastName": "X"},
                new_base=BASE,
            ),
            created_id=LEAD,
        ),
        (LEAD, BASE, False),
    ),
    (
        "mark deleted keeps the stored base",
        work(plan(LinkAction.MARK_DELETED), stored_link=stored(base=BASE)),
        (LEAD, BASE, True),
    ),
    (
        "skip stores nothing",
        work(plan(LinkAction.SKIP, None, skip_reason="unassigned")),
        None,
    ),
]


@pytest.mark.parametrize(("name", "w", "want"), FINAL_LINK, ids=[c[0] for c in FINAL_LINK])
def test_final_link(name: str, w: Work, want: tuple[str, dict[str, object], bool] | None) -> None:
    got = s.final_link(w, NOW)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert (
        got.crm_id,
        {k: v for k, v in got.base.items() if k != SYNC_META},
        got.crm_deleted,
    ) == want
    assert got.synced_at == NOW


def test_final_link_records_the_pardot_write_stamp_and_keeps_the_last_one() -> None:
    written = work(
        plan(LinkAction.KEEP, new_base=BASE, pardot_update={"firstName": "Ann"}),
        stored_link=stored(base=BASE),
        pardot_updated_at=STAMP,
    )
    got = s.final_link(written, NOW)
    assert got is not None
    assert got.base[SYNC_META]["pardot_updated_at"] == STAMP.isoformat()
    # Next time, a CRM-only write: the stamp of the last Pardot write stays.
    meta = {SYNC_META: {"pardot_updated_at": STAMP.isoformat()}}
    again = work(
        plan(LinkAction.KEEP, new_base=NEW_BASE, crm_update={"FirstName": "Anna"}),
        stored_link=stored(base={**BASE, **meta}),
    )
    got = s.final_link(again, NOW)
    assert got is not None
    assert got.base[SYNC_META]["pardot_updated_at"] == STAMP.isoformat()
    assert got.base["firstName"] == "Anna"


def test_final_link_records_the_assignee_and_the_crm_owner_syncd_left() -> None:
    record = CrmRecord(
        type=CrmType.LEAD, id=LEAD, email="a@x.example", fields={}, owner_id="005A",
        created_date=NOW, last_modified=NOW,
    )  # fmt: skip
    inp = ProspectInput(prospect=prospect(), link=None, linked=record)
    reassigned = work(
        plan(LinkAction.KEEP, new_base=NEW_BASE, pardot_update={"userId": 7}), inp=inp
    )
    got = s.final_link(reassigned, NOW)
    assert got is not None
    assert got.base[SYNC_META] == {"pardot_user_id": 7, "crm_owner_id": "005A"}
    queued = work(plan(LinkAction.KEEP, new_base=NEW_BASE, crm_update={"OwnerId": "00G1"}), inp=inp)
    got = s.final_link(queued, NOW)
    assert got is not None
    assert got.base[SYNC_META] == {"pardot_user_id": 1, "crm_owner_id": "00G1"}
    # The record was not read: its owner is unknown, so none is recorded (never an echo).
    unread = work(plan(LinkAction.KEEP, new_base=NEW_BASE, crm_update={"FirstName": "Anna"}))
    got = s.final_link(unread, NOW)
    assert got is not None and "crm_owner_id" not in got.base[SYNC_META]


def test_final_link_of_a_created_lead_falls_back_to_the_link_apply_stored() -> None:
    created = stored(base=BASE)
    w = work(plan(LinkAction.SKIP, None, skip_reason="x"), link_to_store=created)
    assert s.final_link(w, NOW) is created


# -- audit_lines ---------------------------------------------------------------------------------

DECISIONS = (
    Decision(action="crm_field", reason="pardot changed", field="firstName", old="A", new="B"),
)

AUDIT = [
    # (name, work, expected [(action, crm_id, reason-prefix)])
    ("a no-op keep tells nothing", work(plan(LinkAction.KEEP, decisions=DECISIONS)), []),
    (
        "decisions of a writing plan, on the target",
        work(plan(LinkAction.KEEP, crm_update={"FirstName": "B"}, decisions=DECISIONS)),
        [("crm_field", LEAD, "pardot changed")],
    ),
    (
        "a created lead's decisions name the created id",
        work(
            plan(LinkAction.CREATE_LEAD, None, create_lead={"LastName": "X"}, decisions=DECISIONS),
            created_id=LEAD,
        ),
        [("crm_field", LEAD, "pardot changed")],
    ),
    (
        "a bare skip says why",
        work(plan(LinkAction.SKIP, None, skip_reason="unassigned, no match")),
        [("skip", None, "unassigned, no match")],
    ),
    (
        "a retriable error is a retry line",
        work(plan(LinkAction.SKIP, None), status=Status.FAILED, error=RETRIABLE),
        [("retry", None, "salesforce SERVER: x")],
    ),
    (
        "a permanent error is an error line on the plan's record",
        work(plan(LinkAction.LINK, LEAD), status=Status.FAILED, error=PERMANENT),
        [("error", LEAD, "salesforce REQUIRED_FIELD_MISSING: LastName")],
    ),
]


@pytest.mark.parametrize(("name", "w", "want"), AUDIT, ids=[c[0] for c in AUDIT])
def test_audit_lines(name: str, w: Work, want: list[tuple[str, str | None, str]]) -> None:
    lines = s.audit_lines(w, NOW)
    assert [(x.action, x.crm_id) for x in lines] == [(a, c) for a, c, _ in want]
    for line, (_, _, reason) in zip(lines, want, strict=True):
        assert (line.reason or "").startswith(reason)
        assert line.at == NOW and line.prospect_id == 1001


# -- fate ----------------------------------------------------------------------------------------

SENT = (SentEmail(id=7, prospect_id=1001, subject="Hi", sent_at=NOW),)
CREATED = stored(base=BASE)

PAUSED = work(None, status=Status.PAUSED, paused=SPENT, link_to_store=CREATED)
RETRYING = work(None, status=Status.FAILED, error=RETRIABLE)
BROKEN = work(None, status=Status.FAILED, error=PERMANENT, link_to_store=CREATED)
REFUSED = work(
    None,
    status=Status.FAILED,
    error=errors.AuthError(system="salesforce", status=400, code="invalid_grant", message="no"),
    link_to_store=CREATED,
)
SKIPPED = work(plan(LinkAction.SKIP, None, skip_reason="x"))
WITH_EMAIL = SKIPPED.but(emails=SENT)
LOGGED = WITH_EMAIL.logged(7)

FATE = [
    # (name, work, attempts, email_activities, outcome, keeps the created link, emails dropped)
    ("done", SKIPPED, 1, True, "complete", False, None),
    ("paused: back without an attempt", PAUSED, 1, True, "release", True, None),
    ("retriable, attempts left", RETRYING, 1, True, "retry", False, None),
    ("retriable, attempts spent", RETRYING, 3, True, "fail", False, None),
    ("permanent: error queue at once", BROKEN, 1, True, "fail", True, None),
    ("login refused mid-batch: back, never parked", REFUSED, 1, True, "release", True, None),
    ("emails logged are dropped", LOGGED, 1, True, "complete", False, (1001, frozenset({7}))),
    ("emails not logged stay", WITH_EMAIL, 1, True, "complete", False, None),
    ("activities off: all dropped", WITH_EMAIL, 1, False, "complete", False, (1001, None)),
]


@pytest.mark.parametrize(
    ("name", "w", "attempts", "activities", "outcome", "keeps_link", "emails"),
    FATE,
    ids=[c[0] for c in FATE],
)
def test_fate(
    name: str,
    w: Work,
    attempts: int,
    activities: bool,
    outcome: str,
    keeps_link: bool,
    emails: tuple[int, frozenset[int] | None] | None,
) -> None:
    w = w.but(items=(item(1, attempts=attempts), item(2, attempts=attempts)))
    f = s.fate(w, NOW, rules=RULES, email_activities=activities, jitter=0.5)
    got = {
        "complete": list(f.complete),
        "release": list(f.release),
        "retry": [i.id for i, _, _ in f.retry],
        "fail": [i.id for i, _ in f.fail],
    }
    assert got == {k: ([1, 2] if k == outcome else []) for k in got}
    if keeps_link:
        assert f.link is CREATED
    assert f.emails_done == emails
    for _, _, at in f.retry:
        assert at > NOW


def test_settle_collects_every_fate_and_requeue_in_one_settlement() -> None:
    requeue = NewItem.for_prospect(2002, Reason.CRM_CHANGE, crm_id=CONTACT)
    works = [
        work(plan(LinkAction.LINK, CONTACT, new_base=BASE), items=(item(1),)),
        work(None, items=(item(2),), status=Status.FAILED, error=PERMANENT),
        work(None, items=(item(3),), status=Status.PAUSED, paused=SPENT),
        work(
            Plan(prospect_id=2002, action=LinkAction.SKIP, crm_type=None, crm_id=None),
            items=(item(4),),
            prospect_id=None,
            requeue=requeue,
        ),
    ]
    out = s.settle(works, NOW, rules=RULES, email_activities=True, jitter=lambda: 0.0)
    assert out.complete == (1, 4)
    assert [i.id for i, _ in out.fail] == [2]
    assert out.release == (3,)
    assert out.requeue == (requeue,)
    assert [link.crm_id for link in out.links] == [CONTACT]
    assert [line.action for line in out.audit] == ["error"]


# -- decide: skips are decisions, not written by grouping ----------------------------------------


def test_grouping_notes_become_skip_plans_when_decided() -> None:
    from syncd.domain.fieldmap import FieldMap
    from syncd.domain.models import Directory, SyncConfig

    directory = Directory(
        pardot_users={}, crm_users={}, queue_ids=frozenset(), connector_user_id="005"
    )
    config = SyncConfig(field_map=FieldMap.default())
    no_match = decide_one(
        Work(items=(item(),), skip_reason="no prospect or CRM record has the email a@x"),
        config=config, directory=directory, now=NOW,
    )  # fmt: skip
    assert no_match.status is Status.DECIDED and no_match.plan is not None
    assert no_match.plan.action is LinkAction.SKIP and no_match.plan.prospect_id is None
    handoff = decide_one(
        Work(items=(item(),), crm_id=CONTACT, handoff_to=2002),
        config=config, directory=directory, now=NOW,
    )  # fmt: skip
    assert handoff.plan is not None and handoff.plan.prospect_id == 2002
    assert handoff.requeue == NewItem.for_prospect(2002, Reason.CRM_CHANGE, crm_id=CONTACT)
    gone = decide_one(
        Work(items=(item(),), prospect_id=1001, status=Status.LOADED),
        config=config, directory=directory, now=NOW,
    )  # fmt: skip
    assert gone.plan is not None and gone.plan.skip_reason == NOT_FOUND
    failed = Work(items=(item(),), prospect_id=1001).failed(RETRIABLE)
    assert decide_one(failed, config=config, directory=directory, now=NOW) is failed
