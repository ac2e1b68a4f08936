"""The record life cycle (issue 15): merges, email changes, recycle bins, opt-outs.

Table-driven: each row is one situation a real org produces, and the plan `reconcile` (or
`merge_field`) must give for it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from syncd.domain.fieldmap import FieldMap, FieldRule
from syncd.domain.match import merge_survivor
from syncd.domain.merge import MISSING, merge_field
from syncd.domain.models import CrmType, LinkAction, Policy, ProspectInput, SyncConfig
from syncd.domain.plan import EMAIL_IN_USE, creates_prospect

from . import (
    CONFIG,
    FIELD_MAP,
    T0,
    apply_plan,
    contact,
    contact_id,
    lead,
    lead_id,
    link_to,
    prospect,
    run,
)

RECYCLE = replace(CONFIG, crm_delete_action="recycle")
LATER = T0 + timedelta(hours=2)


def _linked(p: Any, rec: Any, **kw: Any) -> ProspectInput:
    """`p` synced with `rec` before: the stored base is both sides as they are now."""
    first = run(ProspectInput(prospect=p, link=None, linked=rec, candidates=(rec,)))
    assert first.action is LinkAction.LINK and first.new_base is not None
    return ProspectInput(prospect=p, link=link_to(rec, p, first.new_base), linked=rec, **kw)


def _loser(rec: Any, master: str) -> Any:
    """`rec` as `queryAll` reads it after a merge: deleted, MasterRecordId = the survivor."""
    return replace(rec, is_deleted=True, master_record_id=master)


# --- merges ----------------------------------------------------------------------------------


def test_link_follows_a_merged_lead_to_the_survivor_and_score_reaches_it() -> None:
    p = prospect(score=50, firstName="Jane")
    loser = lead(1, firstName="Jane", pi__score__c=50)
    inp = _linked(p, loser)
    survivor = lead(2, created=T0 - timedelta(days=30), FirstName="Janet")
    merged = replace(inp, linked=_loser(loser, survivor.id), survivor=survivor)

    plan = run(merged)

    assert plan.action is LinkAction.MOVE_TO_SURVIVOR
    assert (plan.crm_type, plan.crm_id, plan.from_crm_id) == (CrmType.LEAD, lead_id(2), lead_id(1))
    assert plan.create_lead is None and plan.error is None and not plan.pardot_delete
    assert plan.decisions[0].reason.startswith(f"Lead {lead_id(1)} merged into Lead {lead_id(2)}")
    assert plan.decisions[0].new == lead_id(2)
    # First-sync rules against the survivor: Pardot is master for the score, the CRM for names.
    assert plan.crm_update["pi__score__c"] == 50
    assert plan.pardot_update["firstName"] == "Janet"
    # Applied, the next sync of the survivor is a no-op KEEP.
    again = run(apply_plan(plan, merged))
    assert again.action is LinkAction.KEEP and again.is_noop


def test_merge_base_is_re_read_first_sync_rules_against_the_survivor() -> None:
    """The old base would say "only the CRM changed the score" and copy 99 to Pardot; against
    the survivor there is no base, so the score's master (Pardot) wins."""
    p = prospect(score=10)
    loser = lead(1, pi__score__c=10)
    inp = _linked(p, loser)
    survivor = lead(2, pi__score__c=99)
    plan = run(replace(inp, linked=_loser(loser, survivor.id), survivor=survivor))
    assert plan.action is LinkAction.MOVE_TO_SURVIVOR
    assert plan.crm_update["pi__score__c"] == 10
    assert "score" not in plan.pardot_update


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        pytest.param(CONFIG, CrmType.LEAD, id="lead-mark"),
        pytest.param(RECYCLE, CrmType.LEAD, id="lead-recycle-a-merge-is-never-a-delete"),
        pytest.param(CONFIG, CrmType.CONTACT, id="contact"),
    ],
)
def test_a_merge_is_never_a_delete(config: SyncConfig, kind: CrmType) -> None:
    make = lead if kind is CrmType.LEAD else contact
    loser, survivor = make(1), make(2)
    inp = _linked(prospect(), loser)
    plan = run(replace(inp, linked=_loser(loser, survivor.id), survivor=survivor), config=config)
    assert plan.action is LinkAction.MOVE_TO_SURVIVOR
    assert (plan.crm_type, plan.crm_id) == (kind, survivor.id)
    assert not plan.pardot_delete and plan.create_lead is None


