"""Counting refused logins: when `syncd run` backs off, and when it gives up (exit 2)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd.errors import AuthError
from syncd.runtime.login import LoginWatch

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.s = 0.0

    def __call__(self) -> float:
        return self.s


def _refusal() -> AuthError:
    return AuthError("salesforce", 400, "invalid_client", "check salesforce.client_secret")


def _watch(clock: _Clock, *, at_start: int = 1, later: int = 3) -> LoginWatch:
    return LoginWatch(
        backoff_s=300.0,
        refusals_at_start=at_start,
        refusals_later=later,
        clock=lambda: T0,
        monotonic=clock,
    )


@pytest.mark.parametrize(
    ("succeeded_first", "at_start", "later", "gives_up_after"),
    [
        (False, 1, 3, 1),  # the default: a wrong secret fails the start
        (False, 2, 3, 2),
        (True, 1, 3, 3),  # after a success: three in a row
        (True, 1, 1, 1),
    ],
    ids=["start-default", "start-2", "later-default", "later-1"],
)
def test_gives_up_after_the_configured_refusals(
    succeeded_first: bool, at_start: int, later: int, gives_up_after: int
) -> None:
    clock = _Clock()
    watch = _watch(clock, at_start=at_start, later=later)
    if succeeded_first:
        watch.succeeded()
    for n in range(1, gives_up_after + 1):
        assert watch.gave_up is None
        watch.refused(_refusal())
        assert watch.refusals == n
        clock.s += 300.0  # the next probe, after the back-off
    assert watch.gave_up is not None
    assert watch.given_up.is_set()


def test_refusals_during_the_back_off_count_once_and_success_resets() -> None:
    clock = _Clock()
    watch = _watch(clock, at_start=3)
    watch.refused(_refusal())
    watch.refused(_refusal())  # another task's probe of the same round
    assert watch.refusals == 1
    assert watch.probe_in_s() == 300.0
    clock.s += 120.0
    assert watch.probe_in_s() == 180.0  # minutes between logins, not seconds
    entry = watch.entry("host:1:abc")
    assert entry is not None
    assert entry["system"] == "salesforce" and entry["refusals"] == 1
    assert entry["since"] == T0.isoformat()
    watch.succeeded()
    assert watch.failing is None and watch.refusals == 0
    assert watch.entry("host:1:abc") is None
    assert watch.probe_in_s() == 0.0
