"""The clients' life-cycle calls (issue 15) against the simulators: Salesforce `queryAll`
(merge losers with IsDeleted / MasterRecordId), Pardot recycled reads, DELETE and undelete."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd.simulators._base import ManualClock, TokenRegistry
from syncd.simulators.pardot import PardotSimulator

from .test_pardot_client import BU, make
from .test_salesforce_client import make_org

MASTER = "00Q000000000001AAA"
LOSER = "00Q000000000002AAA"
GONE = "00Q000000000003AAA"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


def _lead(rid: str, email: str) -> dict[str, str]:
    return {"Id": rid, "LastName": "Doe", "Company": "Acme", "Email": email}


async def test_query_with_deleted_reads_merge_losers_over_pages(clock: ManualClock) -> None:
    many = [_lead(f"00Q{i:012d}AAA", f"p{i}@example.com") for i in range(10, 2510)]
    o = await make_org(
        clock,
        leads=[_lead(MASTER, "jane@acme.example"), _lead(LOSER, "jane@acme.example"),
               _lead(GONE, "gone@acme.example"), *many],
    )  # fmt: skip
    try:
        o.sim.merge("Lead", MASTER, [LOSER])
        o.sim.remove("Lead", GONE)
        soql = (
            "SELECT Id, IsDeleted, MasterRecordId FROM Lead "
            f"WHERE Id IN ('{MASTER}', '{LOSER}', '{GONE}')"
        )
        assert [r["Id"] for r in await o.client.query_all(soql)] == [MASTER]
        rows = {r["Id"]: r for r in await o.client.query_with_deleted(soql)}
        assert (rows[LOSER]["IsDeleted"], rows[LOSER]["MasterRecordId"]) == (True, MASTER)
        assert (rows[GONE]["IsDeleted"], rows[GONE]["MasterRecordId"]) == (True, None)
        assert (rows[MASTER]["IsDeleted"], rows[MASTER]["MasterRecordId"]) == (False, None)
        assert o.requests("GET", "/queryAll") == 1  # query_all used /query
        losers = "SELECT COUNT() FROM Lead WHERE IsDeleted = true AND MasterRecordId != null"
        assert await o.client.count(losers, include_deleted=True) == 1
        assert await o.client.count("SELECT COUNT() FROM Lead WHERE IsDeleted = true") == 0
        # queryAll pages like query (2000 a batch, then queryMore)
        everything = await o.client.query_with_deleted("SELECT Id FROM Lead")
        assert len(everything) == 2503
    finally:
        await o.aclose()


def _pardot(clock: ManualClock) -> PardotSimulator:
    return PardotSimulator(
        {
            "business_unit_id": BU,
            "prospects": [
                {"id": 1001, "email": "jane@acme.example"},
                {"id": 1002, "email": "gone@acme.example", "isDeleted": True},
            ],
        },
        clock=clock,
        tokens=TokenRegistry(clock),
    )


async def test_recycled_prospect_is_read_with_include_deleted(clock: ManualClock) -> None:
    client, _ = make(_pardot(clock))
    async with client:
        assert await client.get_prospect(1002, ["id", "isDeleted"]) is None
        got = await client.get_prospect(1002, ["id", "isDeleted"], include_deleted=True)
        assert got == {"id": 1002, "isDeleted": True}
        live = await client.get_prospect(1001, ["id", "isDeleted"], include_deleted=True)
        assert live == {"id": 1001, "isDeleted": False}
        assert await client.get_prospect(9999, ["id"], include_deleted=True) is None
        fields = ["id", "isDeleted"]
        assert await client.prospects_in_id_range(1001, 1002, fields) == [
            {"id": 1001, "isDeleted": False}
        ]
        assert await client.prospects_in_id_range(1001, 1002, fields, include_deleted=True) == [
            {"id": 1001, "isDeleted": False},
            {"id": 1002, "isDeleted": True},
        ]
        assert await client.find_prospects_by_email("gone@acme.example", fields) == []
        assert await client.find_prospects_by_email(
            "GONE@acme.example", fields, include_deleted=True
        ) == [{"id": 1002, "isDeleted": True}]


async def test_delete_then_undelete_round_trip(clock: ManualClock) -> None:
    sim = _pardot(clock)
    client, _ = make(sim)
    async with client:
        await client.delete_prospect(1001)
        assert (sim.get_prospect(1001) or {})["isDeleted"] is True
        restored = await client.undelete_prospect_by_email("JANE@acme.example")
        assert restored == {"id": 1001, "email": "jane@acme.example", "isDeleted": False}
        assert await client.undelete_prospect_by_email("jane@acme.example") is None
        assert await client.get_prospect(1001, ["id"]) == {"id": 1001}
