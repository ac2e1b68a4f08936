"""Reading a batch's prospects by id range: the clustering rule and the client call."""

from __future__ import annotations

from datetime import UTC, datetime

from syncd.runtime.pipeline import RANGE_MAX_SPAN, RANGE_MIN_IDS, Work, id_clusters
from syncd.simulators._base import ManualClock
from tests.unit.clients.test_pardot_client import make, seed, simulator


def works(*ids: int) -> list[Work]:
    return [Work(items=[], prospect_id=i) for i in ids]


def ids_of(group: list[Work]) -> list[int | None]:
    return [w.prospect_id for w in group]


def test_close_ids_form_one_range_and_strays_are_read_alone() -> None:
    ranges, singles = id_clusters(works(1010, 1003, 1001, 1020, 9000, 1040, 50_000))
    assert [ids_of(g) for g in ranges] == [[1001, 1003, 1010, 1020, 1040]]
    assert sorted(w.prospect_id or 0 for w in singles) == [9000, 50_000]


def test_small_clusters_are_not_worth_a_range_read() -> None:
    few = works(*range(1000, 1000 + RANGE_MIN_IDS - 1))
    ranges, singles = id_clusters(few)
    assert ranges == []
    assert len(singles) == RANGE_MIN_IDS - 1


def test_a_range_never_spans_more_than_one_page() -> None:
    dense = works(*range(1, 3 * RANGE_MAX_SPAN, 10))
    ranges, singles = id_clusters(dense)
    assert not singles
    for g in ranges:
        span = (g[-1].prospect_id or 0) - (g[0].prospect_id or 0)
        assert span < RANGE_MAX_SPAN
    assert sum(len(g) for g in ranges) == len(dense)


async def test_client_reads_the_live_prospects_of_a_range() -> None:
    clock = ManualClock(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    sim = simulator(clock, seed(30))
    client, _ = make(sim)
    async with client:
        await client.delete_prospect(1005)  # in the recycle bin: not returned, as a GET says
        rows = await client.prospects_in_id_range(1003, 1008, ["id", "email"])
    assert [r["id"] for r in rows] == [1003, 1004, 1006, 1007, 1008]
    assert rows[0]["email"] == "p3@example.com"
    assert sim.counters.count("GET", "/prospects") == 1
