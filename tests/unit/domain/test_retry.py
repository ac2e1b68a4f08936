"""Retry decisions: exponential backoff with a cap, Retry-After, give up to the error queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.retry import backoff_s, next_attempt

from . import NOW


@pytest.mark.parametrize(
    ("attempts", "retriable", "max_attempts", "retry_after_s", "delay_s", "give_up"),
    [
        pytest.param(1, True, 5, None, 10, False, id="first-failure-base"),
        pytest.param(2, True, 5, None, 20, False, id="doubles"),
        pytest.param(4, True, 5, None, 80, False, id="exponential"),
        pytest.param(4, True, 5, 300, 300, False, id="retry-after-wins-when-longer"),
        pytest.param(2, True, 5, 1, 20, False, id="retry-after-shorter-ignored"),
        pytest.param(5, True, 5, None, None, True, id="max-attempts-gives-up"),
        pytest.param(1, False, 5, None, None, True, id="permanent-gives-up-at-once"),
        pytest.param(30, True, 100, None, 3600, False, id="capped"),
    ],
)
def test_next_attempt(
    attempts: int,
    retriable: bool,
    max_attempts: int,
    retry_after_s: float | None,
    delay_s: float | None,
    give_up: bool,
) -> None:
    decision = next_attempt(
        attempts=attempts,
        retriable=retriable,
        now=NOW,
        base_s=10,
        max_attempts=max_attempts,
        retry_after_s=retry_after_s,
    )
    assert decision.give_up is give_up
    assert decision.reason
    if delay_s is None:
        assert decision.retry_at is None
    else:
        assert decision.retry_at == NOW + timedelta(seconds=delay_s)


@given(
    attempts=st.integers(min_value=1, max_value=10_000),
    jitter=st.floats(min_value=0, max_value=1),
    base_s=st.floats(min_value=0.1, max_value=600),
)
def test_backoff_stays_within_half_to_full_cap(attempts: int, jitter: float, base_s: float) -> None:
    delay_s = backoff_s(attempts=attempts, base_s=base_s, cap_s=3600, jitter=jitter)
    full_s = min(3600, base_s * 2 ** min(attempts - 1, 64))
    assert full_s / 2 - 1e-6 <= delay_s <= full_s + 1e-6