def test_merge_where_the_prospect_was_linked_to_the_survivor_changes_nothing() -> None:
    survivor = lead(2)
    inp = _linked(prospect(), survivor)
    plan = run(inp)
    assert plan.action is LinkAction.KEEP and plan.is_noop
    assert plan.crm_id == survivor.id


def test_merged_into_a_converted_lead_follows_on_to_its_contact() -> None:
    loser = lead(1)
    survivor = lead(2, is_converted=True, converted_contact_id=contact_id(7))
    inp = _linked(prospect(), loser)
    plan = run(
        replace(
            inp,
            linked=_loser(loser, survivor.id),
            survivor=survivor,
            converted_contact=contact(7),
        )
    )
    assert plan.action is LinkAction.MOVE_TO_SURVIVOR
    assert (plan.crm_type, plan.crm_id, plan.from_crm_id) == (
        CrmType.CONTACT,
        contact_id(7),
        lead_id(1),
    )
    assert "merged into Lead" in plan.decisions[0].reason


@pytest.mark.parametrize(
    ("survivor", "taken", "words"),
    [
        pytest.param(None, (), "not loaded", id="survivor-not-loaded"),
        pytest.param(lead(2, is_deleted=True), (), "deleted too", id="survivor-deleted-too"),
        pytest.param(lead(2), (lead_id(2),), "another prospect", id="survivor-taken"),
    ],
)
def test_merge_that_cannot_be_followed_is_skipped_never_marked_deleted(
    survivor: Any, taken: tuple[str, ...], words: str
) -> None:
    loser = lead(1)
    inp = _linked(prospect(), loser)
    plan = run(
        replace(
            inp,
            linked=_loser(loser, lead_id(2)),
            survivor=survivor,
            taken_crm_ids=frozenset(taken),
        ),
        config=RECYCLE,
    )
    assert plan.action is LinkAction.SKIP
    assert plan.skip_reason is not None and words in plan.skip_reason
    assert "merged into Lead" in plan.skip_reason
    assert plan.new_base is None and plan.writes == 0


def test_the_native_connectors_crm_id_naming_a_merge_loser_links_to_the_survivor() -> None:
    loser, survivor = lead(1), lead(2, email="other@acme.example")
    p = prospect(crm_id=loser.id)
    plan = run(
        ProspectInput(prospect=p, link=None, linked=_loser(loser, survivor.id), survivor=survivor)
    )
    assert plan.action is LinkAction.LINK
    assert plan.crm_id == survivor.id
    assert "merged into Lead" in plan.decisions[0].reason
    assert plan.create_lead is None


def test_a_merge_marked_crm_deleted_before_is_healed() -> None:
    """Before merges were followed a merge loser's link was marked crm_deleted for good; read
    with queryAll it names its survivor, and the link follows it."""
    loser, survivor = lead(1), lead(2)
    inp = _linked(prospect(), loser)
    assert inp.link is not None
    marked = replace(inp, link=replace(inp.link, crm_deleted=True))
    plan = run(replace(marked, linked=_loser(loser, survivor.id), survivor=survivor))
    assert plan.action is LinkAction.MOVE_TO_SURVIVOR and plan.crm_id == survivor.id
    # a real delete stays marked
    still = run(replace(marked, linked=replace(loser, is_deleted=True)))
    assert still.action is LinkAction.SKIP and "crm_deleted" in (still.skip_reason or "")


