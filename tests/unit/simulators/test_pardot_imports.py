"""The Pardot simulator's Import API (v5) answers as `syncd.simulators.pardot.imports` says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from syncd.simulators._base import ManualClock, TokenRegistry
from syncd.simulators.pardot import PardotSimulator

BU = "0Uv000000000042AAA"
IMP = "/api/v5/imports"
STATUS_FIELDS = "id,status,isExpired,createdCount,updatedCount,errorCount,errorsRef,batchesRef"


def seed(**extra: Any) -> dict[str, Any]:
    return {
        "business_unit_id": BU,
        "users": [
            {"id": 1, "email": "ann@acme.example", "salesforceId": "005000000000001AAA"},
        ],
        "prospects": [
            {"id": 1000 + i, "email": f"p{i}@example.com", "firstName": f"P{i}", "userId": 1}
            for i in range(5)
        ],
        **extra,
    }


class Api:
    def __init__(self, sim: PardotSimulator, client: httpx.AsyncClient) -> None:
        self.sim = sim
        self.client = client
        token = sim.tokens.issue("005000000000001AAA", "00D000000000001AAA").token
        self.headers = {"Authorization": f"Bearer {token}", "Pardot-Business-Unit-Id": BU}

    async def create(self, **options: Any) -> httpx.Response:
        body = {"operation": "Upsert", "object": "Prospect", **options}
        return await self.client.post(IMP, json=body, headers=self.headers)

    async def batch(self, import_id: int, csv_text: str) -> httpx.Response:
        files = {"importFile": ("batch.csv", csv_text.encode(), "text/csv")}
        return await self.client.post(
            f"{IMP}/{import_id}/batches", files=files, headers=self.headers
        )

    async def submit(self, import_id: int) -> httpx.Response:
        return await self.client.patch(
            f"{IMP}/{import_id}", json={"status": "Ready"}, headers=self.headers
        )

    async def status(self, import_id: int) -> dict[str, Any]:
        r = await self.client.get(
            f"{IMP}/{import_id}", params={"fields": STATUS_FIELDS}, headers=self.headers
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def errors(self, import_id: int) -> httpx.Response:
        return await self.client.get(f"{IMP}/{import_id}/errors", headers=self.headers)

    async def new_import(self, csv_text: str, **options: Any) -> int:
        r = await self.create(**options)
        assert r.status_code == 200, r.text
        import_id = int(r.json()["id"])
        assert (await self.batch(import_id, csv_text)).status_code == 204
        return import_id

    async def run(self, csv_text: str, **options: Any) -> dict[str, Any]:
        import_id = await self.new_import(csv_text, **options)
        assert (await self.submit(import_id)).status_code == 200
        for _ in range(10):
            st = await self.status(import_id)
            if st["status"] in ("Complete", "Failed"):
                return st
        raise AssertionError("the import did not complete in 10 polls")


def err(r: httpx.Response) -> tuple[int, int]:
    return r.status_code, r.json()["code"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))


async def make(clock: ManualClock, **extra: Any) -> tuple[Api, httpx.AsyncClient]:
    sim = PardotSimulator(seed(**extra), clock=clock, tokens=TokenRegistry(clock))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://pi")
    return Api(sim, client), client


@pytest.fixture
async def api(clock: ManualClock) -> AsyncIterator[Api]:
    a, client = await make(clock)
    async with client:
        yield a


async def test_the_whole_flow_creates_updates_and_reports_a_failed_row(api: Api) -> None:
    r = await api.create()
    assert r.status_code == 200
    created = r.json()
    assert created["status"] == "Open" and created["isExpired"] is False
    assert created["batchesRef"].endswith(f"{IMP}/{created['id']}/batches")
    import_id = created["id"]
    csv_text = (
        "matchId,firstName,company\r\n"
        '1000,Ann,"Acme, Inc"\r\n'  # a comma inside quotes
        '1001,Bob,"Say ""hi"""\r\n'  # doubled quotes
        "99999,Gone,Nowhere\r\n"  # unknown id, no email: cannot be created
    )
    assert (await api.batch(import_id, csv_text)).status_code == 204
    assert (await api.batch(import_id, "matchId,firstName,company\n1002,Cy,\n")).status_code == 204
    r = await api.submit(import_id)
    assert r.status_code == 200 and r.json()["status"] == "Waiting"
    # Nothing is written until the import is processed.
    assert api.sim.get_prospect(1000)["firstName"] == "P0"
    st = await api.status(import_id)
    assert st["status"] == "Processing" and st["createdCount"] is None
    st = await api.status(import_id)
    assert st["status"] == "Complete"
    assert (st["createdCount"], st["updatedCount"], st["errorCount"]) == (0, 3, 1)
    assert st["errorsRef"].endswith(f"{IMP}/{import_id}/errors")
    assert api.sim.get_prospect(1000)["company"] == "Acme, Inc"
    assert api.sim.get_prospect(1001)["company"] == 'Say "hi"'
    assert api.sim.get_prospect(1002)["firstName"] == "Cy"
    assert api.sim.get_prospect(1002)["company"] is None  # an empty value is null
    r = await api.errors(import_id)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "matchId,firstName,company,error"
    assert lines[1].startswith("99999,Gone,Nowhere,") and "email" in lines[1]
    assert len(lines) == 2


