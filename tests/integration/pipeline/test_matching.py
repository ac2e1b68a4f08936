"""RULES sections 2 and 3, end to end: matching, Lead creation, conversion, deletion."""

from __future__ import annotations

import json
from typing import Any

from .conftest import DANA, OMAR, MakeSync, base_seed


def seed_with(**parts: list[dict[str, Any]]) -> dict[str, Any]:
    seed = base_seed()
    for key, rows in parts.items():
        side = "pardot" if key in ("prospects", "emails") else "salesforce"
        seed[side][key] = rows
    return seed


async def test_contact_with_the_same_email_is_linked(make_sync: MakeSync) -> None:
    s = make_sync(
        seed_with(
            prospects=[{"id": 1, "email": "Ada@Example.com", "userId": 2, "firstName": "Ada"}],
            contacts=[{"Id": "003000000000001AAA", "Email": "ada@example.com",
                       "LastName": "Lovelace", "OwnerId": DANA}],
        )
    )  # fmt: skip
    assert await s.once() == 0
    assert await s.crm_id_of(1) == "003000000000001AAA"
    assert not s.prospect(1).get("salesforceId")  # read-only in Pardot: never written
    assert s.leads() == []  # no Lead created
    assert s.contacts("ada@example.com")[0]["FirstName"] == "Ada"  # blank CRM field filled


async def test_lead_with_the_same_email_is_linked(make_sync: MakeSync) -> None:
    s = make_sync(
        seed_with(
            prospects=[{"id": 1, "email": "alan@example.com", "userId": 3}],
            leads=[{"Id": "00Q000000000001AAA", "Email": "ALAN@example.com", "LastName": "T",
                    "Company": "B", "OwnerId": OMAR}],
        )
    )  # fmt: skip
    assert await s.once() == 0
    assert await s.crm_id_of(1) == "00Q000000000001AAA"
    assert len(s.leads()) == 1


async def test_contact_beats_lead(make_sync: MakeSync) -> None:
    s = make_sync(
        seed_with(
            prospects=[{"id": 1, "email": "both@example.com", "userId": 2}],
            leads=[{"Id": "00Q000000000001AAA", "Email": "both@example.com", "LastName": "L",
                    "Company": "C", "CreatedDate": "2020-01-01T00:00:00.000+0000"}],
            contacts=[{"Id": "003000000000001AAA", "Email": "both@example.com",
                       "LastName": "C", "CreatedDate": "2024-01-01T00:00:00.000+0000"}],
        )
    )  # fmt: skip
    assert await s.once() == 0
    assert await s.crm_id_of(1) == "003000000000001AAA"


async def test_duplicates_link_to_the_oldest_record(make_sync: MakeSync) -> None:
    s = make_sync(
        seed_with(
            prospects=[{"id": 1, "email": "dup@example.com", "userId": 2}],
            leads=[
                {"Id": "00Q000000000002AAA", "Email": "dup@example.com", "LastName": "New",
                 "Company": "C", "CreatedDate": "2025-08-01T09:00:00.000+0000"},
                {"Id": "00Q000000000003AAA", "Email": "dup@example.com", "LastName": "Old",
                 "Company": "C", "CreatedDate": "2025-05-01T09:00:00.000+0000"},
            ],
        )
    )  # fmt: skip
    assert await s.once() == 0
    assert await s.crm_id_of(1) == "00Q000000000003AAA"
    assert len(s.leads()) == 2  # nothing created


async def test_assigned_prospect_creates_exactly_one_lead(make_sync: MakeSync) -> None:
    s = make_sync(
        seed_with(
            prospects=[{"id": 1, "email": "new@example.com", "userId": 2, "firstName": "Nia",
                        "lastName": "Okafor", "company": "Startup"}]
        )
    )  # fmt: skip
    assert await s.once() == 0
    leads = s.leads("new@example.com")
    assert len(leads) == 1
    lead = leads[0]
    assert (lead["FirstName"], lead["LastName"], lead["Company"]) == ("Nia", "Okafor", "Startup")
    assert lead["OwnerId"] == DANA  # the assignee's CRM user
    assert await s.crm_id_of(1) == lead["Id"]
    # Later runs, a reprocess and a change never create a second Lead.
    s.pd.edit_prospect(1, {"jobTitle": "CEO"})
    assert await s.reprocess("1") == 0
    assert await s.once() == 0
    assert await s.once() == 0
    assert len(s.leads("new@example.com")) == 1
    assert s.leads("new@example.com")[0]["Title"] == "CEO"


