"""Realistic seed data at any size, for `syncd demo`, the benchmarks and the soak test.

`generate_seed(prospects=3000)` builds a world in the seed format of docs/interfaces.md, exercising
every rule: CRM records that overlap the prospects by email (Contacts and Leads, some emails held
by both and some by duplicate Leads), assigned and unassigned prospects, a Pardot user with no CRM
user, a CRM user with no Pardot user, blank fields on either side, and sent emails. The same
arguments always give the same data (a seeded generator), so runs can be compared.

The record life cycle (issue 15) is off by default and switched on by `Shape` shares (or
`Shape.life_cycle()`): merge losers (a deleted Lead with `MasterRecordId` naming the Lead a
prospect matches), prospects in Pardot's recycle bin (`isDeleted`), and opted-out pairs where
only one side is opted out and the OTHER side was edited later (the case a "most recent" rule
gets wrong). They are drawn from their own generator, so switching them on leaves the rest of the
world unchanged.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Katherine",
    "John",
    "Hedy",
    "Claude",
    "Annie",
    "Donald",
    "Shafi",
    "Leslie",
    "Sophie",
    "Niklaus",
    "Mary",
    "Vint",
    "Jean",
    "Bjarne",
    "Karen",
    "Guido",
]
LAST = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Johnson",
    "Backus",
    "Lamarr",
    "Shannon",
    "Easley",
    "Knuth",
    "Goldwasser",
    "Lamport",
    "Wilson",
    "Wirth",
    "Keller",
    "Cerf",
    "Sammet",
    "Stroustrup",
    "Sparck-Jones",
    "van-Rossum",
    "O'Neil",
    "Müller",
]
COMPANIES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Aperture",
    "Oscorp",
    "Gringotts",
    "Monarch",
    "Nakatomi",
    "Virtucon",
    "Dunder",
    "Prestige",
]
TITLES = ["CTO", "VP Marketing", "Engineer", "Head of Ops", "Analyst", "Founder", None]
SOURCES = ["Web", "Webinar", "Trade Show", "Partner", None]
SUBJECTS = [
    "Welcome to Acme",
    "Your trial starts today",
    "Webinar invitation",
    "Newsletter: what's new",
    "Case study: faster syncs",
    "Your quote",
]
GRADES = ["A+", "A", "A-", "B+", "B", "B-", "C+", "C", "D", "F"]
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Shape:
    """Proportions of the generated world (shares of the prospects)."""

    match_contact: float = 0.25
    match_lead: float = 0.25
    unassigned: float = 0.1
    duplicate_crm: float = 0.03
    no_crm_user_owner: float = 0.05
    emails_per_prospect: float = 0.4
    crm_only: float = 0.1  # CRM records with no prospect (share of prospects)
    # Sent emails whose `prospectId` is null, as the real API may answer (wire-formats C.3a)
    # (share of the emails; drawn from a second generator, so the rest of the world is the same).
    emails_without_prospect: float = 0.0
    # The record life cycle (shares of the prospects matched to a CRM record, or of all
    # prospects for `recycled`); drawn from a third generator.
    merge_losers: float = 0.0  # a deleted duplicate Lead merged into the matched Lead
    recycled: float = 0.0  # the prospect is in Pardot's recycle bin
    opted_out_pairs: float = 0.0  # one side opted out, the other edited later

    @classmethod
    def life_cycle(cls, share: float = 0.05) -> Shape:
        """The default world plus every life-cycle case at `share` each (demo, soak)."""
        return cls(merge_losers=share, recycled=share, opted_out_pairs=share)


def sf_id(prefix: str, n: int) -> str:
    """A Salesforce-looking 18-character id: 3-char key prefix, base-62 counter, fixed tail."""
    alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase
    body = ""
    x = n
    for _ in range(12):
        x, r = divmod(x, 62)
        body = alphabet[r] + body
    return f"{prefix}{body}AAA"


def _iso_sf(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _life_cycle(
    rng: Random,
    shape: Shape,
    prospects: list[dict[str, Any]],
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    leads: list[dict[str, Any]],
    lead_n: int,
) -> int:
    """Add merge losers, recycled prospects and opted-out pairs; returns the last Lead number."""
    if shape.merge_losers > 0:
        for _prospect, rec in pairs:
            if rec["Id"].startswith("00Q") and rng.random() < shape.merge_losers:
                lead_n += 1
                leads.append(
                    {
                        "Id": sf_id("00Q", lead_n),
                        "Email": rec["Email"],
                        "LastName": rec["LastName"],
                        "Company": rec["Company"],
                        "OwnerId": rec["OwnerId"],
                        "CreatedDate": rec["CreatedDate"],
                        "IsDeleted": True,
                        "MasterRecordId": rec["Id"],
                    }
                )
    if shape.opted_out_pairs > 0:
        early, late = EPOCH + timedelta(days=310), EPOCH + timedelta(days=320)
        for prospect, rec in pairs:
            if rng.random() >= shape.opted_out_pairs:
                continue
            if rng.random() < 0.5:  # opted out in Pardot, the CRM record edited later
                prospect.update(optedOut=True, updatedAt=early.isoformat())
                rec.update(HasOptedOutOfEmail=False, LastModifiedDate=_iso_sf(late))
            else:  # opted out in the CRM, the prospect edited later
                prospect.update(optedOut=False, updatedAt=late.isoformat())
                rec.update(HasOptedOutOfEmail=True, LastModifiedDate=_iso_sf(early))
    if shape.recycled > 0:
        for prospect in prospects:
            if rng.random() < shape.recycled:
                prospect["isDeleted"] = True
    return lead_n


def generate_seed(
    prospects: int = 3000,
    *,
    crm_records: int | None = None,
    emails: int | None = None,
    users: int = 8,
    seed: int = 7,
    shape: Shape = Shape(),
    oauth: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A seed document with `prospects` prospects and about as many CRM records.

    `crm_records` and `emails` fix those counts instead of the shape's shares (the benchmark asks
    for 50,000 prospects, 40,000 CRM records and 20,000 sent emails).
    """
    rng = Random(seed)
    oauth = oauth or {
        "client_id": "3MVG9demo.consumer.key",
        "client_secret": "demo-consumer-secret",
        "username": "connector@acme.example",
    }
    sf_users = [
        {
            "Id": sf_id("005", 1),
            "Username": oauth["username"],
            "Email": oauth["username"],
            "Name": "Sync Connector",
            "IsActive": True,
        }
    ]
    pd_users: list[dict[str, Any]] = [
        {
            "id": 1,
            "email": oauth["username"],
            "username": oauth["username"],
            "firstName": "Sync",
            "lastName": "Connector",
            "salesforceId": sf_users[0]["Id"],
        }
    ]
    for i in range(2, users + 2):
        first, last = FIRST[i % len(FIRST)], LAST[i % len(LAST)].replace("'", "")
        email = f"{first}.{last}.rep{i}@acme.example".lower()
        sf_users.append(
            {
                "Id": sf_id("005", i),
                "Username": email,
                "Email": email,
                "Name": f"{first} {last}",
                "IsActive": True,
            }
        )
        pd_users.append(
            {
                "id": i,
                "email": email,
                "username": email,
                "firstName": first,
                "lastName": last,
                "salesforceId": sf_users[-1]["Id"],
            }
        )
    # A Pardot user with no CRM username (Leads go to the connector user) ...
    no_crm_user = users + 2
    pd_users.append(
        {
            "id": no_crm_user,
            "email": "pat.nocrm@acme.example",
            "username": "pat.nocrm@acme.example",
            "firstName": "Pat",
            "lastName": "No-CRM",
            "salesforceId": None,
        }
    )
    # ... and a CRM user with no Pardot user (owner changes to them leave the prospect's assignee).
    crm_only_user = sf_id("005", users + 3)
    sf_users.append(
        {
            "Id": crm_only_user,
            "Username": "sam.crmonly@acme.example",
            "Email": "sam.crmonly@acme.example",
            "Name": "Sam CRM-Only",
            "IsActive": True,
        }
    )
    assignable = [u["id"] for u in pd_users if u["salesforceId"]]
    owners = [u["Id"] for u in sf_users[1:]]

    want_crm = (
        crm_records
        if crm_records is not None
        else int(prospects * (shape.match_contact + shape.match_lead + shape.crm_only))
    )
    prospects_out: list[dict[str, Any]] = []
    leads: list[dict[str, Any]] = []
    contacts: list[dict[str, Any]] = []
    lead_n = contact_n = 0

    def person(i: int) -> tuple[str, str, str, str]:
        first = FIRST[rng.randrange(len(FIRST))]
        last = LAST[rng.randrange(len(LAST))]
        suffix = rng.choice(["Inc", "Ltd", "GmbH", "LLC"])
        company = f"{COMPANIES[rng.randrange(len(COMPANIES))]} {suffix}"
        # Names keep their unicode; email local parts are ASCII, as Salesforce validates them.
        local = f"{first}.{last}".lower().replace("'", "").replace(" ", "").replace("ü", "ue")
        if i % 97 == 0:
            local += "+news"  # plus addressing must match exactly
        return first, last, company, f"{local}.{i}@{company.split()[0].lower()}.example"

    def crm_record(kind: str, email: str, first: str, last: str, company: str, age_d: int) -> None:
        nonlocal lead_n, contact_n
        created = EPOCH + timedelta(days=age_d, minutes=rng.randrange(1440))
        rec: dict[str, Any] = {
            "Email": email if rng.random() > 0.1 else email.upper(),  # case differs sometimes
            "FirstName": first if rng.random() > 0.2 else None,
            "LastName": last,
            "Title": rng.choice(TITLES),
            "Phone": f"+1 555 {rng.randrange(1000, 9999)}" if rng.random() > 0.4 else None,
            "LeadSource": rng.choice(SOURCES),
            "OwnerId": crm_only_user
            if rng.random() < shape.no_crm_user_owner
            else rng.choice(owners),
            "CreatedDate": _iso_sf(created),
        }
        if kind == "Lead":
            lead_n += 1
            rec["Id"] = sf_id("00Q", lead_n)
            rec["Company"] = company
            leads.append(rec)
        else:
            contact_n += 1
            rec["Id"] = sf_id("003", contact_n)
            contacts.append(rec)

    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    matched = 0
    max_matched = min(want_crm, int(prospects * (shape.match_contact + shape.match_lead)))
    for i in range(prospects):
        pid = 1000 + i
        first, last, company, email = person(i)
        roll = rng.random()
        assigned = rng.random() >= shape.unassigned
        prospect: dict[str, Any] = {
            "id": pid,
            "email": email,
            "firstName": first,
            "lastName": last if rng.random() > 0.05 else None,
            "company": company if rng.random() > 0.1 else None,
            "jobTitle": rng.choice(TITLES),
            "score": rng.randrange(0, 200),
            "grade": rng.choice(GRADES) if rng.random() > 0.3 else None,
            "source": rng.choice(SOURCES),
            "optedOut": rng.random() < 0.05,
        }
        if assigned:
            prospect["userId"] = (
                no_crm_user if rng.random() < shape.no_crm_user_owner else rng.choice(assignable)
            )
        prospects_out.append({k: v for k, v in prospect.items() if v is not None})
        if matched < max_matched and roll < shape.match_contact + shape.match_lead:
            matched += 1
            kind = "Contact" if roll < shape.match_contact else "Lead"
            crm_record(kind, email, first, last, company, rng.randrange(300))
            pairs.append((prospects_out[-1], (leads if kind == "Lead" else contacts)[-1]))
            if rng.random() < shape.duplicate_crm:  # a duplicate holding the same email
                crm_record("Lead", email, first, last, company + " (dup)", rng.randrange(300))
    # CRM-only records fill up to the requested count.
    i = prospects
    while len(leads) + len(contacts) < want_crm:
        first, last, company, email = person(i)
        crm_record("Lead" if rng.random() < 0.6 else "Contact", email, first, last, company, 100)
        i += 1

    lead_n = _life_cycle(Random(seed + 2), shape, prospects_out, pairs, leads, lead_n)

    want_emails = emails if emails is not None else int(prospects * shape.emails_per_prospect)
    sent: list[dict[str, Any]] = []
    orphans = Random(seed + 1)
    for n in range(want_emails):
        p = prospects_out[rng.randrange(len(prospects_out))]
        sent_at = EPOCH + timedelta(days=300 + rng.randrange(60), seconds=rng.randrange(86400))
        sent.append(
            {
                "id": 50_000 + n,
                "prospectId": (
                    None if orphans.random() < shape.emails_without_prospect else p["id"]
                ),
                "subject": rng.choice(SUBJECTS),
                "sentAt": sent_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    return {
        "salesforce": {
            "oauth": oauth,
            "users": sf_users,
            "queues": [{"Id": sf_id("00G", 1), "Name": "Inbound Leads"}],
            "leads": leads,
            "contacts": contacts,
            "assignment_rule": None,
            "duplicate_rule": False,
            "daily_api_limit": max(100_000, prospects * 2),
        },
        "pardot": {
            "business_unit_id": "0Uv000000000001AAA",
            "users": pd_users,
            "prospects": prospects_out,
            "emails": sent,
            "daily_api_limit": max(100_000, prospects * 4),
        },
    }