async def test_rows_without_a_match_value_create_and_options_are_honoured(api: Api) -> None:
    st = await api.run("matchId,email,firstName\r\n,new@example.com,New\r\n")
    assert (st["createdCount"], st["updatedCount"], st["errorCount"]) == (1, 0, 0)
    assert [p for p in api.sim.prospects() if p["email"] == "new@example.com"]
    # createOnNoMatch false: an unknown matchId is an error row, not a new prospect.
    before = len(api.sim.prospects())
    st = await api.run("matchId,email\r\n424242,x@example.com\r\n", createOnNoMatch=False)
    assert st["errorCount"] == 1 and len(api.sim.prospects()) == before
    # Two match values in one row: that row fails alone.
    csv_text = "matchId,matchEmail,firstName\r\n1000,p0@example.com,Two\r\n1001,,One\r\n"
    st = await api.run(csv_text)
    assert (st["updatedCount"], st["errorCount"]) == (1, 1)
    assert api.sim.get_prospect(1001)["firstName"] == "One"
    assert api.sim.get_prospect(1000)["firstName"] == "P0"
    # matchEmail matches the prospect with that email; a row the write rules refuse fails alone.
    st = await api.run(
        "matchEmail,firstName,userId\r\np3@example.com,Em,1\r\np4@example.com,X,77\r\n"
    )
    assert (st["updatedCount"], st["errorCount"]) == (1, 1)
    assert api.sim.get_prospect(1003)["firstName"] == "Em"
    errors_csv = (await api.errors(st["id"])).text
    assert "Invalid user ID" in errors_csv


async def test_recycled_prospects_are_restored_only_when_asked(api: Api) -> None:
    api.sim.edit_prospect(1004, {"isDeleted": True})
    st = await api.run("matchId,firstName\r\n1004,Back\r\n")
    assert st["errorCount"] == 1 and api.sim.get_prospect(1004)["firstName"] == "P4"
    st = await api.run("matchId,firstName\r\n1004,Back\r\n", restoreDeleted=True)
    assert st["updatedCount"] == 1
    row = api.sim.get_prospect(1004)
    assert row["firstName"] == "Back" and row["isDeleted"] is False


async def test_un_assigning_is_refused_row_by_row(api: Api) -> None:
    """v5 import doc: "Un-assigning prospects is NOT supported through Import"."""
    before = api.sim.get_prospect(1001)["userId"]
    assert before is not None
    st = await api.run("matchId,userId\r\n1001,\r\n1002,1\r\n")
    assert (st["errorCount"], st["updatedCount"]) == (1, 1)
    assert api.sim.get_prospect(1001)["userId"] == before
    assert "Un-assigning" in (await api.errors(st["id"])).text
    st = await api.run("matchId,salesforceOwnerId\r\n1003,\r\n")
    assert st["errorCount"] == 1


