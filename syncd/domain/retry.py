"""When to try a failed item again, and when to give up (RULES.md section 7).

Long retries (the item goes back to the queue with an `available_at`) back off exponentially:
`base_s * 2 ** (attempts - 1)`, capped at `cap_s`, never sooner than a server's `Retry-After`.
Permanent errors and items out of attempts go to the sync error queue. Randomness is an input
(`jitter`, drawn by the caller) so the decision stays pure and testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["RetryDecision", "backoff_s", "next_attempt"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDecision:
    """Retry at `retry_at`, or give up (`give_up`: move the item to the error queue)."""

    retry_at: datetime | None
    give_up: bool
    reason: str


def backoff_s(*, attempts: int, base_s: float, cap_s: float = 3600, jitter: float = 0.0) -> float:
    """Delay before the next attempt after `attempts` failed ones (>= 1).

    `jitter` in [0, 1) takes up to half the delay off ("equal jitter"), so items that failed
    together do not all come back in the same second.
    """
    exponent = max(attempts - 1, 0)
    # Cap the exponent before computing so a large attempt count cannot overflow a float.
    delay_s = cap_s if exponent >= 64 else min(cap_s, base_s * 2.0**exponent)
    jitter = min(max(jitter, 0.0), 1.0)
    return max(delay_s * (1.0 - jitter / 2.0), 0.0)


def next_attempt(
    *,
    attempts: int,
    retriable: bool,
    now: datetime,
    base_s: float,
    max_attempts: int,
    cap_s: float = 3600,
    retry_after_s: float | None = None,
    jitter: float = 0.0,
) -> RetryDecision:
    """Decide the fate of an item whose attempt number `attempts` (1 = first try) just failed.

    Permanent (`retriable=False`) -> give up now; `attempts >= max_attempts` -> give up;
    else retry after the exponential backoff, at least `retry_after_s` when the server said so.
    """
    if not retriable:
        return RetryDecision(
            retry_at=None,
            give_up=True,
            reason="permanent error: moved to the sync error queue (fix the record, then "
            "`syncd errors retry`, or change it to retry automatically)",
        )
    if attempts >= max_attempts:
        return RetryDecision(
            retry_at=None,
            give_up=True,
            reason=f"failed {attempts} times (max {max_attempts}): moved to the sync error queue",
        )
    delay_s = backoff_s(attempts=attempts, base_s=base_s, cap_s=cap_s, jitter=jitter)
    if retry_after_s is not None and retry_after_s > delay_s:
        delay_s = retry_after_s
    return RetryDecision(
        retry_at=now + timedelta(seconds=delay_s),
        give_up=False,
        reason=f"attempt {attempts} failed: retry in {delay_s:.0f} s",
    )
