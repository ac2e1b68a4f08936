"""Is a feed row syncd's own write coming back? (`domain.echo`, table-driven)

The base is made by the real merge (`merge_record`) of a prospect with a Lead whose Company
fills the prospect's blank one; the "after" rows are what each side holds once syncd wrote.
When unsure the answer must be "not an echo": a skipped real change is lost.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from syncd.domain import echo
from syncd.domain.merge import merge_record
from syncd.domain.models import CrmRecord, Prospect

from . import FIELD_MAP, T0, lead, prospect, user_id

STAMP = T0 + timedelta(hours=1)  # the updatedAt syncd's PATCH answered with
OWNER = user_id(10)

BEFORE = prospect(firstName="Jane", lastName="Doe")
LEAD = lead(FirstName="Jane", LastName="Doe", Company="Acme", owner=OWNER)
MERGED = merge_record(FIELD_MAP, BEFORE, LEAD, {})
assert dict(MERGED.pardot_update) == {"company": "Acme"}  # the write syncd made
META = {
    "pardot_updated_at": STAMP.isoformat(),
    "pardot_user_id": 10,
    "crm_owner_id": OWNER,
}
BASE: dict[str, Any] = {**MERGED.base, echo.SYNC_META: META}
AFTER = prospect(firstName="Jane", lastName="Doe", company="Acme", updated_at=STAMP)


def _without(base: dict[str, Any], side: str, name: str) -> dict[str, Any]:
    return {**base, side: {k: v for k, v in base[side].items() if k != name}}


def _meta(**changes: Any) -> dict[str, Any]:
    meta = {k: v for k, v in {**META, **changes}.items() if v is not None}
    return {**BASE, echo.SYNC_META: meta}


def _unloaded(p: Prospect, name: str) -> Prospect:
    return replace(p, fields={k: v for k, v in p.fields.items() if k != name})


PARDOT_CASES: list[tuple[str, Prospect, dict[str, Any], bool, bool]] = [
    # (name, feed row, stored base, crm_deleted, echo?)
    ("syncd's own write, stamped as its answer", AFTER, BASE, False, True),
    ("an older stamp than syncd's write", replace(AFTER, updated_at=STAMP - timedelta(1)), BASE,
     False, True),
    # Pardot stamps in whole seconds: an edit in the same second carries the same stamp.
    ("another edit in the same second", prospect(firstName="Jane", lastName="Doe",
     company="Acme", jobTitle="CEO", updated_at=STAMP), BASE, False, False),
    ("the same second, syncd's value undone", prospect(firstName="Jane", lastName="Doe",
     company="Other", updated_at=STAMP), BASE, False, False),
    ("a blank put back in the same second", prospect(firstName="Jane", lastName="Doe",
     updated_at=STAMP), BASE, False, False),
    ("edited a second later, values back as they were", replace(AFTER,
     updated_at=STAMP + timedelta(seconds=1)), BASE, False, False),
    ("reassigned in the same second", replace(AFTER, user_id=15), BASE, False, False),
    ("no Pardot write recorded", AFTER, _meta(pardot_updated_at=None), False, False),
    ("assignee not recorded (an older release's link)", AFTER, _meta(pardot_user_id=None),
     False, False),
    ("no merge base at all", AFTER, {echo.SYNC_META: META}, False, False),
    ("a mapped field never merged (mapped since)", AFTER,
     _without(BASE, "pardot", "jobTitle"), False, False),
    ("a mapped field not read", _unloaded(AFTER, "jobTitle"), BASE, False, False),
    ("the record was deleted in the CRM", AFTER, BASE, True, False),
    ("the prospect is in the recycle bin", replace(AFTER, is_deleted=True), BASE, False, False),
    # The merge reads a blank opt-out as "not opted out".
    ("opt-out blank against a stored false", prospect(firstName="Jane", lastName="Doe",
     company="Acme", optedOut=None, updated_at=STAMP), BASE, False, True),
    ("opted out in the same second", prospect(firstName="Jane", lastName="Doe",
     company="Acme", optedOut=True, updated_at=STAMP), BASE, False, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "row", "base", "deleted", "want"), PARDOT_CASES, ids=[c[0] for c in PARDOT_CASES]
)
def test_pardot_echo(
    name: str, row: Prospect, base: dict[str, Any], deleted: bool, want: bool
) -> None:
    got = echo.is_pardot_echo(
        row, base=base, crm_type=LEAD.type, crm_deleted=deleted, field_map=FIELD_MAP
    )
    assert got is want


CRM_AFTER = LEAD  # syncd wrote nothing to the Lead: it already held the merged values


def _crm(**kw: Any) -> CrmRecord:
    fields = {"FirstName": "Jane", "LastName": "Doe", "Company": "Acme", **kw.pop("fields", {})}
    return lead(**{"owner": OWNER, **kw}, **fields)


CRM_CASES: list[tuple[str, CrmRecord, str, dict[str, Any], bool, bool]] = [
    # (name, feed row, linked CRM id, stored base, crm_deleted, echo?)
    ("syncd's own write", CRM_AFTER, LEAD.id, BASE, False, True),
    ("the link kept the 15-character id", CRM_AFTER, LEAD.id[:15], BASE, False, True),
    ("a mapped field edited", _crm(fields={"Title": "CEO"}), LEAD.id, BASE, False, False),
    ("a value blanked", _crm(fields={"Company": None}), LEAD.id, BASE, False, False),
    ("a new owner (the owner rule reads it)", _crm(owner=user_id(15)), LEAD.id, BASE, False,
     False),
    ("owner not recorded", CRM_AFTER, LEAD.id, _meta(crm_owner_id=None), False, False),
    ("converted to a Contact", _crm(is_converted=True), LEAD.id, BASE, False, False),
    ("deleted (a merge loser)", _crm(is_deleted=True), LEAD.id, BASE, False, False),
    ("the link names another record", CRM_AFTER, lead(2).id, BASE, False, False),
    ("the link is marked crm_deleted", CRM_AFTER, LEAD.id, BASE, True, False),
    ("a mapped field never merged", CRM_AFTER, LEAD.id, _without(BASE, "crm", "jobTitle"), False,
     False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "row", "linked", "base", "deleted", "want"),
    CRM_CASES,
    ids=[c[0] for c in CRM_CASES],
)
def test_crm_echo(
    name: str, row: CrmRecord, linked: str, base: dict[str, Any], deleted: bool, want: bool
) -> None:
    got = echo.is_crm_echo(
        row, linked_crm_id=linked, base=base, crm_deleted=deleted, field_map=FIELD_MAP
    )
    assert got is want


def test_the_stamp_alone_never_makes_an_echo() -> None:
    """Every mapped field, changed alone in the same second as syncd's write, is queued."""
    for rule in FIELD_MAP.synced_rules(LEAD.type):
        if rule.pardot == "email":
            continue  # `email` is also the prospect's own attribute: covered below
        value: Any = True if rule.kind == "bool" else 7 if rule.kind in ("int", "float") else "X"
        if rule.kind in ("date", "datetime"):
            value = "2031-02-03"
        row = replace(AFTER, fields={**AFTER.fields, rule.pardot: value})
        assert not echo.is_pardot_echo(
            row, base=BASE, crm_type=LEAD.type, crm_deleted=False, field_map=FIELD_MAP
        ), rule.pardot
    other_email = replace(AFTER, email="other@acme.example")
    assert not echo.is_pardot_echo(
        other_email, base=BASE, crm_type=LEAD.type, crm_deleted=False, field_map=FIELD_MAP
    )
