"""The seed generator's life-cycle cases (issue 15), loaded into the real simulators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from syncd.simulators._base import ManualClock, TokenRegistry
from syncd.simulators.generate import Shape, generate_seed
from syncd.simulators.pardot import PardotSimulator
from syncd.simulators.salesforce import SalesforceSimulator


def _load(seed: dict[str, Any]) -> tuple[SalesforceSimulator, PardotSimulator]:
    clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    tokens = TokenRegistry(clock)
    sf = SalesforceSimulator(seed["salesforce"], clock=clock, tokens=tokens)
    pd = PardotSimulator(seed["pardot"], clock=clock, tokens=tokens)
    return sf, pd


def test_life_cycle_is_off_by_default_and_leaves_the_rest_of_the_world_alone() -> None:
    plain = generate_seed(400)
    assert not any(r.get("IsDeleted") for r in plain["salesforce"]["leads"])
    assert not any(p.get("isDeleted") for p in plain["pardot"]["prospects"])
    rich = generate_seed(400, shape=Shape.life_cycle(0.2))
    live_leads = [r for r in rich["salesforce"]["leads"] if not r.get("IsDeleted")]
    assert [r["Id"] for r in live_leads] == [r["Id"] for r in plain["salesforce"]["leads"]]
    assert [p["id"] for p in rich["pardot"]["prospects"]] == [
        p["id"] for p in plain["pardot"]["prospects"]
    ]
    assert rich["pardot"]["emails"] == plain["pardot"]["emails"]


def test_generated_life_cycle_cases_load_and_mean_what_they_say() -> None:
    seed = generate_seed(400, shape=Shape.life_cycle(0.2))
    sf, pd = _load(seed)
    losers = [r for r in seed["salesforce"]["leads"] if r.get("IsDeleted")]
    assert losers
    for loser in losers:
        assert sf.get("Lead", loser["Id"]) is None  # only queryAll and the deleted feed see it
        gone = sf.get_deleted("Lead", loser["Id"]) or {}
        master = sf.get("Lead", gone["MasterRecordId"])
        assert master is not None and master["Email"] == loser["Email"]

    recycled = [p["id"] for p in seed["pardot"]["prospects"] if p.get("isDeleted")]
    assert recycled
    live = {p["id"] for p in pd.prospects()}
    assert live.isdisjoint(recycled)
    assert {p["id"] for p in pd.prospects(include_deleted=True)} >= set(recycled)

    by_email = {
        r["Email"].lower(): r
        for r in [*seed["salesforce"]["leads"], *seed["salesforce"]["contacts"]]
        if not r.get("IsDeleted")
    }
    one_sided = 0
    for p in seed["pardot"]["prospects"]:
        rec = by_email.get(p["email"].lower())
        if rec is None or "LastModifiedDate" not in rec:
            continue
        one_sided += 1
        assert bool(p.get("optedOut")) != bool(rec["HasOptedOutOfEmail"])
        opted_side_is_pardot = bool(p.get("optedOut"))
        crm_later = rec["LastModifiedDate"] > p["updatedAt"].replace("+00:00", ".000+0000")
        assert crm_later is opted_side_is_pardot  # the OTHER side was edited later
    assert one_sided > 0
