"""The load stage's pure parts: what a batch asks the CRM for (`wanted_crm`) and each prospect's
decision input (`prospect_input`), the same function `syncd preflight` decides with."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd import errors
from syncd.domain.models import CrmRecord, CrmType, Prospect
from syncd.runtime.pipeline.load import CrmView, prospect_input, wanted_crm
from syncd.runtime.pipeline.stages import Work
from syncd.store.models import Link as StoredLink

NOW = datetime(2026, 3, 1, tzinfo=UTC)
LEAD = "00Q000000000001AAA"
LEAD2 = "00Q000000000002AAA"
CONTACT = "003000000000001AAA"
CONTACT2 = "003000000000002AAA"


def rec(crm_id: str, email: str = "a@x.example", **kw: object) -> CrmRecord:
    kind = CrmType.LEAD if crm_id.startswith("00Q") else CrmType.CONTACT
    return CrmRecord(
        type=kind, id=crm_id, email=email, fields={}, owner_id=None,
        created_date=NOW, last_modified=NOW, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def prospect(
    pid: int = 1001, email: str | None = "A@x.example", crm_id: str | None = None
) -> Prospect:
    return Prospect(id=pid, email=email, user_id=1, fields={}, updated_at=NOW, crm_id=crm_id)


def link(crm_id: str = LEAD, *, deleted: bool = False) -> StoredLink:
    return StoredLink(
        prospect_id=1001, crm_type="Lead", crm_id=crm_id, email="a@x.example",
        base={"firstName": "A", "_sync": {"pardot_updated_at": NOW.isoformat()}},
        synced_at=NOW, crm_deleted=deleted,
    )  # fmt: skip


def work(**kw: object) -> Work:
    return Work(items=(), prospect_id=1, **kw)  # type: ignore[arg-type]


FAILED = work(prospect=prospect(1)).failed(
    errors.RetriableAPIError(system="pardot", status=503, code="X", message="x")
)
WANTED = [
    # (name, work, (ids, emails, unlinked))
    ("unlinked: by email and mirror", work(prospect=prospect(1)), ([], ["A@x.example"], [1])),
    (
        "linked: by the link's id only",
        work(prospect=prospect(1), stored_link=link()),
        ([LEAD], [], []),
    ),
    (
        "link marked deleted: matches by email again",
        work(prospect=prospect(1), stored_link=link(deleted=True)),
        ([LEAD], ["A@x.example"], []),
    ),
    (
        "the native connector's link is a hint read by id",
        work(prospect=prospect(1, crm_id=CONTACT)),
        ([CONTACT], ["A@x.example"], [1]),
    ),
    ("no email: nothing to match", work(prospect=prospect(1, email=None)), ([], [], [1])),
    ("CRM-only: its record", Work(items=(), crm_id=LEAD2), ([LEAD2], [], [])),
    ("failed in load: nothing", FAILED, ([], [], [])),
]


@pytest.mark.parametrize(("name", "w", "want"), WANTED, ids=[c[0] for c in WANTED])
def test_wanted_crm(name: str, w: Work, want: tuple[list[str], list[str], list[int]]) -> None:
    assert wanted_crm([w]) == want


def view(*records: CrmRecord, mirror: dict[int, list[CrmRecord]] | None = None) -> CrmView:
    by_email: dict[str, list[CrmRecord]] = {}
    for r in records:
        by_email.setdefault((r.email or "").lower(), []).append(r)
    return CrmView(by_id={r.id[:15]: r for r in records}, by_email=by_email, by_mirror=mirror or {})


def test_candidates_leave_out_converted_leads_and_mark_the_taken_ones() -> None:
    converted = rec(LEAD, is_converted=True, converted_contact_id=CONTACT)
    inp = prospect_input(
        prospect(), None, (), view(converted, rec(LEAD2), rec(CONTACT2)), lambda c: c.id == LEAD2
    )
    assert sorted(c.id for c in inp.candidates) == [CONTACT2, LEAD2]
    assert inp.taken_crm_ids == frozenset({LEAD2})
    assert inp.link is None and inp.linked is None


def test_a_link_is_followed_by_id_to_a_converted_leads_contact() -> None:
    contact = rec(CONTACT)
    lead = rec(LEAD, is_converted=True, converted_contact_id=CONTACT)
    inp = prospect_input(prospect(), link(), (), view(lead, contact), lambda c: False)
    assert inp.linked is lead and inp.converted_contact is contact
    assert inp.link is not None and "_sync" not in inp.link.base  # bookkeeping stays in store


def test_with_no_link_a_mirrored_record_comes_first() -> None:
    mirrored = rec(LEAD2, is_converted=True, converted_contact_id=CONTACT)
    contact = rec(CONTACT)
    inp = prospect_input(
        prospect(crm_id=LEAD), None, (), view(contact, mirror={1001: [mirrored]}), lambda c: False
    )
    assert inp.mirrored == (mirrored,)
    assert inp.converted_contact is contact  # followed from the mirrored record, not the hint
