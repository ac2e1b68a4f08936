"""The Pardot v5 simulator answers as the real API does (wire-formats.md section C)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.simulators import written
from syncd.simulators._base import Faults, ManualClock, TokenRegistry
from syncd.simulators.pardot import PROSPECT_READ_ONLY, WARNING_CHAIN_CAP, PardotSimulator

BU = "0Uv000000000042AAA"
P = "/api/v5/objects/prospects"


def seed(n_prospects: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "business_unit_id": BU,
        "users": [
            {
                "id": 1,
                "email": "ann@acme.example",
                "username": "ann@acme.example",
                "salesforceId": "005000000000001AAA",
                "firstName": "Ann",
            },
            {
                "id": 2,
                "email": "bob@acme.example",
                "username": "bob@acme.example",
                "salesforceId": "005000000000002AAA",
            },
            {"id": 3, "email": "gone@acme.example", "isDeleted": True},
        ],
        "prospects": [
            {
                "id": 1000 + i,
                "email": f"p{i}@example.com",
                "firstName": f"P{i}",
                "userId": 1,
                "score": i,
                "grade": "A-",
                "updatedAt": f"2026-01-0{1 + i % 3}T10:00:00Z",
                "createdAt": "2025-12-01T00:00:00Z",
                "Industry__c": "Retail",
            }
            for i in range(n_prospects)
        ],
        "emails": [
            {"id": 5001, "prospectId": 1000, "subject": "Hello", "sentAt": "2026-01-05T10:00:00Z"},
            {"id": 5002, "prospectId": 1001, "subject": "Again", "sentAt": "2026-01-06T10:00:00Z"},
            {"id": 5003, "prospectId": 1000, "subject": "Third", "sentAt": "2026-01-07T10:00:00Z"},
        ],
        **extra,
    }


class Api:
    """A tiny caller with the two required headers."""

    def __init__(self, sim: PardotSimulator, client: httpx.AsyncClient, token: str) -> None:
        self.sim = sim
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}", "Pardot-Business-Unit-Id": BU}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.headers)

    async def send(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return await self.client.request(
            method, path, params=params, json=body, headers=self.headers
        )


def make_api(sim: PardotSimulator) -> tuple[Api, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://pi")
    token = sim.tokens.issue("005000000000001AAA", "00D000000000001AAA").token
    return Api(sim, client, token), client


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))


@pytest.fixture
async def api(clock: ManualClock) -> AsyncIterator[Api]:
    sim = PardotSimulator(seed(), clock=clock, tokens=TokenRegistry(clock))
    a, client = make_api(sim)
    async with client:
        yield a


def err(r: httpx.Response) -> tuple[int, int]:
    return r.status_code, r.json()["code"]


# ----- headers and authentication ---------------------------------------------------------------


async def test_headers_are_checked_in_order(api: Api) -> None:
    c = api.client
    r = await c.get(P, params={"fields": "id"})
    assert err(r) == (401, 49)
    r = await c.get(P, params={"fields": "id"}, headers={"Authorization": "Bearer nope"})
    assert err(r) == (401, 184)
    assert r.json()["message"].startswith("access_token is invalid, unknown, or malformed")
    auth = {"Authorization": api.headers["Authorization"]}
    r = await c.get(P, params={"fields": "id"}, headers=auth)
    assert err(r) == (400, 181)
    r = await c.get(P, params={"fields": "id"}, headers={**auth, "Pardot-Business-Unit-Id": "x"})
    assert err(r) == (400, 182)
    other = {**auth, "Pardot-Business-Unit-Id": "0Uv000000000099AAA"}
    r = await c.get(P, params={"fields": "id"}, headers=other)
    assert err(r) == (401, 201)
    assert "not found or inactive" in r.json()["message"]
    assert api.sim.api_usage == 0  # refused calls are not charged


async def test_expired_token_is_refused_with_184(clock: ManualClock) -> None:
    sim = PardotSimulator(seed(), clock=clock, tokens=TokenRegistry(clock, ttl_s=60))
    a, client = make_api(sim)
    async with client:
        assert (await a.get(P, fields="id")).status_code == 200
        clock.advance(seconds=61)
        assert err(await a.get(P, fields="id")) == (401, 184)


async def test_unknown_route_and_wrong_verb(api: Api) -> None:
    assert err(await api.get("/api/v5/objects/widgets", fields="id")) == (404, 198)
    assert err(await api.send("PUT", f"{P}/1000", {"firstName": "x"})) == (405, 60)
    assert err(await api.send("DELETE", "/api/v5/objects/users/1")) == (405, 60)


# ----- query parameters -------------------------------------------------------------------------


async def test_fields_required_and_known(api: Api) -> None:
    assert err(await api.get(P)) == (400, 13)
    r = await api.get(P, fields="id,crmLeadFid")
    assert r.status_code == 400 and r.json() == {
        "code": 51,
        "message": "Invalid parameter: fields. It contains an invalid or unknown field:"
        " crmLeadFid.",
    }
    # The same check on a single read and on a write's `fields`.
    assert err(await api.get(f"{P}/1000", fields="id,crmLeadFid")) == (400, 51)
    r = await api.send("PATCH", f"{P}/1000", {"firstName": "X"}, fields="id,nope")
    assert err(r) == (400, 51)
    assert err(await api.get(P, fields="id", orderBy="nope")) == (400, 5)


async def test_only_requested_fields_are_returned_with_types(api: Api) -> None:
    r = await api.get(P, fields="id,email,score,grade,isDoNotEmail,updatedAt,Industry__c", limit=1)
    assert r.status_code == 200
    (row,) = r.json()["values"]
    assert row == {
        "id": 1000,
        "email": "p0@example.com",
        "score": 0,
        "grade": "A-",
        "isDoNotEmail": False,
        "updatedAt": "2026-01-01T06:00:00-04:00",
        "Industry__c": "Retail",
    }


async def test_limit_default_and_max(clock: ManualClock) -> None:
    sim = PardotSimulator(seed(n_prospects=250), clock=clock, tokens=TokenRegistry(clock))
    a, client = make_api(sim)
    async with client:
        r = await a.get(P, fields="id")
        assert len(r.json()["values"]) == 200 and r.json()["nextPageToken"]
        assert err(await a.get(P, fields="id", limit=1001)) == (400, 23)
        assert err(await a.get(P, fields="id", limit=0)) == (400, 23)
        assert len((await a.get(P, fields="id", limit=1000)).json()["values"]) == 250


async def test_order_by_and_filters(api: Api) -> None:
    r = await api.get(P, fields="id,updatedAt", orderBy="updatedAt ASC")
    keys = [(v["updatedAt"], v["id"]) for v in r.json()["values"]]
    assert keys == sorted(keys)
    r = await api.get(P, fields="id", orderBy="id DESC")
    assert [v["id"] for v in r.json()["values"]] == [1004, 1003, 1002, 1001, 1000]
    r = await api.get(P, fields="id", orderBy="updatedAt DESC")
    assert [v["id"] for v in r.json()["values"]] == [1002, 1004, 1001, 1003, 1000]
    r = await api.get(
        P, fields="id", orderBy="updatedAt ASC", updatedAtAfterOrEqualTo="2026-01-02T10:00:00Z"
    )
    assert [v["id"] for v in r.json()["values"]] == [1001, 1004, 1002]
    r = await api.get(P, fields="id", updatedAtAfter="2026-01-02T10:00:00+00:00")
    assert [v["id"] for v in r.json()["values"]] == [1002]
    r = await api.get(P, fields="id", updatedAtBeforeOrEqualTo="2026-01-02T06:00:00-04:00")
    assert [v["id"] for v in r.json()["values"]] == [1000, 1001, 1003, 1004]
    r = await api.get(P, fields="id", updatedAtBefore="2026-01-02T10:00:00Z")
    assert [v["id"] for v in r.json()["values"]] == [1000, 1003]
    r = await api.get(P, fields="id", idGreaterThan=1001, idLessThan=1004)
    assert [v["id"] for v in r.json()["values"]] == [1002, 1003]
    r = await api.get(P, fields="id", email="P3@EXAMPLE.com")
    assert [v["id"] for v in r.json()["values"]] == [1003]
    r = await api.get(P, fields="id", createdAtAfter="2025-11-01T00:00:00Z", userId=2)
    assert r.json()["values"] == []
    r = await api.get(P, fields="id", assignedToId=1)
    assert len(r.json()["values"]) == 5


async def test_bad_query_parameters(api: Api) -> None:
    assert err(await api.get(P, fields="id", orderBy="-updatedAt")) == (400, 5)
    assert err(await api.get(P, fields="id", orderBy="score")) == (400, 5)
    assert err(await api.get(P, fields="id", updatedAtAfterr="2026-01-01T00:00:00Z")) == (400, 5)
    assert err(await api.get(P, fields="id", idAfter="2026-01-01T00:00:00Z")) == (400, 5)
    r = await api.get(P, fields="id", updatedAtAfter="2026-01-01T00:00:00")
    assert err(r) == (400, 7)  # no offset
    # A "+" that was not URL-encoded arrives as a space: refused, as on the real API.
    r = await api.client.get(
        f"{P}?fields=id&updatedAtAfter=2026-01-01T00:00:00+05:00", headers=api.headers
    )
    assert err(r) == (400, 7)
    assert err(await api.get(P, fields="id", deleted="maybe")) == (400, 27)


async def test_at_most_three_filtered_fields(api: Api) -> None:
    ok = await api.get(
        P,
        fields="id",
        updatedAtAfter="2025-01-01T00:00:00Z",
        updatedAtBefore="2027-01-01T00:00:00Z",
        idGreaterThan=1,
        userId=1,
        deleted="all",
    )
    assert ok.status_code == 200
    r = await api.get(
        P,
        fields="id",
        updatedAtAfter="2025-01-01T00:00:00Z",
        idGreaterThan=1,
        userId=1,
        email="p1@example.com",
    )
    assert err(r) == (400, 209)


# ----- paging -----------------------------------------------------------------------------------


async def test_token_chain_allows_only_fields(api: Api) -> None:
    r = await api.get(P, fields="id", limit=2, orderBy="id")
    body = r.json()
    assert [v["id"] for v in body["values"]] == [1000, 1001]
    token = body["nextPageToken"]
    assert body["nextPageUrl"].endswith(f"nextPageToken={token}")
    assert err(await api.get(P, fields="id", nextPageToken=token, limit=2)) == (400, 5)
    r2 = await api.get(P, fields="id,email", nextPageToken=token)
    assert [v["id"] for v in r2.json()["values"]] == [1002, 1003]
    # nextPageUrl is usable as-is (its path and query).
    url = httpx.URL(r2.json()["nextPageUrl"])
    r3 = await api.client.get(
        url.copy_with(scheme="http", host="pi", port=None), headers=api.headers
    )
    assert r3.json() == {
        "values": [{"id": 1004, "email": "p4@example.com"}],
        "nextPageToken": None,
        "nextPageUrl": None,
    }


async def test_page_token_expiry_and_garbage(api: Api, clock: ManualClock) -> None:
    token = (await api.get(P, fields="id", limit=1)).json()["nextPageToken"]
    assert err(await api.get(P, fields="id", nextPageToken="garbage")) == (400, 211)
    users_token = (await api.get("/api/v5/objects/users", fields="id", limit=1)).json()
    r = await api.get(P, fields="id", nextPageToken=users_token["nextPageToken"])
    assert err(r) == (400, 211)  # a token belongs to its collection
    clock.advance(hours=3, minutes=59)
    assert (await api.get(P, fields="id", nextPageToken=token)).status_code == 200
    clock.advance(minutes=2)
    assert err(await api.get(P, fields="id", nextPageToken=token)) == (400, 210)


async def test_token_chain_stops_at_record_cap_with_warning(clock: ManualClock) -> None:
    sim = PardotSimulator(
        seed(n_prospects=25, page_token_record_cap=10), clock=clock, tokens=TokenRegistry(clock)
    )
    a, client = make_api(sim)
    async with client:
        seen: list[int] = []
        r = await a.get(P, fields="id", limit=4, orderBy="id")
        while True:
            body = r.json()
            seen += [v["id"] for v in body["values"]]
            if not body["nextPageToken"]:
                break
            assert "pardot-warning" not in r.headers
            r = await a.get(P, fields="id", nextPageToken=body["nextPageToken"])
        assert len(seen) == 12  # 4 + 4 + 4 reaches the cap of 10
        assert r.headers["pardot-warning"] == WARNING_CHAIN_CAP
        # A chain that ends on its own carries no warning.
        last = await a.get(P, fields="id", limit=1000, idGreaterThan=seen[-1])
        assert len(last.json()["values"]) == 13 and "pardot-warning" not in last.headers


async def test_rows_are_read_as_of_each_page(api: Api, clock: ManualClock) -> None:
    r = await api.get(P, fields="id", limit=2, orderBy="updatedAt ASC")
    first = [v["id"] for v in r.json()["values"]]
    assert first == [1000, 1003]
    clock.advance(seconds=5)
    api.sim.edit_prospect(1000, {"city": "Lyon"})  # moves to the end of the updatedAt order
    seen = list(first)
    token = r.json()["nextPageToken"]
    while token:
        body = (await api.get(P, fields="id", nextPageToken=token)).json()
        seen += [v["id"] for v in body["values"]]
        token = body["nextPageToken"]
    assert seen == [1000, 1003, 1001, 1004, 1002, 1000]


async def test_large_seed_pages_by_updated_at(clock: ManualClock) -> None:
    n = 20_000
    prospects = [
        {"id": i + 1, "email": f"u{i}@example.com", "updatedAt": 1_700_000_000 + i // 7}
        for i in range(n)
    ]
    sim = PardotSimulator(
        {
            "business_unit_id": BU,
            "prospects": [
                {**p, "updatedAt": datetime.fromtimestamp(p["updatedAt"], UTC)} for p in prospects
            ],
        },
        clock=clock,
        tokens=TokenRegistry(clock),
    )
    a, client = make_api(sim)
    async with client:
        since = datetime.fromtimestamp(1_700_000_000 + 2000, UTC).isoformat()
        r = await a.get(
            P, fields="id", limit=1000, orderBy="updatedAt ASC", updatedAtAfterOrEqualTo=since
        )
        ids = [v["id"] for v in r.json()["values"]]
        assert ids == list(range(14001, 15001))


# ----- prospect writes --------------------------------------------------------------------------


async def test_create_read_update_delete(api: Api, clock: ManualClock) -> None:
    r = await api.send(
        "POST",
        P,
        {"email": "new@example.com", "firstName": "New"},
        fields="id,email,firstName,createdAt,updatedAt,createdById,assignedToId",
    )
    assert r.status_code == 201
    created = r.json()
    pid = created["id"]
    assert r.headers["location"].endswith(f"{P}/{pid}")
    assert created["createdAt"] == created["updatedAt"] == "2026-01-10T08:00:00-04:00"
    assert created["createdById"] == 1  # the token's user maps to Pardot user 1
    assert created["assignedToId"] is None

    r = await api.get(f"{P}/{pid}", fields="id,firstName")
    assert r.json() == {"id": pid, "firstName": "New"}

    clock.advance(seconds=30)
    r = await api.send(
        "PATCH",
        f"{P}/{pid}",
        {"company": "Acme", "userId": 2},
        fields="id,company,userId,assignedToId,updatedAt",
    )
    assert r.status_code == 200
    assert r.json() == {
        "id": pid,
        "company": "Acme",
        "userId": 2,
        "assignedToId": 2,
        "updatedAt": "2026-01-10T08:00:30-04:00",
    }
    r = await api.send("PATCH", f"{P}/{pid}", {"company": "Acme"})
    assert r.status_code == 204 and r.content == b""

    r = await api.send("DELETE", f"{P}/{pid}")
    assert r.status_code == 204
    r = await api.get(f"{P}/{pid}", fields="id")
    assert err(r) == (404, 192)
    assert r.headers["pardot-warning"] == "201;Record In Recycle Bin"
    r = await api.get(f"{P}/{pid}", fields="id,isDeleted", deleted="true")
    assert r.json() == {"id": pid, "isDeleted": True}
    assert err(await api.send("PATCH", f"{P}/{pid}", {"company": "X"})) == (400, 219)
    assert err(await api.send("DELETE", f"{P}/{pid}")) == (404, 192)
    # An id that names no record: 404 code 109 on read, update and delete.
    for r in (
        await api.get(f"{P}/999999", fields="id"),
        await api.send("PATCH", f"{P}/999999", {"company": "X"}),
        await api.send("DELETE", f"{P}/999999"),
    ):
        assert r.status_code == 404
        assert r.json() == {"code": 109, "message": "The requested record was not found."}
    # Deleted prospects are left out of queries unless asked for.
    r = await api.get(P, fields="id", email="new@example.com")
    assert r.json()["values"] == []
    r = await api.get(P, fields="id", email="new@example.com", deleted="all")
    assert [v["id"] for v in r.json()["values"]] == [pid]


async def test_every_accepted_write_bumps_updated_at(api: Api, clock: ManualClock) -> None:
    clock.advance(seconds=1)
    r = await api.send("PATCH", f"{P}/1000", {"firstName": "P0"}, fields="updatedAt")
    assert r.json()["updatedAt"] == "2026-01-10T08:00:01-04:00"


@pytest.mark.sends_read_only
async def test_write_validation(api: Api) -> None:
    r = await api.send("POST", P, {"firstName": "No email"}, fields="id")
    assert err(r) == (400, 153)
    assert err(await api.send("POST", P, {"email": "not-an-email"}, fields="id")) == (400, 4)
    r = await api.send("PATCH", f"{P}/1000", {"updatedAt": "2026-01-01T00:00:00Z"})
    assert err(r) == (400, 180) and "updatedAt" in r.json()["message"]
    r = await api.send("PATCH", f"{P}/1000", {"crmOwnerFid": "005"})
    assert r.status_code == 400
    assert r.json() == {"code": 154, "message": "Invalid property in request: crmOwnerFid"}
    r = await api.send(
        "PATCH", f"{P}/1000", {"userId": 1, "salesforceOwnerId": "005000000000002AAA"}
    )
    assert err(r) == (400, 125)
    assert err(await api.send("PATCH", f"{P}/1000", {"userId": 77})) == (400, 10)
    assert err(await api.send("PATCH", f"{P}/1000", {"userId": 3})) == (400, 10)  # deleted user
    assert err(await api.send("PATCH", f"{P}/1000", {"score": "high"})) == (400, 56)
    r = await api.client.patch(f"{P}/1000", content=b"{nope", headers=api.headers)
    assert err(r) == (400, 150)
    r = await api.client.patch(f"{P}/1000", content=b"", headers=api.headers)
    assert err(r) == (400, 152)
    r = await api.send("PATCH", f"{P}/1000", {"Industry__c": "Tech"}, fields="Industry__c")
    assert r.json() == {"Industry__c": "Tech"}


async def test_salesforce_owner_id_maps_to_pardot_user(api: Api) -> None:
    r = await api.send(
        "PATCH",
        f"{P}/1000",
        {"salesforceOwnerId": "005000000000002AAA"},
        fields="userId,assignedToId,salesforceOwnerId",
    )
    assert r.json() == {"userId": 2, "assignedToId": 2, "salesforceOwnerId": "005000000000002AAA"}
    r = await api.send(
        "PATCH",
        f"{P}/1000",
        {"salesforceOwnerId": "005999999999999AAA"},
        fields="userId,salesforceOwnerId",
    )
    assert r.json() == {"userId": 2, "salesforceOwnerId": "005999999999999AAA"}


@pytest.mark.sends_read_only
async def test_upsert_latest_by_email(api: Api, clock: ManualClock) -> None:
    up = f"{P}/do/upsertLatestByEmail"
    # Two prospects share one email (AMPSEA): the most recently updated one is matched.
    api.sim.add_prospect({"email": "dup@example.com", "updatedAt": "2026-01-01T00:00:00Z"})
    newer = api.sim.add_prospect({"email": "dup@example.com", "updatedAt": "2026-01-03T00:00:00Z"})
    body = {
        "matchEmail": "dup@example.com",
        "prospect": {"company": "Dup Inc"},
        "fields": ["id", "company"],
    }
    r = await api.send("POST", up, body)
    assert r.status_code == 200
    assert r.json() == {"id": newer, "company": "Dup Inc"}
    body = {
        "matchEmail": "fresh@example.com",
        "prospect": {"firstName": "F"},
        "fields": ["id", "email"],
    }
    r = await api.send("POST", up, body)
    assert r.status_code == 201 and r.headers["location"].endswith(f"/{r.json()['id']}")
    assert r.json()["email"] == "fresh@example.com"
    assert err(await api.send("POST", up, {"prospect": {}})) == (400, 153)
    r = await api.send("POST", up, {"matchEmail": "x@example.com", "prospect": {"id": 5}})
    assert err(r) == (400, 180)
    # A deleted match is only revived with secondaryDeletedSearch.
    await api.send("DELETE", f"{P}/{newer}")
    olds = [p["id"] for p in api.sim.prospects() if p["email"] == "dup@example.com"]
    r = await api.send(
        "POST", up, {"matchEmail": "dup@example.com", "prospect": {}, "fields": ["id"]}
    )
    assert r.status_code == 200 and [r.json()["id"]] == olds


READ_ONLY_SAMPLE: dict[str, Any] = {
    "salesforceId": "00Q000000000001AAA",
    "salesforceLeadId": "00Q000000000001AAA",
    "salesforceContactId": "003000000000001AAA",
    "salesforceAccountId": "001000000000001AAA",
    "salesforceUrl": "https://example.my.salesforce.com/00Q000000000001AAA",
    "salesforceLastSync": "2026-01-01T00:00:00Z",
    "salesforceCampaignId": "701000000000001AAA",
    "grade": "A",
    "doNotSell": True,
    "lifecycleStageId": 3,
    "recentInteraction": "Visited",
    "convertedAt": "2026-01-01T00:00:00Z",
    "emailBouncedAt": "2026-01-01T00:00:00Z",
    "password": "hunter2",
    "campaignParameter": "c",
    "contentParameter": "c",
    "mediumParameter": "m",
    "sourceParameter": "s",
    "termParameter": "t",
    "id": 5,
    "createdAt": "2026-01-01T00:00:00Z",
    "updatedAt": "2026-01-01T00:00:00Z",
    "createdById": 1,
    "updatedById": 1,
    "isDeleted": False,
    "assignedToId": 1,
    "lastActivityAt": "2026-01-01T00:00:00Z",
    "firstActivityAt": "2026-01-01T00:00:00Z",
    "firstAssignedAt": "2026-01-01T00:00:00Z",
    "isEmailHardBounced": False,
}


def test_read_only_list_is_wire_formats_c3a() -> None:
    assert set(READ_ONLY_SAMPLE) == PROSPECT_READ_ONLY


@pytest.mark.sends_read_only
@pytest.mark.parametrize("name", sorted(READ_ONLY_SAMPLE))
async def test_every_read_only_field_is_refused_whole(api: Api, name: str) -> None:
    """Create, PATCH and upsert carrying one read-only field: 400 code 180, nothing written."""
    value = READ_ONLY_SAMPLE[name]
    before = api.sim.get_prospect(1000)
    count = len(api.sim.prospects(include_deleted=True))
    answers = [
        await api.send("POST", P, {"email": "ro@example.com", name: value}, fields="id"),
        await api.send("PATCH", f"{P}/1000", {"firstName": "Changed", name: value}),
        await api.send(
            "POST",
            f"{P}/do/upsertLatestByEmail",
            {"matchEmail": "p0@example.com", "prospect": {"firstName": "Changed", name: value}},
        ),
        await api.send(
            "POST",
            f"{P}/do/upsertLatestByEmail",
            {"matchEmail": "ro@example.com", "prospect": {name: value}},
        ),
    ]
    for r in answers:
        assert err(r) == (400, 180)
        assert r.json()["message"] == (
            f"One or more of the specified fields are invalid: {name} is read-only"
        )
    assert api.sim.get_prospect(1000) == before
    assert len(api.sim.prospects(include_deleted=True)) == count
    assert api.sim.written()["Prospect"][name] == 4


@pytest.mark.sends_read_only
async def test_read_only_message_names_every_read_only_field(api: Api) -> None:
    r = await api.send("PATCH", f"{P}/1000", {"grade": "B", "salesforceLeadId": "00Q", "city": "X"})
    assert r.json() == {
        "code": 180,
        "message": "One or more of the specified fields are invalid: grade, salesforceLeadId are"
        " read-only",
    }


async def test_writable_owner_and_link_neighbours_are_accepted(api: Api) -> None:
    """`salesforceOwnerId` is writable (C.3a); so are the plain prospect fields."""
    r = await api.send(
        "PATCH",
        f"{P}/1000",
        {"salesforceOwnerId": "005000000000002AAA", "isDoNotEmail": True, "city": "Lyon"},
        fields="userId,isDoNotEmail,city",
    )
    assert r.json() == {"userId": 2, "isDoNotEmail": True, "city": "Lyon"}


async def test_unknown_property_is_refused_code_154(api: Api) -> None:
    up = f"{P}/do/upsertLatestByEmail"
    cases = [
        ("POST", P, {"email": "u@example.com", "crmLeadFid": "00Q"}, "crmLeadFid"),
        ("PATCH", f"{P}/1000", {"firstName": "A", "crm_owner_fid": "005"}, "crm_owner_fid"),
        ("POST", up, {"matchEmail": "p0@example.com", "prospect": {"nope": 1}}, "nope"),
        ("POST", up, {"matchEmail": "p0@example.com", "prospect": {}, "extra": 1}, "extra"),
    ]
    before = api.sim.get_prospect(1000)
    for method, path, body, name in cases:
        r = await api.send(method, path, body)
        assert r.status_code == 400, (method, path)
        assert r.json() == {"code": 154, "message": f"Invalid property in request: {name}"}
    assert api.sim.get_prospect(1000) == before
    assert not [p for p in api.sim.prospects() if p["email"] == "u@example.com"]


async def test_user_id_and_salesforce_owner_id_together_refused(api: Api) -> None:
    body = {"userId": 2, "salesforceOwnerId": "005000000000002AAA"}
    for r in (
        await api.send("PATCH", f"{P}/1000", body),
        await api.send("POST", P, {"email": "both@example.com", **body}),
        await api.send(
            "POST",
            f"{P}/do/upsertLatestByEmail",
            {"matchEmail": "p1@example.com", "prospect": body},
        ),
    ):
        assert err(r) == (400, 125)
    assert api.sim.get_prospect(1000)["userId"] == 1


@pytest.mark.sends_read_only
async def test_written_counts_every_write_attempt_per_field(api: Api) -> None:
    up = f"{P}/do/upsertLatestByEmail"
    await api.send("POST", P, {"email": "w@example.com", "firstName": "W"}, fields="id")
    await api.send("PATCH", f"{P}/1000", {"firstName": "X", "city": "Y"})
    await api.send("PATCH", f"{P}/1000", {"firstName": "X", "grade": "A"})  # refused: counted
    await api.send("PATCH", f"{P}/999999", {"firstName": "X"})  # not found: counted
    await api.send("POST", up, {"matchEmail": "p1@example.com", "prospect": {"company": "C"}})
    await api.get(P, fields="id,firstName,grade")  # reads are not writes
    await api.send("DELETE", f"{P}/1001")  # carries no field
    want = {
        "Prospect": {"city": 1, "company": 1, "email": 1, "firstName": 4, "grade": 1},
    }
    assert api.sim.written() == want
    r = await api.client.get("/__sim__/written")
    assert r.status_code == 200 and r.json() == want
    # Resetting the request counters leaves the whole-life write counts alone.
    await api.client.post("/__sim__/reset-counters")
    assert (await api.client.get("/__sim__/written")).json() == want


@pytest.mark.sends_read_only
async def test_read_only_attempt_is_reported_with_the_test_name(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "ro.jsonl"
    monkeypatch.setenv(written.READ_ONLY_LOG_ENV, str(log))
    before = len(written.READ_ONLY_WRITES)
    await api.send("PATCH", f"{P}/1000", {"grade": "A", "salesforceId": "00Q", "city": "X"})
    await api.send("PATCH", f"{P}/1000", {"city": "Z"})
    new = written.READ_ONLY_WRITES[before:]
    assert [(w.simulator, w.object, w.field, w.route) for w in new] == [
        ("pardot", "Prospect", "grade", "PATCH /api/v5/objects/prospects/{id}"),
        ("pardot", "Prospect", "salesforceId", "PATCH /api/v5/objects/prospects/{id}"),
    ]
    assert all(
        w.test and "test_read_only_attempt_is_reported_with_the_test_name" in w.test for w in new
    )
    assert written.read_log(log) == new


async def test_sent_email_without_prospect_and_updated_at(clock: ManualClock) -> None:
    data = seed()
    data["emails"].append(
        {"id": 5004, "prospectId": None, "subject": "Orphan", "sentAt": "2026-01-08T10:00:00Z"}
    )
    sim = PardotSimulator(data, clock=clock, tokens=TokenRegistry(clock))
    sim.add_email({"prospectId": None, "subject": "Also orphan", "sentAt": "2026-01-09T10:00:00Z"})
    a, client = make_api(sim)
    async with client:
        r = await a.get(
            "/api/v5/objects/emails", fields="id,prospectId,sentAt,updatedAt", idGreaterThan=5003
        )
    assert r.json()["values"] == [
        {
            "id": 5004,
            "prospectId": None,
            "sentAt": "2026-01-08T06:00:00-04:00",
            "updatedAt": "2026-01-08T06:00:00-04:00",
        },
        {
            "id": 5005,
            "prospectId": None,
            "sentAt": "2026-01-09T06:00:00-04:00",
            "updatedAt": "2026-01-09T06:00:00-04:00",
        },
    ]
    with pytest.raises(ValueError, match="prospectId 424242 is not a prospect"):
        sim.add_email({"prospectId": 424242, "subject": "x"})


async def test_duplicate_email_refused_without_ampsea(clock: ManualClock) -> None:
    sim = PardotSimulator(seed(ampsea=False), clock=clock, tokens=TokenRegistry(clock))
    a, client = make_api(sim)
    async with client:
        assert err(await a.send("POST", P, {"email": "p1@example.com"}, fields="id")) == (400, 54)


# ----- users and emails -------------------------------------------------------------------------


async def test_users(api: Api) -> None:
    r = await api.get("/api/v5/objects/users", fields="id,email,salesforceId,isDeleted")
    assert [u["id"] for u in r.json()["values"]] == [1, 2]
    r = await api.get("/api/v5/objects/users", fields="id", deleted="all")
    assert [u["id"] for u in r.json()["values"]] == [1, 2, 3]
    r = await api.get("/api/v5/objects/users", fields="id,username", email="BOB@acme.example")
    assert r.json()["values"] == [{"id": 2, "username": "bob@acme.example"}]
    r = await api.get("/api/v5/objects/users/1", fields="id,firstName,salesforceId")
    assert r.json() == {"id": 1, "firstName": "Ann", "salesforceId": "005000000000001AAA"}
    assert err(await api.get("/api/v5/objects/users", fields="crmUsername")) == (400, 51)
    assert err(await api.get("/api/v5/objects/users/99", fields="id")) == (404, 109)


async def test_emails(api: Api) -> None:
    e = "/api/v5/objects/emails"
    r = await api.get(e, fields="id,prospectId,subject,sentAt", orderBy="id", idGreaterThan=5001)
    assert r.json()["values"] == [
        {"id": 5002, "prospectId": 1001, "subject": "Again", "sentAt": "2026-01-06T06:00:00-04:00"},
        {"id": 5003, "prospectId": 1000, "subject": "Third", "sentAt": "2026-01-07T06:00:00-04:00"},
    ]
    r = await api.get(
        e, fields="id", orderBy="sentAt DESC", sentAtAfterOrEqualTo="2026-01-06T10:00:00Z"
    )
    assert [v["id"] for v in r.json()["values"]] == [5003, 5002]
    r = await api.get(e, fields="id", prospectId=1000)
    assert [v["id"] for v in r.json()["values"]] == [5001, 5003]
    new = api.sim.add_email({"prospectId": 1002, "subject": "Now"})
    r = await api.get(f"{e}/{new}", fields="id,subject,sentAt")
    assert r.json() == {"id": new, "subject": "Now", "sentAt": "2026-01-10T08:00:00-04:00"}
    assert err(await api.get(f"{e}/9", fields="id")) == (404, 109)
    assert err(await api.get(e, fields="id", updatedAtAfter="2026-01-01T00:00:00Z")) == (400, 5)


# ----- limits, faults, counters -----------------------------------------------------------------


async def test_concurrent_request_limit(clock: ManualClock) -> None:
    sim = PardotSimulator(
        seed(), clock=clock, tokens=TokenRegistry(clock), faults=Faults(latency_ms=100)
    )
    a, client = make_api(sim)
    async with client:
        answers = await asyncio.gather(*(a.get(P, fields="id") for _ in range(8)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 5 + [429] * 3
    limited = [r.json() for r in answers if r.status_code == 429]
    assert limited[0] == {
        "code": 66,
        "message": "You have exceeded your concurrent request limit. "
        "Please wait, before trying again",
    }
    assert all("retry-after" not in r.headers for r in answers)
    assert sim.counters.count("GET") == 8
    assert sim.counters.faults["concurrent_limit"] == 3


async def test_daily_limit_with_configured_status(clock: ManualClock) -> None:
    sim = PardotSimulator(
        seed(daily_api_limit=3, rate_limit_status=400), clock=clock, tokens=TokenRegistry(clock)
    )
    a, client = make_api(sim)
    async with client:
        for _ in range(3):
            assert (await a.get(P, fields="id")).status_code == 200
        r = await a.get(P, fields="id")
        assert r.status_code == 400 and r.json() == {
            "code": 122,
            "message": "Daily API rate limit met",
        }
        clock.advance(hours=17)  # 08:00 -04:00 + 17 h: the next day in the account time zone
        assert (await a.get(P, fields="id")).status_code == 200
        r = await a.get(P, fields="id", limit=1)
        assert "x-api-usage" not in r.headers
        r = await a.client.get(
            P, params={"fields": "id"}, headers={**a.headers, "X-Return-Api-Usage": "1"}
        )
        assert r.headers["x-api-usage"] == "3"


async def test_injected_faults(clock: ManualClock) -> None:
    sim = PardotSimulator(
        seed(), clock=clock, tokens=TokenRegistry(clock), faults=Faults(error_rate=1.0, seed=1)
    )
    a, client = make_api(sim)
    async with client:
        answers = [await a.get(P, fields="id") for _ in range(12)]
    by_status = {r.status_code: r for r in answers}
    assert set(by_status) == {500, 503}
    assert by_status[500].json()["code"] == 183
    assert by_status[503].headers["content-type"].startswith("text/html")
    sim = PardotSimulator(
        seed(), clock=clock, tokens=TokenRegistry(clock), faults=Faults(rate_limit_rate=1.0)
    )
    a, client = make_api(sim)
    async with client:
        r = await a.get(P, fields="id")
    assert err(r) == (429, 66)


async def test_lost_responses_still_commit(clock: ManualClock) -> None:
    sim = PardotSimulator(
        seed(),
        clock=clock,
        tokens=TokenRegistry(clock),
        faults=Faults(lost_response_rate=1.0, seed=3),
    )
    a, client = make_api(sim)
    async with client:
        for i in range(4):
            try:
                r = await a.send("POST", P, {"email": f"lost{i}@example.com"}, fields="id")
                assert r.status_code == 502
            except httpx.RemoteProtocolError:
                pass
    assert sum(p["email"].startswith("lost") for p in sim.prospects()) == 4


async def test_counters_and_control_routes(api: Api) -> None:
    await api.get(P, fields="id")
    await api.get(f"{P}/1000", fields="id")
    await api.send("PATCH", f"{P}/1000", {"city": "Oslo"})
    r = await api.client.get("/__sim__/counters")
    snap = r.json()
    assert snap["requests"] == {
        "GET /api/v5/objects/prospects": 1,
        "GET /api/v5/objects/prospects/{id}": 1,
        "PATCH /api/v5/objects/prospects/{id}": 1,
    }
    assert snap["writes"] == 1 and snap["api_usage"] == 3
    assert (await api.client.post("/__sim__/reset-counters")).status_code == 200
    assert api.sim.counters.total == 0


# ----- seed and direct state access -------------------------------------------------------------


def test_seed_defaults_and_generated_ids(clock: ManualClock) -> None:
    sim = PardotSimulator(
        {"prospects": [{"email": "a@example.com"}, {"id": 7, "email": "b@example.com"}]},
        clock=clock,
    )
    assert sim.business_unit_id.startswith("0Uv") and len(sim.business_unit_id) == 18
    assert sim.daily_api_limit == 25_000
    ids = [p["id"] for p in sim.prospects()]
    assert ids == [7, 8]
    assert sim.get_prospect(7)["createdAt"] == "2026-01-10T08:00:00-04:00"  # type: ignore[index]
    assert sim.get_prospect(99) is None


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"prospects": [{"firstName": "x"}]}, "prospect #0"),
        ({"prospects": [{"email": "a@b.co", "crmLeadFid": "x"}]}, "crmLeadFid"),
        ({"prospects": [{"email": "a@b.co", "userId": 9}]}, "userId 9"),
        (
            {"prospects": [{"id": 1, "email": "a@b.co"}, {"id": 1, "email": "c@b.co"}]},
            "duplicate id 1",
        ),
        ({"prospects": [{"email": "a@b.co", "score": "ten"}]}, "score"),
        ({"prospects": [{"email": "a@b.co", "updatedAt": "yesterday"}]}, "updatedAt"),
        ({"emails": [{"prospectId": 5, "subject": "x"}]}, "email #0"),
        ({"rate_limit_status": 503}, "rate_limit_status"),
        ({"timezone": "CET"}, "timezone"),
    ],
)
def test_bad_seed_names_the_record(bad: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        PardotSimulator(bad)


def test_direct_state_access(clock: ManualClock) -> None:
    sim = PardotSimulator(seed(), clock=clock)
    pid = sim.add_prospect({"email": "d@example.com", "score": 3})
    before = sim.get_prospect(pid)
    assert before is not None and before["updatedAt"] == "2026-01-10T08:00:00-04:00"
    clock.advance(minutes=1)
    sim.edit_prospect(pid, {"score": 4, "userId": 2})
    after = sim.get_prospect(pid)
    assert after is not None
    assert (after["score"], after["assignedToId"]) == (4, 2)
    assert after["updatedAt"] == "2026-01-10T08:01:00-04:00"
    assert [u["id"] for u in sim.users()] == [1, 2, 3]
    assert len(sim.prospects()) == 6 and len(sim.prospects(include_deleted=True)) == 6
    with pytest.raises(KeyError):
        sim.edit_prospect(424242, {"score": 1})


def test_generated_world_can_hold_emails_without_prospect() -> None:
    from syncd.simulators.generate import Shape, generate_seed

    plain = generate_seed(60, emails=200)
    orphans = generate_seed(60, emails=200, shape=Shape(emails_without_prospect=0.25))
    plain_emails, orphan_emails = plain["pardot"]["emails"], orphans["pardot"]["emails"]
    assert all(e["prospectId"] is not None for e in plain_emails)
    nulls = [e for e in orphan_emails if e["prospectId"] is None]
    assert 20 <= len(nulls) <= 80
    # The knob draws from its own generator: everything else in the world is unchanged.
    for a, b in zip(plain_emails, orphan_emails, strict=True):
        assert b["prospectId"] in (None, a["prospectId"]) and b["id"] == a["id"]
    assert orphans["pardot"]["prospects"] == plain["pardot"]["prospects"]
    sim = PardotSimulator(orphans["pardot"])
    assert len(sim.emails_table.rows) == 200
