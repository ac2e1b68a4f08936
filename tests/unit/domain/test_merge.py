"""Three-way field merge: every policy x {first sync, one side changed, both changed, blanks}."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from syncd.domain.fieldmap import FieldRule
from syncd.domain.merge import BASE_CRM, BASE_PARDOT, MISSING, merge_field, merge_record
from syncd.domain.models import CrmType, Policy

from . import FIELD_MAP, T0, contact, lead, prospect

N = MISSING  # no base: first sync
CRM, PARDOT, RECENT = Policy.CRM, Policy.PARDOT, Policy.RECENT
TO_P, TO_C = Policy.TO_PARDOT, Policy.TO_CRM

# (policy, blank_overwrites, pardot now, crm now, base pardot, base crm, pardot modified later,
#  expected write: None | ("pardot", value) | ("crm", value))
CASES: list[Any] = [
    # first sync
    ("first-equal", CRM, False, "A", "A", N, N, False, None),
    ("first-crm-master", CRM, False, "P", "C", N, N, False, ("pardot", "C")),
    ("first-pardot-master", PARDOT, False, "P", "C", N, N, False, ("crm", "P")),
    ("first-recent-pardot-later", RECENT, False, "P", "C", N, N, True, ("crm", "P")),
    ("first-recent-crm-later", RECENT, False, "P", "C", N, N, False, ("pardot", "C")),
    ("first-to-pardot", TO_P, False, "P", "C", N, N, False, ("pardot", "C")),
    ("first-to-crm", TO_C, False, "P", "C", N, N, True, ("crm", "P")),
    ("first-crm-fills-blank-pardot", CRM, False, None, "C", N, N, False, ("pardot", "C")),
    ("first-pardot-fills-blank-crm", CRM, False, "P", None, N, N, False, ("crm", "P")),
    ("first-blank-overwrites-crm-master", CRM, True, "P", None, N, N, False, ("pardot", None)),
    # only Pardot changed
    ("pardot-changed-crm", CRM, False, "P2", "A", "A", "A", False, ("crm", "P2")),
    ("pardot-changed-pardot", PARDOT, False, "P2", "A", "A", "A", False, ("crm", "P2")),
    (
        "pardot-changed-recent-even-if-older",
        RECENT,
        False,
        "P2",
        "A",
        "A",
        "A",
        False,
        ("crm", "P2"),
    ),
    ("pardot-changed-to-pardot-not-sent", TO_P, False, "P2", "A", "A", "A", True, None),
    ("pardot-changed-to-crm", TO_C, False, "P2", "A", "A", "A", True, ("crm", "P2")),
    # only the CRM changed (a stale Pardot value never undoes it, whatever the master)
    ("crm-changed-crm", CRM, False, "A", "C2", "A", "A", True, ("pardot", "C2")),
    ("crm-changed-pardot-master", PARDOT, False, "A", "C2", "A", "A", True, ("pardot", "C2")),
    ("crm-changed-recent", RECENT, False, "A", "C2", "A", "A", True, ("pardot", "C2")),
    ("crm-changed-to-pardot", TO_P, False, "A", "C2", "A", "A", False, ("pardot", "C2")),
    ("crm-changed-to-crm-not-sent", TO_C, False, "A", "C2", "A", "A", False, None),
    # both changed: the master wins
    ("both-changed-crm", CRM, False, "P2", "C2", "A", "A", True, ("pardot", "C2")),
    ("both-changed-pardot", PARDOT, False, "P2", "C2", "A", "A", False, ("crm", "P2")),
    ("both-changed-recent-pardot-later", RECENT, False, "P2", "C2", "A", "A", True, ("crm", "P2")),
    ("both-changed-recent-crm-later", RECENT, False, "P2", "C2", "A", "A", False, ("pardot", "C2")),
    ("both-changed-to-pardot", TO_P, False, "P2", "C2", "A", "A", True, ("pardot", "C2")),
    ("both-changed-to-crm", TO_C, False, "P2", "C2", "A", "A", False, ("crm", "P2")),
    # blank on one side: a value beats a blank both ways
    ("pardot-cleared-crm-refills", CRM, False, None, "A", "A", "A", True, ("pardot", "A")),
    (
        "pardot-cleared-pardot-master-refills",
        PARDOT,
        False,
        None,
        "A",
        "A",
        "A",
        True,
        ("pardot", "A"),
    ),
    ("crm-cleared-pardot-refills", CRM, False, "A", None, "A", "A", False, ("crm", "A")),
    ("crm-cleared-recent-refills", RECENT, False, "A", None, "A", "A", False, ("crm", "A")),
    ("to-pardot-crm-cleared-no-write", TO_P, False, "A", None, "A", "A", False, None),
    ("to-pardot-fills-blank-pardot", TO_P, False, None, "A", "A", "A", False, ("pardot", "A")),
    ("to-crm-pardot-cleared-no-write", TO_C, False, None, "A", "A", "A", False, None),
    ("to-crm-fills-blank-crm", TO_C, False, "A", None, "A", "A", False, ("crm", "A")),
    ("both-blank", CRM, False, None, "", "A", "A", False, None),
    # blank_overwrites: a blank is a value like any other
    ("bo-pardot-cleared-crm", CRM, True, None, "A", "A", "A", True, ("crm", None)),
    ("bo-pardot-cleared-pardot", PARDOT, True, None, "A", "A", "A", True, ("crm", None)),
    ("bo-crm-cleared-crm", CRM, True, "A", None, "A", "A", False, ("pardot", None)),
    ("bo-crm-cleared-pardot-master", PARDOT, True, "A", None, "A", "A", False, ("pardot", None)),
    ("bo-crm-cleared-to-pardot", TO_P, True, "A", None, "A", "A", False, ("pardot", None)),
    ("bo-pardot-cleared-to-crm", TO_C, True, None, "A", "A", "A", False, ("crm", None)),
    ("bo-both-changed-crm-blank-wins", CRM, True, "P2", None, "A", "A", True, ("pardot", None)),
    # normalised values: an echo is not a change
    ("echo-whitespace", CRM, False, " A ", "A", "A", "A", True, None),
    ("diverged-one-way-stays", TO_P, False, "P", "C", "P", "C", False, None),
]


@pytest.mark.parametrize(
    ("policy", "blank_overwrites", "p", "c", "bp", "bc", "pardot_later", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_merge_field(
    policy: Policy,
    blank_overwrites: bool,
    p: Any,
    c: Any,
    bp: Any,
    bc: Any,
    pardot_later: bool,
    expected: tuple[str, Any] | None,
) -> None:
    rule = FieldRule(
        pardot="city",
        crm_lead="City",
        crm_contact="MailingCity",
        policy=policy,
        blank_overwrites=blank_overwrites,
    )
    p_at, c_at = (
        (T0 + timedelta(minutes=1), T0) if pardot_later else (T0, T0 + timedelta(minutes=1))
    )
    out = merge_field(
        rule,
        CrmType.LEAD,
        pardot_raw=p,
        crm_raw=c,
        base_pardot=bp,
        base_crm=bc,
        pardot_updated_at=p_at,
        crm_last_modified=c_at,
    )
    got = (
        ("pardot", out.pardot_value)
        if out.write_pardot
        else ("crm", out.crm_value)
        if out.write_crm
        else None
    )
    assert got == expected
    assert not (out.write_pardot and out.write_crm)
    if got is not None:
        assert out.decision is not None
        assert out.decision.policy == policy.value
        assert out.decision.field == "city"
        assert out.decision.side == got[0]
    if got is not None:  # after a write both sides hold the same value, and the base says so
        assert out.base_pardot == out.base_crm


def test_recent_tie_goes_to_the_crm() -> None:
    rule = FieldRule(pardot="optedOut", crm_lead="X", crm_contact="X", policy=RECENT, kind="bool")
    out = merge_field(
        rule,
        CrmType.LEAD,
        pardot_raw=True,
        crm_raw=False,
        pardot_updated_at=T0,
        crm_last_modified=T0,
    )
    assert out.write_pardot and out.pardot_value is False


def test_clearing_a_required_crm_field_sends_the_placeholder() -> None:
    rule = FieldRule(
        pardot="lastName", crm_lead="LastName", crm_contact="LastName", blank_overwrites=True
    )
    out = merge_field(
        rule,
        CrmType.LEAD,
        pardot_raw="",
        crm_raw="Smith",
        base_pardot="Smith",
        base_crm="Smith",
        pardot_updated_at=T0,
        crm_last_modified=T0,
    )
    assert out.write_crm and out.crm_value == "[[unknown]]"


def test_placeholder_in_the_crm_is_never_copied_to_pardot() -> None:
    p = prospect(lastName=None, company=None)
    rec = lead(LastName="[[unknown]]", Company="[[unknown]]")
    merged = merge_record(FIELD_MAP, p, rec, {})
    assert "lastName" not in merged.pardot_update
    assert "company" not in merged.pardot_update


def test_merge_record_uses_the_contact_names_and_skips_lead_only_fields() -> None:
    p = prospect(company="Acme", city="Paris", score=5)
    rec = contact(MailingCity=None)
    merged = merge_record(FIELD_MAP, p, rec, {})
    assert dict(merged.crm_update) == {"MailingCity": "Paris", "pi__score__c": 5}
    assert "company" not in merged.base[BASE_PARDOT]
    assert merged.base[BASE_CRM]["city"] == "Paris"


def test_unloaded_field_is_left_alone_and_keeps_its_base() -> None:
    p = prospect(city="Paris")
    fields = dict(lead().fields)
    del fields["City"]
    rec = lead()
    rec = type(rec)(**{**{s: getattr(rec, s) for s in rec.__slots__}, "fields": fields})
    base = {"pardot": {"city": "Rome"}, "crm": {"city": "Rome"}}
    merged = merge_record(FIELD_MAP, p, rec, base)
    assert "City" not in merged.crm_update
    assert merged.base[BASE_CRM]["city"] == "Rome"
    assert any(d.action == "skip_fields" and "city" in d.reason for d in merged.decisions)


def test_merge_keys_are_sorted() -> None:
    p = prospect(city="Paris", phone="1", firstName="Jane", zip="75001")
    merged = merge_record(FIELD_MAP, p, lead(), {})
    assert list(merged.crm_update) == sorted(merged.crm_update)


@pytest.mark.parametrize(
    ("pardot", "crm", "base"),
    [
        pytest.param(
            "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z", id="crm-changed"
        ),
        pytest.param(None, "2026-02-01T00:00:00Z", None, id="pardot-blank"),
    ],
)
def test_read_only_pardot_field_is_never_written_to_pardot(
    pardot: Any, crm: Any, base: Any
) -> None:
    rule = FIELD_MAP.rule("lastActivityAt")
    assert rule is not None and rule.policy is PARDOT and rule.effective_policy is TO_C
    out = merge_field(
        rule,
        CrmType.LEAD,
        pardot_raw=pardot,
        crm_raw=crm,
        base_pardot=base,
        base_crm=base,
        pardot_updated_at=T0,
        crm_last_modified=T0,
    )
    assert not out.write_pardot and not out.write_crm


def test_read_only_pardot_field_still_flows_to_the_crm() -> None:
    p = prospect(createdAt="2026-01-01T00:00:00-05:00", lastActivityAt="2026-01-02T00:00:00Z")
    merged = merge_record(FIELD_MAP, p, lead(), {})
    assert dict(merged.crm_update) == {
        "pi__created_date__c": "2026-01-01T05:00:00Z",
        "pi__last_activity__c": "2026-01-02T00:00:00Z",
    }
