"""The benchmark's worlds: today's shape, one where 40% need a Pardot write, one where none do.

All three start from `generate_seed` with the issue's proportions (N prospects, 0.8 N CRM
records, 0.4 N sent emails; every prospect assigned; half match a Contact or Lead by email, the
rest need a new Lead). They differ in what the matched pairs hold:

- `today`: as generated: CRM and Pardot values differ at random (title, first name, email
  case...) and the CRM wins, so nearly every matched prospect gets a Pardot write (about half
  of all prospects: the smoke run measured 0.51 PATCH a prospect).
- `writes40`: today's shape, then for 85% of the matched prospects (about 42% of all) the
  Pardot `jobTitle` and `phone` are blank while the CRM record holds a Title and a Phone: the
  CRM fills the blank Pardot fields, so each of those prospects needs a Pardot write (RULES 4:
  a value beats a blank). The issue's aim: "at least 40% of the prospects need a Pardot write".
- `quiet`: the matched CRM records agree with their prospects on every mapped field and on the
  owner, so no prospect needs a Pardot write (the issue's "0.1 Pardot calls per prospect"
  aim is stated for this case). The CRM may still get writes (Pardot fills CRM blanks).

`pardot_write_share(seed)` states, from the seed alone, the share of prospects the world was
built to need a Pardot write (`writes40`) or not (`quiet`); the bench also counts the writes
the daemon really sent.
"""

from __future__ import annotations

from random import Random
from typing import Any

from syncd.simulators.generate import Shape, generate_seed

WORLDS = ("today", "writes40", "quiet")
BENCH_SHAPE = Shape(match_contact=0.25, match_lead=0.25, unassigned=0.0, duplicate_crm=0.0)
WRITE_SHARE_OF_MATCHED = 0.85


def make_world(prospects: int, world: str = "today") -> dict[str, Any]:
    """The seed of `world` scaled to `prospects` (see the module docstring)."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}: one of {', '.join(WORLDS)}")
    seed = generate_seed(
        prospects,
        crm_records=int(prospects * 0.8),
        emails=int(prospects * 0.4),
        shape=BENCH_SHAPE,
    )
    if world == "writes40":
        _blank_pardot_fields(seed)
    elif world == "quiet":
        _agree(seed)
    seed["world"] = world
    return seed


def _matched(seed: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """(prospect, CRM record, "Lead"|"Contact") for every prospect with a CRM record by email."""
    sf = seed["salesforce"]
    crm: dict[str, tuple[dict[str, Any], str]] = {}
    for kind, records in (("Lead", sf["leads"]), ("Contact", sf["contacts"])):
        for rec in records:
            crm.setdefault(str(rec["Email"]).lower(), (rec, kind))
    out = []
    for p in seed["pardot"]["prospects"]:
        hit = crm.get(p["email"].lower())
        if hit is not None:
            out.append((p, hit[0], hit[1]))
    return out


def _blank_pardot_fields(seed: dict[str, Any]) -> None:
    rng = Random(13)
    chosen = 0
    for p, rec, _kind in _matched(seed):
        if rng.random() >= WRITE_SHARE_OF_MATCHED:
            continue
        p.pop("jobTitle", None)
        p.pop("phone", None)
        rec["Title"] = rec.get("Title") or "Director"
        rec["Phone"] = rec.get("Phone") or f"+1 555 {1000 + chosen % 9000}"
        chosen += 1
    seed["needs_pardot_write"] = chosen


def _agree(seed: dict[str, Any]) -> None:
    users = {u["id"]: u for u in seed["pardot"]["users"]}
    sf_users = seed["salesforce"]["users"]
    no_pardot_user = next(
        u["Id"]
        for u in sf_users
        if u["Id"] not in {pu.get("salesforceId") for pu in users.values()}
    )
    for p, rec, kind in _matched(seed):
        rec["Email"] = p["email"]
        p.setdefault("lastName", rec["LastName"])
        rec["FirstName"] = p.get("firstName")
        rec["LastName"] = p["lastName"]
        rec["Title"] = p.get("jobTitle")
        rec["Phone"] = p.get("phone")
        rec["LeadSource"] = p.get("source")
        rec["HasOptedOutOfEmail"] = bool(p.get("optedOut"))
        if kind == "Lead":
            p.setdefault("company", rec["Company"])
            rec["Company"] = p["company"]
        owner = users.get(p.get("userId") or 0, {}).get("salesforceId")
        # The CRM owner is master: the prospect's own user, or a CRM user with no Pardot user
        # (which leaves the prospect's assignee as it is, RULES 6).
        rec["OwnerId"] = owner or no_pardot_user
    seed["needs_pardot_write"] = 0


def pardot_write_share(seed: dict[str, Any]) -> float | None:
    """The share of prospects the world was built to need a Pardot write (None for `today`)."""
    n = seed.get("needs_pardot_write")
    if n is None:
        return None
    return float(n) / max(1, len(seed["pardot"]["prospects"]))