async def test_the_same_upsert_twice_changes_no_value(api: Api) -> None:
    csv_text = "matchId,firstName,jobTitle\r\n1000,Same,CTO\r\n"
    await api.run(csv_text)
    once = {k: v for k, v in api.sim.get_prospect(1000).items() if k != "updatedAt"}
    await api.run(csv_text)
    twice = {k: v for k, v in api.sim.get_prospect(1000).items() if k != "updatedAt"}
    assert once == twice


async def test_create_with_the_first_file_and_submit_at_once(api: Api) -> None:
    files = {
        "importInput": (None, json.dumps({"operation": "Upsert", "object": "Prospect",
                                          "status": "Ready"}), "application/json"),
        "importFile": ("a.csv", b"matchId,firstName\r\n1000,Multi\r\n", "text/csv"),
    }  # fmt: skip
    r = await api.client.post(IMP, files=files, headers=api.headers)
    assert r.status_code == 200 and r.json()["status"] == "Waiting"
    assert r.json()["batchesRef"] is None
    import_id = r.json()["id"]
    assert (await api.status(import_id))["status"] == "Processing"
    assert (await api.status(import_id))["status"] == "Complete"
    assert api.sim.get_prospect(1000)["firstName"] == "Multi"


async def test_requests_are_checked(api: Api) -> None:
    assert err(await api.create(operation="Insert")) == (400, 154)
    assert err(await api.create(object="Visitor")) == (400, 154)
    assert err(await api.create(colour="red")) == (400, 154)
    assert err(await api.create(restoreDeleted="yes")) == (400, 50)
    # The path is /api/v5/imports (UNCONFIRMED): the objects path is not an endpoint.
    r = await api.client.post(
        "/api/v5/objects/imports", json={"operation": "Upsert"}, headers=api.headers
    )
    assert err(r) == (404, 198)
    import_id = (await api.create()).json()["id"]
    r = await api.client.get(f"{IMP}/{import_id}", headers=api.headers)
    assert err(r) == (400, 13)  # fields is required
    r = await api.client.get(f"{IMP}/{import_id}", params={"fields": "id,colour"},
                             headers=api.headers)  # fmt: skip
    assert err(r) == (400, 51)
    assert err(await api.client.get(f"{IMP}/777", params={"fields": "id"},
                                    headers=api.headers)) == (404, 109)  # fmt: skip
    # A batch is multipart with an importFile part.
    r = await api.client.post(
        f"{IMP}/{import_id}/batches", content=b"matchId\r\n1\r\n", headers=api.headers
    )
    assert err(r) == (400, 150)
    assert err(await api.submit(import_id)) == (400, 153)  # no batch yet
    assert err(await api.batch(import_id, "matchId,colour\r\n1000,red\r\n")) == (400, 154)
    assert err(await api.batch(import_id, "matchId,firstName\r\n1000\r\n")) == (400, 150)
    assert (await api.batch(import_id, "matchId,firstName\r\n1000,A\r\n")).status_code == 204
    # Every batch of an import has the first batch's header, in the same order.
    assert err(await api.batch(import_id, "firstName,matchId\r\nA,1000\r\n")) == (400, 154)
    assert (await api.submit(import_id)).status_code == 200
    assert err(await api.submit(import_id)) == (400, 60)  # already submitted
    assert err(await api.batch(import_id, "matchId,firstName\r\n1000,A\r\n")) == (400, 60)
    assert err(await api.errors(import_id)) == (400, 60)  # not complete yet


@pytest.mark.sends_read_only
async def test_read_only_columns_reject_the_csv_and_are_counted(api: Api) -> None:
    import_id = (await api.create()).json()["id"]
    csv_text = "matchId,firstName,salesforceLeadId,grade\r\n1000,A,00Q1,A\r\n1001,B,00Q2,B\r\n"
    r = await api.batch(import_id, csv_text)
    assert err(r) == (400, 180)
    assert "grade, salesforceLeadId are read-only" in r.json()["message"]
    counts = api.sim.written()["Prospect"]
    assert counts["salesforceLeadId"] == 2 and counts["grade"] == 2 and counts["firstName"] == 2
    assert "matchId" not in counts
    assert api.sim.get_prospect(1000)["firstName"] == "P0"


async def test_written_counts_each_row_of_a_batch(api: Api) -> None:
    await api.run("matchId,jobTitle\r\n1000,A\r\n1001,B\r\n1002,C\r\n")
    assert api.sim.written()["Prospect"] == {"jobTitle": 3}