def test_survivor_of_a_merge_gets_no_prospect_of_its_own() -> None:
    config = replace(CONFIG, auto_create_prospects=True)
    inp = ProspectInput(
        prospect=None,
        link=None,
        linked=None,
        crm_record=lead(2, email="new@acme.example"),
        merged_prospect_ids=frozenset({1001}),
    )
    plan = run(inp, config=config)
    assert plan.action is LinkAction.SKIP and plan.pardot_create is None
    assert "survivor of a merge" in (plan.skip_reason or "")


A, B, C = lead(1), lead(2), lead(3)


@pytest.mark.parametrize(
    ("start", "known", "expected"),
    [
        pytest.param(_loser(A, B.id), [B], B, id="one-hop"),
        pytest.param(_loser(A, B.id), [_loser(B, C.id), C], C, id="merged-again-two-hops"),
        pytest.param(_loser(A, B.id[:15]), [B], B, id="15-char-master-id"),
        pytest.param(_loser(A, B.id), [], None, id="master-not-read"),
        pytest.param(_loser(A, B.id), [replace(B, is_deleted=True)], None, id="master-deleted"),
        pytest.param(_loser(A, B.id), [_loser(B, A.id), _loser(A, B.id)], None, id="loop"),
        pytest.param(A, [B], None, id="live-record-is-no-loser"),
        pytest.param(replace(A, is_deleted=True), [B], None, id="plain-delete"),
    ],
)
def test_merge_survivor_follows_the_chain(start: Any, known: list[Any], expected: Any) -> None:
    assert merge_survivor(start, {r.id: r for r in known}) == expected


# --- plain deletes: mark (default) or recycle ------------------------------------------------


@pytest.mark.parametrize(
    ("config", "action", "writes"),
    [
        pytest.param(CONFIG, LinkAction.MARK_DELETED, 0, id="mark"),
        pytest.param(RECYCLE, LinkAction.RECYCLE_PROSPECT, 1, id="recycle"),
    ],
)
def test_deleted_record_without_a_master_is_a_delete(
    config: SyncConfig, action: LinkAction, writes: int
) -> None:
    rec = lead(1)
    inp = _linked(prospect(), rec)
    for gone in (replace(rec, is_deleted=True), None):  # read by queryAll, or not at all
        plan = run(replace(inp, linked=gone), config=config)
        assert plan.action is action
        assert plan.writes == writes and plan.pardot_delete is (writes == 1)
        assert plan.crm_id == rec.id and plan.create_lead is None
        assert not plan.pardot_update and not plan.crm_update


def test_recycle_decision_names_the_setting() -> None:
    rec = lead(1)
    plan = run(replace(_linked(prospect(), rec), linked=None), config=RECYCLE)
    assert [d.action for d in plan.decisions] == ["mark_deleted", "recycle_prospect"]
    assert 'sync.crm_delete_action = "recycle"' in plan.decisions[1].reason


def test_crm_delete_action_is_checked() -> None:
    with pytest.raises(ValueError, match=r"sync\.crm_delete_action"):
        SyncConfig(field_map=FIELD_MAP, crm_delete_action="purge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sync\.opt_in_owner"):
        SyncConfig(field_map=FIELD_MAP, opt_in_owner="both")  # type: ignore[arg-type]


# --- email changes ---------------------------------------------------------------------------

NEW = "jane.doe@newco.example"


