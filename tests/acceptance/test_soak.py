"""The short soak: a few hundred prospects under API faults and SIGKILLs, then every invariant.

The full soak (10,000 prospects, SQLite and PostgreSQL) is `make soak` (`bench/soak.py`); this is
the same harness at a size that fits `make test`. The two SIGKILLs come at points of progress
(a third and two thirds of the work done, read from the store), never at a wall-clock second, so
a faster or slower machine sees the same two kills; small batches put them mid-work. The last
step proves the checker can fail: a duplicate Lead and a second Task for one email, made through
the API, are both caught.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.soak import (
    Apis,
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
}


def _break_two_invariants(apis: Apis, url: str, report: SoakReport) -> None:
    """A second Lead with an email syncd created a Lead for, and a second Task for one email."""
    report.extra["first_ok"] = report.ok
    seed = build_seed(CFG)
    seeded = {x["Id"] for x in seed["salesforce"]["leads"]}
    created = [
        r
        for r in apis.soql("SELECT Id, Email, LastName, Company FROM Lead")
        if r["Id"] not in seeded
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
    check(seed, apis, url, report)


def test_kills_come_at_points_of_progress() -> None:
    """Kill k of K once k/(K+1) of the work is done: spread over the run, all before its end."""
    work = must_sync(build_seed(CFG))
    assert 0 < work <= CFG.prospects
    assert kill_points(work, 2) == [work // 3, 2 * work // 3]
    assert kill_points(10, 8) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert kill_points(3, 8)[-1] < 3  # even tiny worlds: every kill before the last item
    assert kill_points(0, 2) == []


@pytest.mark.slow
def test_short_soak_drains_under_faults_and_kills_with_every_invariant(tmp_path: Path) -> None:
    report = soak_one(CFG, "sqlite", tmp_path, after=_break_two_invariants)
    assert report.kills == 2 and report.starts == 3
    injected = sum(sum(f.values()) for f in report.faults.values())
    assert injected > 0, "no fault was injected"
    assert report.links > 0 and report.leads_created > 0 and report.tasks > 0
    assert {i.name for i in report.invariants} == INVARIANTS
    assert report.extra["first_ok"], report.render()
    # the tampering of `_break_two_invariants` is caught, and nothing else is
    broken = {i.name for i in report.invariants if i.violations}
    assert broken == {"no_duplicate_leads", "tasks_once"}, report.render()
