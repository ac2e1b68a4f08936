"""`syncd preflight` against seeded simulators: every section, and not one write anywhere.

The world below holds each problem the report must find: a Pardot user with prospects and no CRM
user, another whose CRM user is inactive, an email held by two Contacts and a Lead, prospects
that link to a Contact or a Lead, create a Lead (one needing `[[unknown]]`), or stay unassigned,
a prospect naming a deleted CRM record, sent emails, a CRM owner with no Pardot user, a mapped
field dropped from Lead (`drop_fields`), a managed-package field missing on Contact, and a
mapped field that is not updateable.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from acceptance import base_env, simulators, start_syncd

from syncd import logs
from syncd.commands import preflight as preflight_cmd
from syncd.settings import Settings
from syncd.simulators.world import World

CONNECTOR = "005000000000001AAA"
DANA = "005000000000002AAA"  # Pardot user 2
OMAR = "005000000000003AAA"  # Pardot user 3
SAM = "005000000000004AAA"  # CRM only: no Pardot user
GONE = "005000000000005AAA"  # inactive; Pardot user 5 maps to it

C_ADA = "003000000000001AAA"
C_DUP_NEW = "003000000000002AAA"
C_DUP_OLD = "003000000000003AAA"
L_DUP = "00Q000000000009AAA"
L_OMAR = "00Q000000000001AAA"
L_ORPHAN = "00Q000000000002AAA"
L_REASSIGN = "00Q000000000003AAA"


def seed() -> dict[str, Any]:
    return {
        "salesforce": {
            "oauth": {"client_id": "pf-client", "client_secret": "pf-secret",
                      "username": "connector@acme.example"},
            "users": [
                {"Id": CONNECTOR, "Username": "connector@acme.example", "IsActive": True},
                {"Id": DANA, "Username": "dana@acme.example", "IsActive": True},
                {"Id": OMAR, "Username": "omar@acme.example", "IsActive": True},
                {"Id": SAM, "Username": "sam@acme.example", "IsActive": True},
                {"Id": GONE, "Username": "gone@acme.example", "IsActive": False},
            ],
            "contacts": [
                {"Id": C_ADA, "Email": "ada@example.com", "LastName": "Lovelace",
                 "OwnerId": DANA, "CreatedDate": "2025-01-01T00:00:00.000+0000"},
                {"Id": C_DUP_NEW, "Email": "dup@example.com", "LastName": "Newer",
                 "OwnerId": SAM, "CreatedDate": "2025-03-01T00:00:00.000+0000"},
                {"Id": C_DUP_OLD, "Email": "DUP@example.com", "LastName": "Older",
                 "OwnerId": OMAR, "CreatedDate": "2025-02-01T00:00:00.000+0000"},
            ],
            "leads": [
                {"Id": L_DUP, "Email": "dup@example.com", "LastName": "Lead", "Company": "D",
                 "OwnerId": DANA, "CreatedDate": "2024-01-01T00:00:00.000+0000"},
                {"Id": L_OMAR, "Email": "lead@example.com", "LastName": "Turing",
                 "Company": "Bletchley", "OwnerId": SAM},
                {"Id": L_ORPHAN, "Email": "orphan@example.com", "LastName": "Orphan",
                 "Company": "Nobody", "OwnerId": SAM},
                {"Id": L_REASSIGN, "Email": "reassign@example.com", "LastName": "Moved",
                 "Company": "Acme", "OwnerId": DANA},
            ],
            "drop_fields": {"Lead": ["Title"], "Contact": ["pi__grade__c"]},
            "daily_api_limit": 15000,
        },
        "pardot": {
            "business_unit_id": "0Uv000000000001AAA",
            "users": [
                {"id": 1, "email": "connector@acme.example", "salesforceId": CONNECTOR},
                {"id": 2, "email": "dana@acme.example", "salesforceId": DANA},
                {"id": 3, "email": "omar@acme.example", "salesforceId": OMAR},
                {"id": 4, "email": "pat@acme.example", "salesforceId": None},
                {"id": 5, "email": "gone@acme.example", "salesforceId": GONE},
            ],
            "prospects": [
                {"id": 1001, "email": "ada@example.com", "userId": 2, "lastName": "Lovelace"},
                {"id": 1002, "email": "dup@example.com", "userId": 2, "lastName": "Dup"},
                {"id": 1003, "email": "lead@example.com", "userId": 3, "lastName": "Turing"},
                {"id": 1004, "email": "new@example.com", "userId": 4, "lastName": "New",
                 "company": "NewCo"},
                {"id": 1005, "email": "inactive@example.com", "userId": 5},
                {"id": 1006, "email": "unassigned@example.com"},
                {"id": 1007, "email": "ghost@example.com", "userId": 2, "lastName": "Ghost",
                 "salesforceId": "00Q0000000000ZZAAA"},
                {"id": 1008, "email": "reassign@example.com", "userId": 3, "lastName": "Moved",
                 "company": "Acme"},
            ],
            "emails": [
                {"id": 5001, "prospectId": 1001, "subject": "Welcome",
                 "sentAt": "2026-01-05T10:00:00Z"},
                {"id": 5002, "prospectId": 1001, "subject": "Follow-up",
                 "sentAt": "2026-01-06T10:00:00Z"},
                {"id": 5003, "prospectId": 1004, "subject": "Hello",
                 "sentAt": "2026-01-07T10:00:00Z"},
                {"id": 5004, "prospectId": 1006, "subject": "Unassigned",
                 "sentAt": "2026-01-08T10:00:00Z"},
            ],
        },
    }  # fmt: skip


@pytest.fixture(autouse=True)
def logs_aside() -> io.StringIO:
    """Log events go to their own stream (stderr under the CLI): stdout holds the report alone."""
    stream = io.StringIO()
    logs.configure("info", "json", stream=stream)
    return stream


def settings_for(world: World, tmp_path: Path, **sync: Any) -> Settings:
    return Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/configured.db"},
        sync=sync,
        # Lead.Name / Contact.Name exist but are read-only: a non-updateable mapped field.
        fields={"comments": {"crm": "Name"}},
        **world.settings_overrides(),
    )


async def preflight(
    world: World, settings: Settings, capsys: pytest.CaptureFixture[str], *, as_json: bool = True
) -> tuple[int, str]:
    capsys.readouterr()
    args = argparse.Namespace(json=as_json, limit=10)
    rc = await preflight_cmd.run(args, settings, transports=world.transports())
    return rc, capsys.readouterr().out


def assert_read_only(world: World) -> None:
    """Nothing but GETs (and the OAuth token POST, a login) reached either API."""
    sf, pd = world.salesforce.counters.snapshot(), world.pardot.counters.snapshot()
    assert world.pardot.counters.writes == 0
    logins = world.salesforce.counters.count("POST", "/services/oauth2/token")
    assert world.salesforce.counters.writes - logins == 0
    for snap in (sf, pd):
        methods = {key.split(" ", 1)[0] for key in snap["requests"]}
        assert methods <= {"GET", "POST"}, snap["requests"]
        posts = [k for k in snap["requests"] if k.startswith("POST")]
        assert all("/services/oauth2/token" in k for k in posts), posts


def ids(group: dict[str, Any], key: str = "prospect_id") -> list[Any]:
    return sorted(row[key] for row in group["examples"])


async def test_every_section_on_a_seeded_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(copy.deepcopy(seed()))
    settings = settings_for(world, tmp_path)
    rc, out = await preflight(world, settings, capsys)
    assert rc == 0
    r = json.loads(out)
    assert r["version"] == 1
    assert r["totals"] == {
        "leads": 4, "contacts": 3, "sent_emails": 4, "prospects": 8,
        "pardot_users": 5, "crm_users": 5,
    }  # fmt: skip

    # Connector user, from the token; the simulator lets it create Leads and Tasks.
    c = r["connector"]
    assert (c["user_id"], c["username"], c["active"]) == (CONNECTOR, "connector@acme.example", True)
    assert c["can_create_leads"] and c["can_create_tasks"] and c["can_update_contacts"]

    # Users: Pat (4) has no CRM user, user 5's CRM user is inactive; each has one new Lead
    # that the connector user would own.
    u = r["users"]
    assert u["no_crm_user"]["count"] == 1 and u["inactive_crm_user"]["count"] == 1
    pat = u["no_crm_user"]["examples"][0]
    assert (pat["pardot_user_id"], pat["prospects"], pat["new_leads"]) == (4, 1, 1)
    gone = u["inactive_crm_user"]["examples"][0]
    assert (gone["pardot_user_id"], gone["crm_username"], gone["new_leads"]) == (
        5, "gone@acme.example", 1)  # fmt: skip
    assert u["prospects_affected"] == 2 and u["new_leads_owned_by_connector"] == 2

    # Duplicates: dup@ is on two Contacts and a Lead; the prospect links to the oldest Contact.
    d = r["duplicates"]
    assert d["emails"]["count"] == 1 and d["records"] == 3 and d["prospects"] == 1
    dup = d["emails"]["examples"][0]
    assert sorted(dup["contacts"]) == [C_DUP_NEW, C_DUP_OLD] and dup["leads"] == [L_DUP]
    assert dup["links_to"] == C_DUP_OLD and dup["prospect_ids"] == [1002]

    # What each prospect would do.
    p = r["prospects"]
    assert ids(p["link_contact"]) == [1001, 1002]
    assert ids(p["link_lead"]) == [1003, 1008]
    assert ids(p["create_lead"]) == [1004, 1005]
    assert ids(p["unassigned"]) == [1006]
    assert ids(p["crm_deleted"]) == [1007]  # its salesforceId names a record that is gone
    assert p["no_email"]["count"] == p["other_skip"]["count"] == 0
    links = {row["prospect_id"]: row["crm_id"] for row in p["link_contact"]["examples"]}
    assert links == {1001: C_ADA, 1002: C_DUP_OLD}
    unknown = p["unknown_placeholder"]
    assert ids(unknown) == [1005]
    assert unknown["examples"][0]["fields"] == "Company, LastName"

    # Emails: 1001's two and 1004's one (new Lead) become Tasks; 1006 is not synced.
    e = r["emails"]
    assert (e["enabled"], e["sent"], e["tasks"], e["not_logged"]) == (True, 4, 3, 1)
    assert {row["email_id"] for row in e["examples_group"]["examples"]} == {5001, 5003}

    # Owners: Sam owns two Leads and has no Pardot user; the linked prospect keeps its assignee
    # (Omar). The CRM owner is master: Dana owns the Lead of 1008 (reassigned from Omar to
    # Dana), Omar owns the oldest dup@ Contact (1002 goes from Dana to Omar).
    o = r["owners"]
    sam = [row for row in o["without_pardot_user"]["examples"] if row["owner_id"] == SAM]
    assert sam and sam[0]["records"] == 3 and sam[0]["linked_prospects"] == 1
    assert sam[0]["username"] == "sam@acme.example" and sam[0]["kind"] == "user"
    assert o["assignee_kept"] == 1
    assert o["reassigned"]["examples"] == [
        {"prospect_id": 1002, "from_user": 2, "to_user": 3, "crm_id": C_DUP_OLD},
        {"prospect_id": 1008, "from_user": 3, "to_user": 2, "crm_id": L_REASSIGN},
    ]
    auto = o["auto_create"]
    assert (auto["enabled"], auto["records"]) == (False, 1)  # the orphan Lead

    # Field map: Lead.Title is gone, Contact lacks a managed-package field, Name is read-only.
    f = r["fields"]
    problems = {(x["object"], x["field"]): x for x in f["problems"]}
    assert problems[("Lead", "Title")]["blocker"] is True
    assert problems[("Contact", "pi__grade__c")]["blocker"] is True
    assert "managed package" in problems[("Contact", "pi__grade__c")]["problem"]
    assert problems[("Lead", "Name")]["blocker"] is False
    assert "not updateable" in problems[("Contact", "Name")]["problem"]
    assert f["managed_package"] == {"Lead": True, "Contact": False}
    blockers = [x["message"] for x in r["problems"] if x["severity"] == "blocker"]
    assert any("Lead.Title" in m for m in blockers)

    # API estimate against the limits the org reports.
    sf, pd = r["api"]["salesforce"], r["api"]["pardot"]
    assert sf["daily_limit"] == 15000 and sf["budget"] == 7500 and sf["days"] == 1
    assert pd["daily_limit"] == 25000 and pd["budget"] == 12500
    steps = {s["step"]: s["calls"] for s in sf["steps"]}
    assert steps["create Leads (collections of 200)"] == 1
    assert steps["log sent emails as Tasks (collections of 200)"] == 1
    pd_steps = {s["step"]: s["calls"] for s in pd["steps"]}
    # PATCH: only the 4 linked prospects whose values change (CRM values filling blanks, owners);
    # the link itself is never written back (Pardot's link fields are read-only, RULES.md 2a).
    assert pd_steps["update prospects (one PATCH each)"] == 4
    assert sf["calls"] == sum(steps.values()) and sf["latency_ms"] is not None
    assert r["api"]["duration_s"] is not None

    assert_read_only(world)
    assert not (tmp_path / "configured.db").exists()  # the configured store was never opened


async def test_terminal_report_and_switches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(copy.deepcopy(seed()))
    settings = settings_for(
        world,
        tmp_path,
        email_activities=False,
        auto_create_prospects=True,
        api_budget_share=0.001,
    )
    rc, out = await preflight(world, settings, capsys, as_json=False)
    assert rc == 0
    for heading in (
        "Fix first",
        "Connector user",
        "Pardot users without an active CRM user",
        "Duplicate emails in the CRM",
        "Prospects",
        "Sent emails",
        "CRM owners without a Pardot user",
        "Field map against the org",
        "API calls of the first sync",
    ):
        assert heading in out
    assert "sync.email_activities is off" in out
    assert "[[unknown]]" in out
    assert max(len(line) for line in out.splitlines()) <= 100

    rc, out = await preflight(world, settings, capsys)
    r = json.loads(out)
    assert r["emails"]["tasks"] == 0 and r["emails"]["not_logged"] == 4
    auto = r["owners"]["auto_create"]
    assert (auto["enabled"], auto["records"], auto["unassigned"]) == (True, 1, 1)
    # 0.1 % of 15,000 Salesforce calls is 15 a day: the first sync needs more than one day.
    assert r["api"]["salesforce"]["budget"] == 15
    assert r["api"]["salesforce"]["days"] > 1
    assert any(x["section"] == "api" for x in r["problems"])
    assert_read_only(world)


def test_cli_json_against_syncd_simulate(tmp_path: Path) -> None:
    db = tmp_path / "untouched.db"
    with simulators(tmp_path) as sims:
        env = base_env(**sims.env, SYNCD_DATABASE__URL=f"sqlite+aiosqlite:///{db}",
                       SYNCD_LOG__FORMAT="json")  # fmt: skip
        proc = start_syncd(["preflight", "--json", "--limit", "3"], env=env, cwd=tmp_path,
                           name="preflight")  # fmt: skip
        rc = proc.wait(120)
        assert rc == 0, proc.stderr()
        report = json.loads(proc.stdout())
        counters = sims.soql  # keep the simulators up while we look
        del counters
    assert report["version"] == 1 and report["limit"] == 3
    assert report["totals"]["prospects"] > 0 and report["totals"]["leads"] > 0
    for section in ("connector", "users", "duplicates", "prospects", "emails", "owners",
                    "fields", "api", "problems"):  # fmt: skip
        assert section in report
    assert not db.exists()


async def test_the_link_mirror_field_is_checked_on_both_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy.deepcopy(seed())
    mirror = "Pardot_Prospect_Id__c"
    data["salesforce"]["custom_fields"] = {
        "Lead": [{"name": mirror, "type": "string", "length": 18}],
        "Contact": [{"name": mirror, "type": "string", "length": 18, "updateable": False}],
    }
    world = World(data)
    settings = settings_for(world, tmp_path, crm_link_field=mirror)
    rc, out = await preflight(world, settings, capsys)
    assert rc == 0
    r = json.loads(out)
    assert r["fields"]["link_mirror"]["Lead"] == "ok"
    assert "not editable" in r["fields"]["link_mirror"]["Contact"]
    problems = {(p["object"], p["field"]): p for p in r["fields"]["problems"]}
    assert problems[("Contact", mirror)]["blocker"] is True
    assert ("Lead", mirror) not in problems
    assert_read_only(world)

    missing = World(copy.deepcopy(seed()))  # no such field in the org at all
    rc, out = await preflight(
        missing, settings_for(missing, tmp_path, crm_link_field=mirror), capsys
    )
    r = json.loads(out)
    assert r["fields"]["link_mirror"]["Lead"].startswith("not on Lead")
    assert r["fields"]["link_mirror"]["Contact"].startswith("not on Contact")


async def test_merge_losers_and_the_recycle_bin_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy.deepcopy(seed())
    data["salesforce"]["leads"].append(
        {"Id": "00Q0000000000M1AAA", "Email": "merged@example.com", "LastName": "Gone",
         "Company": "X", "OwnerId": DANA, "IsDeleted": True, "MasterRecordId": L_OMAR}
    )  # fmt: skip
    data["pardot"]["prospects"].append(
        {"id": 1099, "email": "binned@example.com", "userId": 2, "isDeleted": True}
    )
    world = World(data)
    rc, out = await preflight(world, settings_for(world, tmp_path), capsys)
    assert rc == 0
    r = json.loads(out)
    assert r["life_cycle"] == {
        "merge_losers_lead": 1,
        "merge_losers_contact": 0,
        "prospects_in_recycle_bin": 1,
    }
    assert_read_only(world)
    rc, text = await preflight(world, settings_for(world, tmp_path), capsys, as_json=False)
    assert "Leads merged into another" in text and "recycle bin" in text
