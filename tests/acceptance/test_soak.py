"""The short soak: a few hundred prospects under API faults and SIGKILLs, then every invariant.

The full soak (10,000 prospects, SQLite and PostgreSQL) is `make soak` (`bench/soak.py`); this is
the same harness at a size that fits `make test`. The two SIGKILLs come at points of progress
(a third and two thirds of the work done, read from the store), never at a wall-clock second, so
a faster or slower machine sees the same two kills; small batches put them mid-work. The record
life cycle (issue 15) runs through it: merge losers, prospects in the recycle bin and one-sided
opt-outs in the seed, and at the same two points of progress, just before each kill, merges,
email changes on either side, prospects sent to and restored from the recycle bin and opt-outs
meeting stale opt-ins, all through the APIs under the same faults. The last step proves the
checker can fail: a duplicate Lead, a second Task for one email, a CRM record's opt-out cleared
and a prospect restored from the recycle bin behind syncd's back, made through the APIs, are all
caught.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.soak import (
    LIFE_DOMAIN,
    Apis,
    Life,
    SoakConfig,
    SoakReport,
    build_seed,
    check,
    kill_points,
    must_sync,
    soak_one,
)

CFG = SoakConfig(
    prospects=200,
    seed=11,
    databases=("sqlite",),
    max_kills=2,
    batch_size=20,
    drain_timeout_s=240,
    verbose=False,
)
INVARIANTS = {
    "linked_once",
    "no_duplicate_leads",
    "tasks_once",
    "fields",
    "nothing_lost",
    "errors_permanent",
    "no_read_only_pardot_writes",
    "merges_followed",
    "emails_followed",
    "recycled_left_alone",
    "opt_outs_kept",
}


def _break_invariants(apis: Apis, url: str, report: SoakReport) -> None:
    """A second Lead with an email syncd created a Lead for, a second Task for one email, an
    opt-out cleared on a CRM record, a prospect restored from the recycle bin, a Lead made for
    a prospect whose record was merged away, and a second prospect with a changed email."""
    report.extra["first_ok"] = report.ok
    seed = build_seed(CFG)
    seeded = {x["Id"] for x in seed["salesforce"]["leads"]}
    created = [
        r
        for r in apis.soql("SELECT Id, Email, LastName, Company FROM Lead")
        if r["Id"] not in seeded and not r["Email"].endswith("@" + LIFE_DOMAIN)
    ]
    task = apis.soql("SELECT Subject, WhoId, Description FROM Task")[0]
    for sobject, body in (
        ("Lead", {k: created[0][k] for k in ("Email", "LastName", "Company")}),
        ("Task", {k: task[k] for k in ("Subject", "WhoId", "Description")}),
    ):
        r = httpx.post(
            f"{apis.instance_url()}/services/data/v60.0/sobjects/{sobject}",
            json=body,
            headers=apis.auth_headers(),
            timeout=30,
        )
        assert r.status_code == 201, r.text
    life = report.life
    assert life is not None
    opted_out = life.of("opt_out_crm")[0]
    apis.sf_patch(opted_out.crm_type, opted_out.crm_id, {"HasOptedOutOfEmail": False})
    restored = {e.prospect_id for e in life.of("restore")}
    in_bin = next(e for e in life.of("recycle") if e.prospect_id not in restored)
    apis.pd_undelete(life.emails[in_bin.prospect_id])
    merged = life.of("merge_loser")[0]
    lead = {"Email": life.emails[merged.prospect_id], "LastName": "Again", "Company": "Again"}
    apis.write("POST", f"{apis.instance_url()}/services/data/v60.0/sobjects/Lead", lead)
    changed = life.of("email_pardot")[0]
    prospects = f"{apis.pd_url}/api/v5/objects/prospects"
    apis.write("POST", prospects, {"email": changed.value}, pardot=True)
    check(seed, apis, url, report)


def test_kills_come_at_points_of_progress() -> None:
    """Kill k of K once k/(K+1) of the work is done: spread over the run, all before its end."""
    work = must_sync(build_seed(CFG))
    assert 0 < work <= CFG.prospects
    assert kill_points(work, 2) == [work // 3, 2 * work // 3]
    assert kill_points(10, 8) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert kill_points(3, 8)[-1] < 3  # even tiny worlds: every kill before the last item
    assert kill_points(0, 2) == []


def test_the_world_holds_every_life_cycle_case() -> None:
    """The seed has merge losers, prospects in the recycle bin, one-sided opt-outs and twins to
    merge, and enough prospects of each kind for both event points; building it twice gives the
    same world."""
    seed = build_seed(CFG)
    assert seed == build_seed(CFG)
    sf, pd = seed["salesforce"], seed["pardot"]
    rows = [*sf["leads"], *sf["contacts"]]
    assert any(r.get("IsDeleted") and r.get("MasterRecordId") for r in rows)
    assert any(r.get("Company", "").endswith(" (twin)") for r in sf["leads"])
    assert any(p.get("isDeleted") for p in pd["prospects"])
    assert any(p.get("optedOut") for p in pd["prospects"])
    assert any(r.get("HasOptedOutOfEmail") for r in rows)
    life = Life(seed, 2, kill_points(must_sync(seed), 2))
    # prospects whose record has a twin to merge, and others for the five other kinds
    assert len(life.merge_pool) >= 2 * 2 * 2 and len(life.pool) >= 5 * 2 * 2
    assert life.seed_bin and not set(life.merge_pool) & set(life.pool)


@pytest.mark.slow
def test_short_soak_drains_under_faults_and_kills_with_every_invariant(tmp_path: Path) -> None:
    report = soak_one(CFG, "sqlite", tmp_path, after=_break_invariants)
    assert report.kills == 2 and report.starts == 3
    injected = sum(sum(f.values()) for f in report.faults.values())
    assert injected > 0, "no fault was injected"
    assert report.links > 0 and report.leads_created > 0 and report.tasks > 0
    assert report.life is not None and report.life.fired == 2
    done = {e.kind for e in report.life.events}
    assert done == {*report.life.KINDS, "restore"}, done  # every life-cycle case happened
    assert {i.name for i in report.invariants} == INVARIANTS
    assert report.extra["first_ok"], report.render()
    # the tampering of `_break_invariants` is caught, and nothing else is (the cleared opt-out
    # is also a field a reconcile would write again; the Lead made for the merged prospect is
    # also a duplicate of a seed record)
    broken = {i.name for i in report.invariants if i.violations}
    assert broken == {
        "no_duplicate_leads",
        "tasks_once",
        "opt_outs_kept",
        "fields",
        "recycled_left_alone",
        "merges_followed",
        "emails_followed",
    }, report.render()