async def test_the_limits(clock: ManualClock) -> None:
    api, client = await make(clock, import_max_batch_bytes=64, import_daily_batch_cap=12)
    async with client:
        import_id = (await api.create()).json()["id"]
        small = "matchId,firstName\r\n1000,A\r\n"
        for _ in range(10):
            assert (await api.batch(import_id, small)).status_code == 204
        assert err(await api.batch(import_id, small)) == (400, 188)  # the 11th batch
        other = (await api.create()).json()["id"]
        big = "matchId,firstName\r\n" + "1000,Abcdefghij\r\n" * 5
        assert err(await api.batch(other, big)) == (400, 188)  # not under the batch size
        assert (await api.batch(other, small)).status_code == 204
        assert (await api.batch(other, small)).status_code == 204  # the 12th today
        assert err(await api.batch(other, small)) == (400, 188)  # the daily cap
        clock.advance(days=1)  # a new day in the account's time zone
        fresh = (await api.create()).json()["id"]
        assert (await api.batch(fresh, small)).status_code == 204


async def test_open_imports_expire_after_a_day_and_results_after_a_week(
    api: Api, clock: ManualClock
) -> None:
    import_id = await api.new_import("matchId,firstName\r\n1000,Late\r\n")
    clock.advance(hours=24)
    st = await api.status(import_id)
    assert st["isExpired"] is True and st["batchesRef"] is None
    assert err(await api.batch(import_id, "matchId,firstName\r\n1000,A\r\n")) == (400, 189)
    assert err(await api.submit(import_id)) == (400, 189)
    assert api.sim.get_prospect(1000)["firstName"] == "P0"
    st = await api.run("matchId,firstName\r\n,\r\n")  # one error row: no email
    assert st["errorCount"] == 1
    clock.advance(days=7)
    assert (await api.status(st["id"]))["isExpired"] is True
    assert err(await api.errors(st["id"])) == (400, 189)


async def test_processing_takes_the_configured_polls_and_the_fault_knob(
    clock: ManualClock,
) -> None:
    api, client = await make(clock, import_processing_polls=3)
    async with client:
        import_id = await api.new_import("matchId,firstName\r\n1000,Slow\r\n")
        await api.submit(import_id)
        seen = [(await api.status(import_id))["status"] for _ in range(4)]
        assert seen == ["Processing", "Processing", "Processing", "Complete"]
        # stall: Processing forever, nothing applied.
        r = await client.post("/__sim__/imports", json={"fault": "stall"})
        assert r.status_code == 200
        import_id = await api.new_import("matchId,firstName\r\n1001,Never\r\n")
        await api.submit(import_id)
        assert {(await api.status(import_id))["status"] for _ in range(20)} == {"Processing"}
        assert api.sim.get_prospect(1001)["firstName"] == "P1"
        # fail: Failed, no row applied.
        await client.post("/__sim__/imports", json={"fault": "fail", "processing_polls": 0})
        failing = await api.new_import("matchId,firstName\r\n1002,Never\r\n")
        await api.submit(failing)
        assert (await api.status(failing))["status"] == "Failed"
        assert api.sim.get_prospect(1002)["firstName"] == "P2"
        # With the fault off, the stalled import completes on its next read.
        await client.post("/__sim__/imports", json={"fault": None})
        assert (await api.status(import_id))["status"] == "Complete"
        assert api.sim.get_prospect(1001)["firstName"] == "Never"
        r = await client.post("/__sim__/imports", json={"fault": "sometimes"})
        assert r.status_code == 400


async def test_import_calls_count_against_the_daily_limit(clock: ManualClock) -> None:
    api, client = await make(clock, daily_api_limit=4)
    async with client:
        import_id = await api.new_import("matchId,firstName\r\n1000,A\r\n")  # 2 calls
        assert (await api.submit(import_id)).status_code == 200  # 3
        await api.status(import_id)  # 4
        assert api.sim.api_usage == 4
        r = await client.get(f"{IMP}/{import_id}", params={"fields": "id"}, headers=api.headers)
        assert r.json()["code"] == 122