@pytest.mark.parametrize(
    ("pardot_email", "crm_email", "side", "written"),
    [
        pytest.param("jane@acme.example", NEW, "pardot", NEW, id="changed-in-the-crm"),
        pytest.param(NEW, "jane@acme.example", "crm", NEW, id="changed-in-pardot"),
        pytest.param(
            "jane@pardot.example",
            "jane@crm.example",
            "pardot",
            "jane@crm.example",
            id="changed-on-both-sides-the-email-policy-crm-decides",
        ),
    ],
)
def test_email_change_follows_and_the_link_holds(
    pardot_email: str, crm_email: str, side: str, written: str
) -> None:
    rec = lead(1)
    inp = _linked(prospect(), rec)
    assert inp.prospect is not None
    p2 = replace(inp.prospect, email=pardot_email, fields={**inp.prospect.fields})
    rec2 = replace(rec, email=crm_email)
    # Another Lead already has the new address: it must not attract the link.
    other = lead(5, email=NEW, created=T0 - timedelta(days=400))
    plan = run(replace(inp, prospect=p2, linked=rec2, candidates=(other, rec2)))
    assert plan.action is LinkAction.KEEP
    assert plan.crm_id == rec.id
    if side == "pardot":
        assert plan.pardot_update == {"email": written}
        assert "Email" not in plan.crm_update
    else:
        assert plan.crm_update == {"Email": written}
        assert "email" not in plan.pardot_update
    assert run(apply_plan(plan, replace(inp, prospect=p2, linked=rec2))).is_noop


@pytest.mark.parametrize(
    ("pardot_email", "crm_email", "target"),
    [
        pytest.param("jane@acme.example", NEW, "Pardot", id="crm-change-to-a-taken-address"),
        pytest.param(NEW, "jane@acme.example", "the CRM", id="pardot-change-to-a-taken-address"),
    ],
)
def test_new_email_another_linked_prospect_has_is_a_clear_error(
    pardot_email: str, crm_email: str, target: str
) -> None:
    rec = lead(1)
    inp = _linked(prospect(), rec)
    assert inp.prospect is not None
    p2 = replace(inp.prospect, email=pardot_email)
    plan = run(
        replace(
            inp,
            prospect=p2,
            linked=replace(rec, email=crm_email),
            email_owners={NEW.lower(): 2002},
        )
    )
    assert plan.action is LinkAction.FAIL
    assert plan.writes == 0 and plan.new_base is None
    assert plan.error is not None and plan.error.code == EMAIL_IN_USE
    assert (
        "prospect 2002" in plan.error.message and f"not written to {target}" in plan.error.message
    )
    assert "syncd errors retry" in plan.error.message
    assert plan.crm_id == rec.id  # the link is not moved
    assert [d.action for d in plan.decisions] == ["error"]


def test_email_held_by_this_same_prospect_is_no_clash() -> None:
    rec = lead(1)
    inp = _linked(prospect(), rec)
    plan = run(replace(inp, linked=replace(rec, email=NEW), email_owners={NEW: 1001}))
    assert plan.action is LinkAction.KEEP and plan.pardot_update == {"email": NEW}


# --- Pardot's recycle bin --------------------------------------------------------------------


def test_prospect_in_the_recycle_bin_is_skipped_and_syncs_again_once_restored() -> None:
    rec = lead(1, Title="CTO")
    inp = _linked(prospect(jobTitle="CTO"), rec)
    assert inp.prospect is not None
    changed = replace(rec, fields={**rec.fields, "Title": "CEO"}, last_modified=LATER)
    binned = replace(inp, prospect=replace(inp.prospect, is_deleted=True), linked=changed)

    plan = run(binned, config=RECYCLE)
    assert plan.action is LinkAction.SKIP
    assert plan.skip_reason is not None and "recycle bin" in plan.skip_reason
    assert plan.error is None and plan.writes == 0
    assert plan.new_base is None  # nothing stored: the skip is not sticky

    restored = run(replace(binned, prospect=inp.prospect))
    assert restored.action is LinkAction.KEEP
    assert restored.pardot_update == {"jobTitle": "CEO"}


def test_unlinked_prospect_in_the_recycle_bin_gets_no_lead() -> None:
    plan = run(ProspectInput(prospect=prospect(is_deleted=True), link=None, linked=None))
    assert plan.action is LinkAction.SKIP and plan.create_lead is None