async def test_missing_required_fields_are_sent_as_unknown(make_sync: MakeSync) -> None:
    s = make_sync(seed_with(prospects=[{"id": 1, "email": "kim@example.com", "userId": 2}]))
    assert await s.once() == 0
    lead = s.leads("kim@example.com")[0]
    assert lead["LastName"] == "[[unknown]]"
    assert lead["Company"] == "[[unknown]]"
    # The placeholder is never copied back to Pardot.
    assert not s.prospect(1).get("lastName")
    assert not s.prospect(1).get("company")


async def test_unassigned_prospect_syncs_once_assigned(make_sync: MakeSync) -> None:
    s = make_sync(seed_with(prospects=[{"id": 1, "email": "una@example.com", "lastName": "S"}]))
    assert await s.once() == 0
    assert s.leads("una@example.com") == []
    assert not await s.crm_id_of(1)
    assert "unassigned" in " ".join(line["reason"] or "" for line in await s.history_lines(1))
    s.pd.edit_prospect(1, {"userId": 3})
    assert await s.once() == 0
    leads = s.leads("una@example.com")
    assert len(leads) == 1
    assert leads[0]["OwnerId"] == OMAR
    assert await s.crm_id_of(1) == leads[0]["Id"]


async def test_converted_lead_moves_the_link_to_its_contact(make_sync: MakeSync) -> None:
    s = make_sync(
        seed_with(
            prospects=[{"id": 1, "email": "conv@example.com", "userId": 2}],
            leads=[{"Id": "00Q000000000001AAA", "Email": "conv@example.com", "LastName": "C",
                    "Company": "Co", "OwnerId": DANA}],
        )
    )  # fmt: skip
    assert await s.once() == 0
    assert await s.crm_id_of(1) == "00Q000000000001AAA"
    contact_id = s.sf.convert_lead("00Q000000000001AAA")
    assert await s.once() == 0
    assert await s.crm_id_of(1) == contact_id
    # The Contact now syncs: a Pardot change reaches it.
    s.pd.edit_prospect(1, {"jobTitle": "VP"})
    assert await s.once() == 0
    assert s.sf.get("Contact", contact_id)["Title"] == "VP"
    assert len(s.leads()) == 1 and len(s.contacts()) == 1


async def test_deleted_crm_record_is_marked_and_never_recreated(make_sync: MakeSync) -> None:
    s = make_sync(
        seed_with(
            prospects=[{"id": 1, "email": "del@example.com", "userId": 2}],
            leads=[{"Id": "00Q000000000001AAA", "Email": "del@example.com", "LastName": "D",
                    "Company": "Co"}],
        )
    )  # fmt: skip
    assert await s.once() == 0
    s.sf.remove("Lead", "00Q000000000001AAA")
    assert await s.once() == 0
    s.pd.edit_prospect(1, {"jobTitle": "Still here"})
    assert await s.reprocess("1") == 0
    assert await s.once() == 0
    assert s.leads("del@example.com") == []  # never re-created
    lines = await s.history_lines(1)
    assert any(line["action"] == "mark_deleted" for line in lines)
    assert any("crm_deleted" in (line["reason"] or "") for line in lines)


async def test_nasty_emails_match_exactly(make_sync: MakeSync) -> None:
    quote = "o'brien+news@quotes.example"
    uni = "jürgen.müller@exämple.de"
    s = make_sync(
        seed_with(
            prospects=[
                {"id": 1, "email": quote, "userId": 2},
                {"id": 2, "email": uni, "userId": 2},
                {"id": 3, "email": "obrien+news@quotes.example", "userId": 2},
            ],
            contacts=[
                {"Id": "003000000000001AAA", "Email": quote, "LastName": "O'Brien"},
            ],
        )
    )  # fmt: skip
    # Salesforce refuses a non-ASCII address: that prospect is reported, the others sync.
    assert await s.once() == 1
    assert await s.crm_id_of(1) == "003000000000001AAA"
    # No near-miss match: the address without the quote is another person.
    assert await s.crm_id_of(3) != "003000000000001AAA"
    assert len(s.leads("obrien+news@quotes.example")) == 1
    assert s.leads(uni) == []
    assert await s.errors("list", as_json=True) == 0
    [error] = json.loads(s.last_out)
    assert (error["prospect_id"], error["code"]) == (2, "INVALID_EMAIL_ADDRESS")
