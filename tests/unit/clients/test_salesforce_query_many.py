"""SalesforceClient.query_many: several queries in one /composite call, against the simulator."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd import errors
from syncd.simulators._base import ManualClock
from tests.unit.clients.test_salesforce_client import lead, make_org


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


async def test_seven_queries_take_two_calls_and_keep_their_order(clock: ManualClock) -> None:
    o = await make_org(clock, leads=[lead(i) for i in range(10)])
    try:
        soqls = [f"SELECT Id, Email FROM Lead WHERE Email = 'p{i}@example.com'" for i in range(7)]
        results = await o.client.query_many(soqls)
        assert [[r["Email"] for r in rows] for rows in results] == [
            [f"p{i}@example.com"] for i in range(7)
        ]
        assert o.requests("POST", "/composite") == 2  # 5 + 2 queries
        assert o.requests("GET", "/query") == 0
    finally:
        await o.aclose()


async def test_a_big_result_follows_its_next_records_url(clock: ManualClock) -> None:
    o = await make_org(clock, leads=[lead(i) for i in range(2500)])
    try:
        big, small = await o.client.query_many(
            ["SELECT Id FROM Lead", "SELECT Id FROM Lead WHERE Email = 'p3@example.com'"]
        )
        assert len(big) == 2500 and len({r["Id"] for r in big}) == 2500
        assert len(small) == 1
        assert o.requests("POST", "/composite") == 1
        assert o.requests("GET", "/query") == 1  # the second page of the big one
    finally:
        await o.aclose()


async def test_a_bad_query_raises_its_own_error(clock: ManualClock) -> None:
    o = await make_org(clock)
    try:
        with pytest.raises(errors.PermanentAPIError) as info:
            await o.client.query_many(["SELECT Id FROM Lead", "SELECT Nope FROM Lead"])
        assert info.value.code == "INVALID_FIELD"
    finally:
        await o.aclose()
