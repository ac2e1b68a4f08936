"""API budget decisions: may syncd call this API now, and if not, until when does it wait.

Both APIs have a daily request allowance shared with every other integration of the org
(Salesforce: a rolling 24 h window reported in `Sforce-Limit-Info: api-usage=used/limit`;
Pardot: a per-business-unit daily limit, `pardot.daily_api_limit`). syncd pauses a side when:

1. its own calls in the last 24 h reach `share x daily limit` (`sync.api_budget_share`), leaving
   the rest to the org's other integrations;
2. the org as a whole is within `org_reserve` (5 %) of the limit (Salesforce reports it); or
3. the API said the limit is met (`REQUEST_LIMIT_EXCEEDED`, Pardot code 122): wait a cool-down,
   then probe with one call.

Pure: usage figures and `now` come in, a `BudgetDecision` comes out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

# Rolling-window usage frees up gradually, so a paused side looks again after this long.
RECHECK_S = 15 * 60.0
ORG_RESERVE = 0.05


class PauseReason(enum.StrEnum):
    """Why a side is paused (shown by `syncd status` and in log events)."""

    NONE = "none"
    OWN_SHARE = "own_share"  # syncd's configured share of the daily limit is used
    ORG_NEAR_LIMIT = "org_near_limit"  # the whole org is within 5 % of its daily limit
    LIMIT_EXCEEDED = "limit_exceeded"  # the API refused a call: daily limit met


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What is known about one API's usage at one moment.

    Attributes:
        own_calls_24h: syncd's own calls in the last 24 h (every process sharing the store).
        daily_limit: the API's daily limit (Salesforce: from `Sforce-Limit-Info`; Pardot: the
            configured edition limit); None when not known yet (no Salesforce answer so far).
        org_used: the org's calls in the current window (Salesforce only), or None.
        org_observed_at: when `org_used` was read; an observation older than the re-check
            interval no longer pauses (the only way to refresh it is to make a call).
        exceeded_at: when the API last refused a call for the daily limit, or None.
    """

    own_calls_24h: int
    daily_limit: int | None
    org_used: int | None = None
    org_observed_at: datetime | None = None
    exceeded_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetDecision:
    """May this side call its API now; if not, why and when to look again.

    `own_cap` is the number of calls syncd may make in 24 h (None when the limit is unknown);
    `remaining` is how many of them are left (never negative).
    """

    allowed: bool
    reason: PauseReason
    resume_at: datetime | None
    own_cap: int | None
    remaining: int | None


def own_cap(daily_limit: int | None, share: float) -> int | None:
    """syncd's allowance of calls per 24 h: `share` of the daily limit (at least one call)."""
    if daily_limit is None:
        return None
    return max(1, int(daily_limit * share))


def decide(
    usage: Usage,
    *,
    share: float,
    now: datetime,
    org_reserve: float = ORG_RESERVE,
    recheck_s: float = RECHECK_S,
) -> BudgetDecision:
    """Whether syncd may call this API now (see the module docstring for the three rules)."""
    if not 0 < share <= 1:
        raise ValueError("share must be in (0, 1]")
    cap = own_cap(usage.daily_limit, share)
    remaining = None if cap is None else max(0, cap - usage.own_calls_24h)
    recheck = now + timedelta(seconds=recheck_s)

    def paused(reason: PauseReason, until: datetime) -> BudgetDecision:
        return BudgetDecision(
            allowed=False, reason=reason, resume_at=until, own_cap=cap, remaining=remaining
        )

    if usage.exceeded_at is not None:
        until = usage.exceeded_at + timedelta(seconds=recheck_s)
        if now < until:
            return paused(PauseReason.LIMIT_EXCEEDED, until)
    if cap is not None and usage.own_calls_24h >= cap:
        return paused(PauseReason.OWN_SHARE, recheck)
    if (
        usage.org_used is not None
        and usage.daily_limit is not None
        and usage.org_used >= usage.daily_limit * (1 - org_reserve)
        and (
            usage.org_observed_at is None
            or now < usage.org_observed_at + timedelta(seconds=recheck_s)
        )
    ):
        observed = usage.org_observed_at or now
        return paused(PauseReason.ORG_NEAR_LIMIT, observed + timedelta(seconds=recheck_s))
    return BudgetDecision(
        allowed=True, reason=PauseReason.NONE, resume_at=None, own_cap=cap, remaining=remaining
    )
