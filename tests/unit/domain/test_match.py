"""Matching a prospect to a CRM record (seed "Prospect syncing"; RULES.md section 2)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from syncd.domain.match import email_key, match_by_email, resolve
from syncd.domain.models import CrmRecord, CrmType, LinkAction, ProspectInput

from . import T0, contact, contact_id, lead, lead_id, link_to, prospect

P = prospect()


def _inp(**kw: Any) -> ProspectInput:
    kw.setdefault("prospect", P)
    kw.setdefault("link", None)
    kw.setdefault("linked", None)
    return ProspectInput(**kw)


# (id, input, expected action, expected crm id)
CASES: list[Any] = [
    ("contact-before-lead", _inp(candidates=(lead(1), contact(2))), LinkAction.LINK, contact_id(2)),
    ("lead-when-no-contact", _inp(candidates=(lead(1),)), LinkAction.LINK, lead_id(1)),
    ("create-when-none-and-assigned", _inp(), LinkAction.CREATE_LEAD, None),
    ("skip-when-none-and-unassigned", _inp(prospect=prospect(user=None)), LinkAction.SKIP, None),
    (
        "unassigned-still-links-to-existing",
        _inp(prospect=prospect(user=None), candidates=(lead(1),)),
        LinkAction.LINK,
        lead_id(1),
    ),
    (
        "duplicates-oldest-created",
        _inp(candidates=(contact(1, created=T0), contact(2, created=T0 - timedelta(days=1)))),
        LinkAction.LINK,
        contact_id(2),
    ),
    (
        "duplicates-same-created-lowest-id",
        _inp(candidates=(lead(7), lead(3), lead(5))),
        LinkAction.LINK,
        lead_id(3),
    ),
    (
        "deleted-and-converted-candidates-ignored",
        _inp(candidates=(lead(1, is_converted=True), contact(2, is_deleted=True), lead(3))),
        LinkAction.LINK,
        lead_id(3),
    ),
    (
        "email-case-insensitive",
        _inp(candidates=(contact(1, email="JANE@Acme.Example"),)),
        LinkAction.LINK,
        contact_id(1),
    ),
    (
        "never-create-when-a-record-exists",
        _inp(prospect=prospect(user=10), candidates=(lead(1),)),
        LinkAction.LINK,
        lead_id(1),
    ),
    ("deleted-prospect-skipped", _inp(prospect=prospect(is_deleted=True)), LinkAction.SKIP, None),
    ("no-email-skipped", _inp(prospect=prospect(email=None)), LinkAction.SKIP, None),
    (
        "crm-id-first",
        _inp(
            prospect=prospect(crm_id=lead_id(9)),
            linked=lead(9, email="old@acme.example"),
            candidates=(contact(1),),
        ),
        LinkAction.LINK,
        lead_id(9),
    ),
    (
        "crm-id-gone-falls-back-to-email",
        _inp(prospect=prospect(crm_id=lead_id(9)), candidates=(contact(1),)),
        LinkAction.LINK,
        contact_id(1),
    ),
    (
        "crm-id-gone-no-email-match-never-recreated",
        _inp(prospect=prospect(crm_id=lead_id(9))),
        LinkAction.MARK_DELETED,
        lead_id(9),
    ),
    (
        "linked-keeps",
        _inp(link=link_to(lead(1), P), linked=lead(1), candidates=(contact(2),)),
        LinkAction.KEEP,
        lead_id(1),
    ),
    (
        "linked-record-deleted",
        _inp(link=link_to(lead(1), P), linked=None),
        LinkAction.MARK_DELETED,
        lead_id(1),
    ),
    (
        "linked-record-in-recycle-bin",
        _inp(link=link_to(lead(1), P), linked=lead(1, is_deleted=True)),
        LinkAction.MARK_DELETED,
        lead_id(1),
    ),
    (
        "already-crm-deleted-skips-never-recreates",
        _inp(
            link=link_to(lead(1), P).__class__(
                prospect_id=P.id, crm_type=CrmType.LEAD, crm_id=lead_id(1), crm_deleted=True
            ),
            linked=None,
            candidates=(lead(2),),
        ),
        LinkAction.SKIP,
        lead_id(1),
    ),
    (
        "converted-lead-moves-to-contact",
        _inp(
            link=link_to(lead(1), P),
            linked=lead(1, is_converted=True, converted_contact_id=contact_id(4)),
            converted_contact=contact(4),
        ),
        LinkAction.MOVE_TO_CONTACT,
        contact_id(4),
    ),
    (
        "converted-lead-contact-deleted",
        _inp(
            link=link_to(lead(1), P),
            linked=lead(1, is_converted=True, converted_contact_id=contact_id(4)),
        ),
        LinkAction.MARK_DELETED,
        contact_id(4),
    ),
    (
        "crm-id-names-converted-lead",
        _inp(
            prospect=prospect(crm_id=lead_id(1)),
            linked=lead(1, is_converted=True, converted_contact_id=contact_id(4)),
            converted_contact=contact(4),
        ),
        LinkAction.LINK,
        contact_id(4),
    ),
    (
        "taken-records-left-to-their-prospect",
        _inp(candidates=(contact(1), lead(2)), taken_crm_ids=frozenset({contact_id(1)})),
        LinkAction.LINK,
        lead_id(2),
    ),
    (
        "all-taken-assigned-gets-own-lead",
        _inp(candidates=(contact(1),), taken_crm_ids=frozenset({contact_id(1)})),
        LinkAction.CREATE_LEAD,
        None,
    ),
]


@pytest.mark.parametrize(
    ("inp", "action", "crm_id"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_resolve(inp: ProspectInput, action: LinkAction, crm_id: str | None) -> None:
    match = resolve(inp)
    assert (match.action, match.crm_id) == (action, crm_id)
    assert match.reason


@pytest.mark.parametrize(
    ("prospect_email", "record_email", "matches"),
    [
        pytest.param("jane@acme.example", " Jane@ACME.example ", True, id="case-and-space"),
        pytest.param("jane+news@acme.example", "jane@acme.example", False, id="plus-is-exact"),
        pytest.param("jane+news@acme.example", "JANE+news@acme.example", True, id="plus-case"),
        pytest.param("o'brien@acme.example", "o'brien@acme.example", True, id="quote"),
        pytest.param("o'brien@acme.example", "obrien@acme.example", False, id="quote-exact"),
        pytest.param('"jane doe"@acme.example', '"jane doe"@acme.example', True, id="quoted-local"),
        pytest.param("jöhn@acme.example", "JÖHN@acme.example", True, id="unicode-case"),
        pytest.param("jöhn@acme.example", "john@acme.example", False, id="unicode-exact"),
        pytest.param("straße@acme.example", "strasse@acme.example", False, id="no-casefold"),
        pytest.param("jane@acme.example", "jane@acme.example.", False, id="trailing-dot"),
    ],
)
def test_nasty_emails(prospect_email: str, record_email: str, matches: bool) -> None:
    rec = lead(1, email=record_email)
    found = match_by_email(prospect_email, [rec])
    assert (found is rec) is matches


def test_email_key_blank() -> None:
    assert email_key("  ") is None
    assert email_key(None) is None


def test_duplicates_are_order_independent() -> None:
    records: list[CrmRecord] = [lead(n, created=T0 + timedelta(hours=n % 3)) for n in range(9)]
    first = match_by_email("jane@acme.example", records)
    assert first is not None
    assert match_by_email("jane@acme.example", list(reversed(records))) is first
    assert first.id == lead_id(0)
