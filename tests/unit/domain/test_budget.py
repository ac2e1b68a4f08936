"""API budget decisions: own share, org reserve, limit exceeded, and resuming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.domain.budget import PauseReason, Usage, decide, own_cap

U = Usage
OK = PauseReason.NONE
SHARE = PauseReason.OWN_SHARE
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("usage", "allowed", "reason"),
    [
        pytest.param(U(own_calls_24h=0, daily_limit=None), True, OK, id="unknown-limit"),
        pytest.param(U(own_calls_24h=49, daily_limit=100), True, OK, id="under-share"),
        pytest.param(U(own_calls_24h=50, daily_limit=100), False, SHARE, id="share-used"),
        pytest.param(
            Usage(own_calls_24h=1, daily_limit=100, org_used=95, org_observed_at=NOW),
            False,
            PauseReason.ORG_NEAR_LIMIT,
            id="org-within-5pct",
        ),
        pytest.param(
            Usage(own_calls_24h=1, daily_limit=100, org_used=94, org_observed_at=NOW),
            True,
            PauseReason.NONE,
            id="org-just-under",
        ),
        pytest.param(
            Usage(
                own_calls_24h=1,
                daily_limit=100,
                org_used=99,
                org_observed_at=NOW - timedelta(hours=1),
            ),
            True,
            PauseReason.NONE,
            id="stale-org-figure-allows-a-probe",
        ),
        pytest.param(
            Usage(own_calls_24h=0, daily_limit=100, exceeded_at=NOW - timedelta(minutes=1)),
            False,
            PauseReason.LIMIT_EXCEEDED,
            id="limit-exceeded",
        ),
        pytest.param(
            Usage(own_calls_24h=0, daily_limit=100, exceeded_at=NOW - timedelta(hours=1)),
            True,
            PauseReason.NONE,
            id="cool-down-over",
        ),
    ],
)
def test_decide(usage: Usage, allowed: bool, reason: PauseReason) -> None:
    decision = decide(usage, share=0.5, now=NOW)
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert (decision.resume_at is None) == allowed


def test_remaining_and_cap() -> None:
    decision = decide(Usage(own_calls_24h=30, daily_limit=100), share=0.5, now=NOW)
    assert (decision.own_cap, decision.remaining) == (50, 20)


def test_exceeded_resumes_after_cool_down() -> None:
    decision = decide(
        Usage(own_calls_24h=0, daily_limit=100, exceeded_at=NOW), share=0.5, now=NOW, recheck_s=60
    )
    assert decision.resume_at == NOW + timedelta(seconds=60)


def test_cap_is_at_least_one_call() -> None:
    assert own_cap(1, 0.1) == 1


def test_share_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="share"):
        decide(Usage(own_calls_24h=0, daily_limit=1), share=0, now=NOW)
