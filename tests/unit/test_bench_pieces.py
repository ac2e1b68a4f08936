"""The bench's pure pieces: the worlds it builds and how it judges the aims of issue 13.

Fast (no processes); the whole bench runs in `tests/acceptance/test_bench_smoke.py` (slow).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.aims import evaluate_aims
from bench.baseline_script import soql_quote
from bench.worlds import make_world, pardot_write_share


def _matched(seed: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    crm = {
        r["Email"].lower(): r for r in seed["salesforce"]["leads"] + seed["salesforce"]["contacts"]
    }
    return [
        (p, crm[p["email"].lower()])
        for p in seed["pardot"]["prospects"]
        if p["email"].lower() in crm
    ]


def test_writes40_blanks_pardot_fields_the_crm_holds_for_over_40_percent() -> None:
    seed = make_world(1000, "writes40")
    share = pardot_write_share(seed)
    assert share is not None and share >= 0.4
    # Each such prospect has blank Pardot fields that its CRM record fills.
    needs_write = [
        p
        for p, r in _matched(seed)
        if "jobTitle" not in p and "phone" not in p and r.get("Title") and r.get("Phone")
    ]
    assert len(needs_write) >= 400


def test_quiet_crm_records_agree_with_their_prospects() -> None:
    seed = make_world(1000, "quiet")
    assert pardot_write_share(seed) == 0
    users = {u["id"]: u.get("salesforceId") for u in seed["pardot"]["users"]}
    pairs = _matched(seed)
    assert len(pairs) >= 400
    for p, r in pairs:
        assert r["Email"] == p["email"]
        assert (r["FirstName"], r["LastName"], r["Title"]) == (
            p.get("firstName"),
            p["lastName"],
            p.get("jobTitle"),
        )
        assert r["OwnerId"] == users[p["userId"]] or users[p["userId"]] is None
    assert pardot_write_share(make_world(100, "today")) is None
    with pytest.raises(ValueError, match="unknown world"):
        make_world(10, "busy")


def _doc(**parts: Any) -> dict[str, Any]:
    return {"settings": {"latency_ms": 20.0}, **parts}


def _backfill(world: str, db: str, rate: float, cpu_ms: float) -> dict[str, Any]:
    return {
        "world": world,
        "database": db,
        "prospects": 50_000,
        "prospects_per_s": rate,
        "daemon_cpu_ms_per_prospect": cpu_ms,
        "daemon_processes": 2,
        "salesforce_calls_per_prospect": 0.01,
        "pardot_calls_per_prospect": 0.05,
        "pardot_patches_per_prospect": 0.0,
        "pardot_import_calls": 0,
    }


def test_aims_are_met_not_met_or_not_measured_never_passed_by_default() -> None:
    verdicts = {a["aim"]: a["verdict"] for a in evaluate_aims(_doc())}
    assert set(verdicts.values()) == {"not measured"}
    doc = _doc(
        backfill=[
            _backfill("writes40", "sqlite", 1200.0, 0.8),
            _backfill("writes40", "postgresql", 900.0, 1.4),
            _backfill("quiet", "sqlite", 1500.0, 0.5),
        ],
        compare={
            "prospects": 2000,
            "latency_ms": 20.0,
            "speedup": 25.0,
            "syncd_once": {"wall_s": 2.0},
            "script": {"wall_s": 50.0},
        },
        steady=[
            {
                "database": "sqlite",
                "rate_per_s": 10.0,
                "p95_ms": 5900,
                "aim_p95_ms": 6000,
                "changes": 600,
                "synced": 600,
                "duration_s": 60.0,
            },
            {
                "database": "sqlite",
                "rate_per_s": 100.0,
                "p95_ms": 5900,
                "aim_p95_ms": 6000,
                "changes": 6000,
                "synced": 5990,
                "duration_s": 60.0,
            },
        ],
    )
    verdicts = {a["aim"]: a["verdict"] for a in evaluate_aims(doc)}

    def verdict(start: str) -> str:
        (v,) = [v for a, v in verdicts.items() if a.startswith(start)]
        return v

    assert verdict("backfill >= 1,000 prospects/s (sqlite") == "met"
    assert verdict("backfill >= 1,000 prospects/s (postgresql") == "NOT met"
    assert verdict("daemon CPU <= 1 ms a prospect (sqlite") == "met"
    assert verdict("daemon CPU <= 1 ms a prospect (postgresql") == "NOT met"
    assert verdict(">= 20x the per-record script") == "met"
    assert verdict("500,000 prospects") == "not measured"
    assert verdict("steady 10 edits/s") == "met"
    assert verdict("steady 100 edits/s") == "NOT met"  # 10 edits never synced
    assert verdict("<= 0.02 SF and <= 0.1 Pardot calls") == "met"


def test_the_fastest_writes40_run_of_a_database_is_judged_with_its_instances_named() -> None:
    two = {**_backfill("writes40", "postgresql", 1100.0, 1.2), "instances": 2}
    doc = _doc(backfill=[_backfill("writes40", "postgresql", 900.0, 0.9), two])
    aims = {a["aim"]: a for a in evaluate_aims(doc)}
    rate = aims["backfill >= 1,000 prospects/s (postgresql, 40% need a Pardot write)"]
    assert rate["verdict"] == "met" and rate["figure"] == "1,100.0 prospects/s"
    assert rate["note"].endswith("2 syncd run instances")
    assert aims["daemon CPU <= 1 ms a prospect (postgresql, writes40)"]["verdict"] == "met"
    both = aims["daemon CPU <= 1 ms a prospect (postgresql, writes40, 2 instances)"]
    assert both["verdict"] == "NOT met"


def test_the_scripts_soql_quoting() -> None:
    assert soql_quote("o'brien@example.com") == "'o\\'brien@example.com'"
    assert soql_quote("a\\b") == "'a\\\\b'"
