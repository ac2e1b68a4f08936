"""PardotImports (the Import API client) against the Pardot simulator in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from syncd import errors
from syncd.clients.http import CallRecord, RetryPolicy
from syncd.clients.pardot import PardotClient
from syncd.clients.pardot_import import (
    ImportIncompleteError,
    ImportRow,
    PardotImports,
)
from syncd.simulators._base import Faults, ManualClock, TokenRegistry
from syncd.simulators.pardot import PardotSimulator

BU = "0Uv000000000042AAA"
SF_USER = "005000000000001AAA"
FAST = RetryPolicy(max_attempts=8, base_delay_s=0.001, max_delay_s=0.005)
IMPORTS_POST = "POST /api/v5/imports"


class Tokens:
    def __init__(self, registry: TokenRegistry) -> None:
        self.registry = registry
        self.current: str | None = None

    async def token(self) -> str:
        if self.current is None:
            self.current = self.registry.issue(SF_USER, "00D000000000001AAA").token
        return self.current

    async def refresh(self, stale: str) -> str:
        self.current = None
        return await self.token()


def seed(n: int = 20, **extra: Any) -> dict[str, Any]:
    return {
        "business_unit_id": BU,
        "users": [{"id": 1, "email": "ann@acme.example", "salesforceId": SF_USER}],
        "prospects": [
            {"id": 1000 + i, "email": f"p{i}@example.com", "firstName": f"P{i}", "userId": 1}
            for i in range(n)
        ],
        **extra,
    }


class Rig:
    def __init__(self, sim: PardotSimulator, client: PardotClient, calls: list[CallRecord]):
        self.sim = sim
        self.client = client
        self.imports = PardotImports(client)
        self.calls = calls

    def routes(self) -> dict[str, int]:
        return dict(self.sim.counters.snapshot()["requests"])

    async def control(self, **body: Any) -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.sim.app), base_url="http://pi"
        ) as c:
            r = await c.post("/__sim__/imports", json=body)
            assert r.status_code == 200, r.text


async def make(clock: ManualClock, faults: Faults | None = None, **extra: Any) -> Rig:
    sim = PardotSimulator(seed(**extra), clock=clock, tokens=TokenRegistry(clock), faults=faults)
    calls: list[CallRecord] = []
    client = PardotClient(
        base_url="http://pi.test",
        business_unit_id=BU,
        tokens=Tokens(sim.tokens),
        transport=httpx.ASGITransport(app=sim.app),
        retry=FAST,
        on_call=calls.append,
    )
    return Rig(sim, client, calls)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))


@pytest.fixture
async def rig(clock: ManualClock) -> AsyncIterator[Rig]:
    r = await make(clock)
    async with r.client:
        yield r


async def test_a_batch_of_updates_goes_through_one_import(rig: Rig) -> None:
    rows = [
        ImportRow({"jobTitle": f"T{i}", "company": f"C{i}"}, match_id=1000 + i) for i in range(20)
    ]
    result = await rig.imports.upsert(rows, timeout_s=60, poll_interval_s=0)
    assert (result.created, result.updated, result.errors) == (0, 20, ())
    assert len(result.import_ids) == 1
    routes = rig.routes()
    assert routes[IMPORTS_POST] == 1
    assert routes["POST /api/v5/imports/{id}/batches"] == 1
    assert routes["PATCH /api/v5/imports/{id}"] == 1
    assert "PATCH /api/v5/objects/prospects/{id}" not in routes
    for i in range(20):
        p = rig.sim.get_prospect(1000 + i)
        assert (p["jobTitle"], p["company"]) == (f"T{i}", f"C{i}")
    # Every import call went through the client's call chain (observed, counted).
    assert {c.path for c in rig.calls} >= {
        "/api/v5/imports",
        "/api/v5/imports/{id}/batches",
        "/api/v5/imports/{id}",
    }
    assert rig.client.calls_made == len(rig.calls) == sum(routes.values())


async def test_a_refused_row_comes_back_alone_with_its_reason(rig: Rig) -> None:
    rows = [ImportRow({"userId": 1}, match_id=1000 + i) for i in range(5)]
    rows[3] = ImportRow({"userId": 77}, match_id=1003)  # no such user
    result = await rig.imports.upsert(rows, timeout_s=60, poll_interval_s=0)
    assert (result.updated, len(result.errors)) == (4, 1)
    (refused,) = result.errors
    assert refused.row == 3 and refused.match == ("matchId", "1003")
    assert refused.code == "IMPORT_ROW" and "Invalid user ID" in refused.message


async def test_rows_are_grouped_by_their_fields_so_no_blank_overwrites(rig: Rig) -> None:
    rig.sim.edit_prospect(1001, {"company": "Keep Ltd"})
    rows = [
        ImportRow({"jobTitle": "CTO", "company": "Acme"}, match_id=1000),
        ImportRow({"jobTitle": "CFO"}, match_id=1001),  # must not blank company
        ImportRow({"company": None}, match_id=1002),  # a deliberate blank
    ]
    rig.sim.edit_prospect(1002, {"company": "Gone Inc"})
    result = await rig.imports.upsert(rows, timeout_s=60, poll_interval_s=0)
    assert (result.updated, len(result.import_ids)) == (3, 3)
    assert rig.sim.get_prospect(1001)["company"] == "Keep Ltd"
    assert rig.sim.get_prospect(1001)["jobTitle"] == "CFO"
    assert rig.sim.get_prospect(1002)["company"] is None


async def test_values_survive_csv_quoting(rig: Rig) -> None:
    tricky = [
        'Acme, "the best"',
        "line one\nline two",
        "Zoë Ünïcode — ✓",
        "  spaced  ",
        "=1+1",
    ]
    rows = [ImportRow({"company": v}, match_id=1000 + i) for i, v in enumerate(tricky)]
    rows.append(ImportRow({"isDoNotCall": True, "score": 42}, match_id=1010))
    result = await rig.imports.upsert(rows, timeout_s=60, poll_interval_s=0)
    assert result.errors == ()
    assert [rig.sim.get_prospect(1000 + i)["company"] for i in range(5)] == tricky
    p = rig.sim.get_prospect(1010)
    assert p["isDoNotCall"] is True and p["score"] == 42


async def test_large_groups_are_cut_into_batches_and_imports(rig: Rig) -> None:
    for i in range(20, 100):
        rig.sim.add_prospect({"id": 1000 + i, "email": f"p{i}@example.com"})
    imports = PardotImports(rig.client, max_batch_bytes=1024, max_batches=2)
    rows = [ImportRow({"jobTitle": "x" * 40 + str(i)}, match_id=1000 + i) for i in range(100)]
    plans = imports.plan(rows)
    assert len(plans) > 1
    assert all(1 <= len(p.batches) <= 2 for p in plans)
    assert all(len(b) <= 1024 for p in plans for b in p.batches)
    assert all(b.startswith(b"matchId,jobTitle\r\n") for p in plans for b in p.batches)
    result = await imports.upsert(rows, timeout_s=60, poll_interval_s=0)
    assert result.updated == 100 and len(result.import_ids) == len(plans)
    assert all(rig.sim.get_prospect(1000 + i)["jobTitle"] == "x" * 40 + str(i) for i in range(100))
    assert rig.routes()["POST /api/v5/imports/{id}/batches"] == sum(len(p.batches) for p in plans)
    with pytest.raises(ValueError, match="one row each"):
        imports.plan([ImportRow({"jobTitle": "a"}, match_id=1), ImportRow({}, match_id=1)])


async def test_rows_without_a_match_value_create(rig: Rig) -> None:
    rows = [ImportRow({"email": "new@example.com", "firstName": "New"})]
    result = await rig.imports.upsert(rows, timeout_s=60, poll_interval_s=0)
    assert (result.created, result.updated) == (1, 0)
    assert [p for p in rig.sim.prospects() if p["email"] == "new@example.com"]
    # An unknown id never creates a prospect (createOnNoMatch is off): an error row.
    before = len(rig.sim.prospects())
    result = await rig.imports.upsert(
        [ImportRow({"firstName": "Ghost"}, match_id=424242)], timeout_s=60, poll_interval_s=0
    )
    assert len(result.errors) == 1 and len(rig.sim.prospects()) == before


async def test_an_import_that_never_completes_is_detected_and_retried_without_double_writes(
    rig: Rig,
) -> None:
    rows = [ImportRow({"jobTitle": "Lead Dev"}, match_id=1000 + i) for i in range(5)]
    await rig.control(fault="stall")
    with pytest.raises(ImportIncompleteError) as caught:
        await rig.imports.upsert(rows, timeout_s=3600, poll_interval_s=0, max_polls=5)
    stalled = caught.value
    assert isinstance(stalled, errors.RetriableAPIError)
    assert stalled.code == "IMPORT_INCOMPLETE" and stalled.last_status == "Processing"
    assert rig.sim.get_prospect(1000)["jobTitle"] is None  # nothing applied yet
    # The caller retries (a new import) once Pardot processes again.
    await rig.control(fault=None)
    count = len(rig.sim.prospects())
    result = await rig.imports.upsert(rows, timeout_s=3600, poll_interval_s=0)
    assert result.updated == 5
    after_retry = [dict(rig.sim.get_prospect(1000 + i)) for i in range(5)]
    # The stalled import completes late: it writes the same values again, creates nothing.
    late = await rig.imports.wait(stalled.import_id, timeout_s=3600, poll_interval_s=0)
    assert (late.created_count, late.updated_count) == (0, 5)
    assert len(rig.sim.prospects()) == count
    for before, i in zip(after_retry, range(5), strict=True):
        now = rig.sim.get_prospect(1000 + i)
        assert {k: v for k, v in now.items() if k != "updatedAt"} == {
            k: v for k, v in before.items() if k != "updatedAt"
        }


async def test_a_failed_import_is_reported_as_retriable(rig: Rig) -> None:
    await rig.control(fault="fail")
    with pytest.raises(ImportIncompleteError) as caught:
        await rig.imports.upsert(
            [ImportRow({"jobTitle": "X"}, match_id=1000)], timeout_s=60, poll_interval_s=0
        )
    assert caught.value.code == "IMPORT_FAILED" and caught.value.last_status == "Failed"
    assert rig.sim.get_prospect(1000)["jobTitle"] is None


async def test_submitting_twice_reads_the_status_instead_of_failing(rig: Rig) -> None:
    import_id = await rig.imports.start()
    await rig.imports.add_batch(import_id, b"matchId,firstName\r\n1000,Twice\r\n")
    first = await rig.imports.submit(import_id)
    again = await rig.imports.submit(import_id)  # as after a lost answer
    assert first.status == "Waiting" and again.status in ("Processing", "Complete")
    done = await rig.imports.wait(import_id, timeout_s=60, poll_interval_s=0)
    assert done.updated_count == 1


async def test_lost_answers_to_batches_of_updates_are_resent_harmlessly(clock: ManualClock) -> None:
    faults = Faults(lost_response_rate=0.5, seed=3)
    rig = await make(clock, faults=faults, n=60)
    async with rig.client:
        imports = PardotImports(rig.client, max_batch_bytes=1024)
        rows = [ImportRow({"jobTitle": f"J{i}" * 30}, match_id=1000 + i) for i in range(60)]
        import_id = None
        while import_id is None:  # a lost answer to the create is not resent: start again
            try:
                import_id = await imports.start()
            except errors.RetriableAPIError:
                continue
        (plan,) = imports.plan(rows)
        assert len(plan.batches) > 3
        for batch in plan.batches:
            await imports.add_batch(import_id, batch)
        await imports.submit(import_id)
        faults.lost_response_rate = 0
        lost = rig.sim.counters.snapshot()["faults"]
        assert lost.get("lost_502", 0) + lost.get("lost_dropped", 0) > 0
        done = await rig.imports.wait(import_id, timeout_s=60, poll_interval_s=0)
        assert done.error_count == 0
        assert [rig.sim.get_prospect(1000 + i)["jobTitle"] for i in range(60)] == [
            f"J{i}" * 30 for i in range(60)
        ]


@pytest.mark.sends_read_only
async def test_a_read_only_field_refuses_the_batch(rig: Rig) -> None:
    with pytest.raises(errors.PermanentAPIError) as caught:
        await rig.imports.upsert(
            [ImportRow({"salesforceLeadId": "00Q1"}, match_id=1000)], timeout_s=60
        )
    assert caught.value.code == "180"


async def test_rows_are_checked_before_anything_is_sent(rig: Rig) -> None:
    with pytest.raises(ValueError, match="at most one match value"):
        await rig.imports.upsert(
            [ImportRow({"firstName": "A"}, match_id=1, match_email="a@example.com")], timeout_s=1
        )
    with pytest.raises(ValueError, match="not a prospect field"):
        await rig.imports.upsert([ImportRow({"matchId": "1"}, match_id=1)], timeout_s=1)
    assert rig.client.calls_made == 0