@pytest.mark.parametrize(
    ("recycled", "action"),
    [
        pytest.param(frozenset({1001}), LinkAction.SKIP, id="its-prospect-is-in-the-bin"),
        pytest.param(frozenset(), LinkAction.CREATE_PROSPECT, id="no-prospect-at-all"),
    ],
)
def test_auto_create_never_re_creates_a_recycled_prospect(
    recycled: frozenset[int], action: LinkAction
) -> None:
    config = replace(CONFIG, auto_create_prospects=True)
    inp = ProspectInput(
        prospect=None, link=None, linked=None, crm_record=lead(3), recycled_prospect_ids=recycled
    )
    plan = run(inp, config=config)
    assert plan.action is action
    if action is LinkAction.SKIP:
        assert plan.skip_reason is not None and "recycle bin" in plan.skip_reason
        assert plan.pardot_create is None


@pytest.mark.parametrize(
    ("inp", "auto_create", "creates"),
    [
        pytest.param(dict(crm_record=lead(3)), True, True, id="would-create"),
        pytest.param(dict(crm_record=lead(3)), False, False, id="auto-create-off"),
        pytest.param(dict(crm_record=None), True, False, id="no-record"),
        pytest.param(dict(crm_record=replace(lead(3), email=" ")), True, False, id="no-email"),
        pytest.param(
            dict(crm_record=lead(3), merged_prospect_ids={1001}), True, False, id="merged"
        ),
    ],
)
def test_creates_prospect_is_what_reconcile_does(
    inp: dict[str, Any], auto_create: bool, creates: bool
) -> None:
    """The load stage reads the recycle bin and merge losers only where this says yes."""
    config = replace(CONFIG, auto_create_prospects=auto_create)
    full = ProspectInput(prospect=None, link=None, linked=None, **inp)
    assert creates_prospect(full, config) is creates
    assert (run(full, config=config).action is LinkAction.CREATE_PROSPECT) is creates


# --- opt-outs: opt_out_wins ------------------------------------------------------------------

OPT = FieldRule(
    pardot="optedOut",
    crm_lead="HasOptedOutOfEmail",
    crm_contact="HasOptedOutOfEmail",
    policy=Policy.OPT_OUT_WINS,
    kind="bool",
)
M = MISSING


@pytest.mark.parametrize(
    ("p", "c", "base_p", "base_c", "owner", "p_after", "c_after", "words"),
    [
        # The two cases: first link, no base, the other side edited later.
        pytest.param(True, False, M, M, "pardot", True, True, "first sync",
                     id="why-1-opted-out-in-pardot-contact-edited-later"),
        pytest.param(False, True, M, M, "pardot", True, True, "first sync",
                     id="why-2-opted-out-in-salesforce-prospect-edited-later"),
        # An opt-out on the CRM meets a stale opt-in on Pardot within one poll.
        pytest.param(False, True, False, False, "pardot", True, True, "opted out in the CRM",
                     id="crm-opt-out-meets-stale-pardot-opt-in"),
        pytest.param(True, False, False, False, "pardot", True, True, "opted out in Pardot",
                     id="pardot-opt-out-travels"),
        pytest.param(True, None, False, False, "pardot", True, True, "opted out in Pardot",
                     id="blank-is-not-opted-out"),
        # Opt-ins (clearing) travel only from the owner.
        pytest.param(False, True, True, True, "pardot", False, False, "the opt-in travels",
                     id="opt-in-from-pardot-the-owner-travels"),
        pytest.param(True, False, True, True, "pardot", True, True, "not applied",
                     id="opt-in-from-the-crm-is-undone"),
        pytest.param(True, False, True, True, "crm", False, False, "the opt-in travels",
                     id="owner-crm-opt-in-from-the-crm-travels"),
        pytest.param(False, True, True, True, "crm", True, True, "not applied",
                     id="owner-crm-opt-in-from-pardot-is-undone"),
        # Neither side recorded anything since an inconsistent base: the opt-out holds.
        pytest.param(True, False, True, False, "crm", True, True, "never undone",
                     id="no-change-since-the-base-opt-out-holds"),
        pytest.param(True, True, M, M, "pardot", True, True, None, id="both-opted-out"),
        pytest.param(False, False, M, M, "pardot", False, False, None, id="neither"),
    ],
)  # fmt: skip
def test_opt_out_wins(
    p: bool,
    c: bool | None,
    base_p: Any,
    base_c: Any,
    owner: str,
    p_after: bool,
    c_after: bool,
    words: str | None,
) -> None:
    out = merge_field(
        OPT,
        CrmType.CONTACT,
        pardot_raw=p,
        crm_raw=c,
        base_pardot=base_p,
        base_crm=base_c,
        pardot_updated_at=T0 if p else LATER,  # the other side was edited later
        crm_last_modified=T0 if c else LATER,
        opt_in_owner=owner,
    )
    assert (out.base_pardot, out.base_crm) == (p_after, c_after)
    assert out.write_pardot is (p_after != p)
    assert out.write_crm is (c_after != bool(c))
    if out.write_pardot:
        assert out.pardot_value is p_after
    if out.write_crm:
        assert out.crm_value is c_after
    if words is None:
        assert out.decision is None
    else:
        assert out.decision is not None
        assert out.decision.policy == "opt_out_wins"
        assert out.decision.reason.startswith("opt_out_wins:") and words in out.decision.reason


def test_recent_stays_available_and_still_lets_the_later_edit_win() -> None:
    out = merge_field(
        replace(OPT, policy=Policy.RECENT),
        CrmType.CONTACT,
        pardot_raw=True,
        crm_raw=False,
        pardot_updated_at=T0,
        crm_last_modified=LATER,
    )
    assert out.write_pardot and out.pardot_value is False


def test_opt_out_wins_needs_a_flag() -> None:
    with pytest.raises(ValueError, match='kind = "bool"'):
        FieldMap.default().with_overrides({"jobTitle": {"policy": "opt_out_wins"}})


@pytest.mark.parametrize(
    ("p_opted", "c_opted", "p_at", "c_at"),
    [
        pytest.param(True, False, T0, LATER, id="why-1-pardot-opt-out-contact-edited-later"),
        pytest.param(False, True, LATER, T0, id="why-2-crm-opt-out-prospect-edited-later"),
    ],
)
def test_first_link_never_undoes_an_unsubscribe(
    p_opted: bool, c_opted: bool, p_at: Any, c_at: Any
) -> None:
    """The issue's "Why": after the first `syncd once` both sides are opted out."""
    p = prospect(optedOut=p_opted, updated_at=p_at)
    rec = contact(1, HasOptedOutOfEmail=c_opted, modified=c_at)
    inp = ProspectInput(prospect=p, link=None, linked=None, candidates=(rec,))
    plan = run(inp)
    assert plan.action is LinkAction.LINK
    after = apply_plan(plan, inp)
    assert after.prospect is not None and after.linked is not None
    assert after.prospect.fields["optedOut"] is True
    assert after.linked.fields["HasOptedOutOfEmail"] is True
    decision = next(d for d in plan.decisions if d.field == "optedOut")
    assert decision.policy == "opt_out_wins"
    assert run(after).is_noop


def test_opt_in_owner_reaches_the_merge_through_reconcile() -> None:
    rec = contact(1, HasOptedOutOfEmail=True)
    inp = _linked(prospect(optedOut=True), rec)
    cleared = replace(inp, linked=replace(rec, fields={**rec.fields, "HasOptedOutOfEmail": False}))
    assert run(cleared).pardot_update == {}
    assert run(cleared).crm_update == {"HasOptedOutOfEmail": True}
    crm_owns = run(cleared, config=replace(CONFIG, opt_in_owner="crm"))
    assert crm_owns.pardot_update == {"optedOut": False}
