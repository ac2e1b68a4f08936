"""The record life cycle in the simulators (issue 15): Salesforce merges, `queryAll` with
`IsDeleted`/`MasterRecordId`, seeded merge losers; Pardot's recycle bin (seeded, DELETE, the
direct state methods, `do/undelete`). Driven over httpx.ASGITransport with real tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from syncd.simulators._base import ManualClock, TokenRegistry
from syncd.simulators.pardot import PardotSimulator
from syncd.simulators.salesforce import SalesforceSimulator

V = "/services/data/v60.0"
P = "/api/v5/objects/prospects"
BU = "0Uv5g000000AbCdCAA"
USER = "0055g00000AbCdEAAA"
MASTER = "00Q5g00000LeAd1AAA"
LOSER = "00Q5g00000LeAd2AAA"
LOSER2 = "00Q5g00000LeAd3AAA"
SEEDED_LOSER = "00Q5g00000LeAd4AAA"
CONTACT = "0035g00000CoNt1AAA"
CONTACT_LOSER = "0035g00000CoNt2AAA"


def sf_seed() -> dict[str, Any]:
    return {
        "oauth": {"client_id": "cid", "client_secret": "cs", "username": "c@acme.example"},
        "users": [{"Id": USER, "Username": "c@acme.example", "LastName": "Connector"}],
        "leads": [
            {"Id": MASTER, "Email": "jane@acme.example", "LastName": "Doe", "Company": "Acme",
             "CreatedDate": "2026-01-01T10:00:00.000+0000"},
            {"Id": LOSER, "Email": "jane@acme.example", "LastName": "Doe", "Company": "Acme"},
            {"Id": LOSER2, "Email": "j.doe@acme.example", "LastName": "Doe", "Company": "Acme"},
            {"Id": SEEDED_LOSER, "Email": "jane@old.example", "LastName": "Doe",
             "Company": "Acme", "IsDeleted": True, "MasterRecordId": MASTER},
        ],
        "contacts": [
            {"Id": CONTACT, "Email": "carl@acme.example", "LastName": "Carl"},
            {"Id": CONTACT_LOSER, "Email": "carl@acme.example", "LastName": "Carl"},
        ],
        "tasks": [{"Subject": "Email: hello", "WhoId": LOSER, "OwnerId": USER}],
    }  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def tokens(clock: ManualClock) -> TokenRegistry:
    return TokenRegistry(clock)


@pytest.fixture
def sf(clock: ManualClock, tokens: TokenRegistry) -> SalesforceSimulator:
    return SalesforceSimulator(sf_seed(), clock=clock, tokens=tokens)


@pytest.fixture
async def client(sf: SalesforceSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sf.app), base_url=sf.base_url
    ) as c:
        r = await c.post(
            "/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "cs"},
        )
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield c


async def _soql(client: httpx.AsyncClient, resource: str, soql: str) -> dict[str, Any]:
    r = await client.get(f"{V}/{resource}", params={"q": soql})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# --- Salesforce: seeded merge losers ------------------------------------------------------------


async def test_seeded_merge_loser_is_seen_only_by_query_all(
    sf: SalesforceSimulator, client: httpx.AsyncClient
) -> None:
    soql = f"SELECT Id, IsDeleted, MasterRecordId FROM Lead WHERE Id = '{SEEDED_LOSER}'"
    assert (await _soql(client, "query", soql))["totalSize"] == 0
    rows = (await _soql(client, "queryAll", soql))["records"]
    assert [(r["Id"], r["IsDeleted"], r["MasterRecordId"]) for r in rows] == [
        (SEEDED_LOSER, True, MASTER)
    ]
    r = await client.get(f"{V}/sobjects/Lead/{SEEDED_LOSER}")
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    assert sf.get("Lead", SEEDED_LOSER) is None
    assert (sf.get_deleted("Lead", SEEDED_LOSER) or {})["MasterRecordId"] == MASTER


async def test_query_all_filters_merge_losers_and_live_rows_have_no_master(
    client: httpx.AsyncClient,
) -> None:
    soql = "SELECT Id, MasterRecordId FROM Lead WHERE IsDeleted = true AND MasterRecordId != null"
    assert [r["Id"] for r in (await _soql(client, "queryAll", soql))["records"]] == [SEEDED_LOSER]
    live = await _soql(
        client, "query", f"SELECT Id, MasterRecordId FROM Lead WHERE Id = '{MASTER}'"
    )
    assert live["records"][0]["MasterRecordId"] is None


async def test_master_record_id_is_read_only(client: httpx.AsyncClient) -> None:
    r = await client.patch(f"{V}/sobjects/Lead/{LOSER}", json={"MasterRecordId": MASTER})
    assert r.status_code == 400
    assert r.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"MasterRecordId": "00Q5g00000NoNeXAAA"}, "names no live Lead"),
        ({"MasterRecordId": SEEDED_LOSER}, "names no live Lead"),
    ],
)
def test_seeded_master_must_be_a_live_record(patch: dict[str, Any], fragment: str) -> None:
    seed = sf_seed()
    seed["leads"][3] = {**seed["leads"][3], **patch}
    with pytest.raises(ValueError, match=fragment) as err:
        SalesforceSimulator(seed)
    assert "salesforce.leads[3]" in str(err.value)


# --- Salesforce: merges -------------------------------------------------------------------------


async def test_merge_over_http_as_salesforce_does(
    sf: SalesforceSimulator, clock: ManualClock, client: httpx.AsyncClient
) -> None:
    before = sf.get("Lead", MASTER)
    assert before is not None
    clock.advance(minutes=1)
    start = clock()  # after the seed: its merge loser was deleted before
    clock.advance(minutes=3)
    r = await client.post(
        "/__sim__/merge", json={"sobject": "Lead", "masterId": MASTER, "mergedIds": [LOSER, LOSER2]}
    )
    assert r.status_code == 200
    assert r.json() == {"masterId": MASTER, "mergedIds": [LOSER, LOSER2]}
    # losers: gone from query, in queryAll with MasterRecordId, in the deleted feed
    ids = f"('{LOSER}', '{LOSER2}')"
    soql = f"SELECT Id, IsDeleted, MasterRecordId FROM Lead WHERE Id IN {ids}"
    assert (await _soql(client, "query", soql))["totalSize"] == 0
    rows = (await _soql(client, "queryAll", soql))["records"]
    assert sorted((x["Id"], x["IsDeleted"], x["MasterRecordId"]) for x in rows) == [
        (LOSER, True, MASTER),
        (LOSER2, True, MASTER),
    ]
    clock.advance(minutes=2)
    window = {"start": start.isoformat(), "end": clock().isoformat()}
    deleted = (await client.get(f"{V}/sobjects/Lead/deleted/", params=window)).json()
    assert sorted(d["id"] for d in deleted["deletedRecords"]) == [LOSER, LOSER2]
    # the master's stamps moved, so the change feed sees it
    after = sf.get("Lead", MASTER)
    assert after is not None and after["SystemModstamp"] > before["SystemModstamp"]
    updated = (await client.get(f"{V}/sobjects/Lead/updated/", params=window)).json()
    assert MASTER in updated["ids"]
    # the loser's Task moved to the master
    tasks = (await _soql(client, "query", "SELECT WhoId FROM Task"))["records"]
    assert [t["WhoId"] for t in tasks] == [MASTER]


async def test_merge_contacts_in_process(sf: SalesforceSimulator) -> None:
    assert sf.merge("Contact", CONTACT, [CONTACT_LOSER]) == {
        "masterId": CONTACT,
        "mergedIds": [CONTACT_LOSER],
    }
    assert sf.get("Contact", CONTACT_LOSER) is None
    assert (sf.get_deleted("Contact", CONTACT_LOSER) or {})["MasterRecordId"] == CONTACT


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"sobject": "Task", "masterId": MASTER, "mergedIds": [LOSER]}, "Lead or Contact"),
        ({"sobject": "Lead", "masterId": SEEDED_LOSER, "mergedIds": [LOSER]}, "not a live Lead"),
        ({"sobject": "Lead", "masterId": MASTER, "mergedIds": [MASTER]}, "named twice"),
        ({"sobject": "Lead", "masterId": MASTER, "mergedIds": []}, "1 or 2 mergedIds"),
        ({"sobject": "Lead", "masterId": MASTER, "mergedIds": [LOSER, LOSER2, CONTACT]},
         "1 or 2 mergedIds"),
        ({"sobject": "Lead", "masterId": MASTER, "mergedIds": [CONTACT]}, "not a live Lead"),
        ({"masterId": MASTER}, "send JSON"),
    ],
)  # fmt: skip
async def test_merge_refusals_say_what_is_wrong(
    sf: SalesforceSimulator, client: httpx.AsyncClient, body: dict[str, Any], fragment: str
) -> None:
    r = await client.post("/__sim__/merge", json=body)
    assert r.status_code == 400
    assert r.json()[0]["errorCode"] == "INVALID_MERGE"
    assert fragment in r.json()[0]["message"]
    assert sf.get("Lead", LOSER) is not None  # nothing merged


def test_converted_leads_do_not_merge(sf: SalesforceSimulator) -> None:
    sf.convert_lead(LOSER)
    with pytest.raises(ValueError, match="converted"):
        sf.merge("Lead", MASTER, [LOSER])


# --- Pardot: the recycle bin --------------------------------------------------------------------


def pd_seed() -> dict[str, Any]:
    return {
        "business_unit_id": BU,
        "users": [{"id": 1, "email": "ann@acme.example", "salesforceId": USER}],
        "prospects": [
            {"id": 1001, "email": "jane@acme.example", "userId": 1},
            {"id": 1002, "email": "gone@acme.example", "isDeleted": True,
             "lastActivityAt": "2026-01-02T10:00:00-04:00"},
            {"id": 1003, "email": "gone@acme.example", "isDeleted": True,
             "lastActivityAt": "2026-01-03T10:00:00-04:00"},
        ],
    }  # fmt: skip


@pytest.fixture
def pd(clock: ManualClock, tokens: TokenRegistry) -> PardotSimulator:
    return PardotSimulator(pd_seed(), clock=clock, tokens=tokens)


@pytest.fixture
async def pclient(
    pd: PardotSimulator, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pd.app),
        base_url=pd.base_url,
        headers={
            "Authorization": client.headers["Authorization"],
            "Pardot-Business-Unit-Id": BU,
        },
    ) as c:
        yield c


async def _ids(pclient: httpx.AsyncClient, deleted: str) -> list[int]:
    r = await pclient.get(P, params={"fields": "id,isDeleted", "deleted": deleted})
    assert r.status_code == 200, r.text
    return [v["id"] for v in r.json()["values"]]


async def test_seeded_recycled_prospect_reads_as_the_real_api_answers(
    pclient: httpx.AsyncClient,
) -> None:
    r = await pclient.get(f"{P}/1002", params={"fields": "id,isDeleted"})
    assert r.status_code == 404 and r.json()["code"] == 192
    assert r.headers["Pardot-Warning"].startswith("201;")
    r = await pclient.get(f"{P}/1002", params={"fields": "id,isDeleted", "deleted": "true"})
    assert r.json() == {"id": 1002, "isDeleted": True}
    assert await _ids(pclient, "false") == [1001]
    assert await _ids(pclient, "true") == [1002, 1003]
    assert await _ids(pclient, "all") == [1001, 1002, 1003]


async def test_recycle_and_restore_state_methods_move_updated_at(
    pd: PardotSimulator, clock: ManualClock, pclient: httpx.AsyncClient
) -> None:
    before = (pd.get_prospect(1001) or {})["updatedAt"]
    clock.advance(minutes=1)
    pd.recycle_prospect(1001)
    assert await _ids(pclient, "false") == []
    binned = pd.get_prospect(1001) or {}
    assert binned["isDeleted"] is True and binned["updatedAt"] > before
    clock.advance(minutes=1)
    pd.restore_prospect(1001)
    restored = pd.get_prospect(1001) or {}
    assert restored["isDeleted"] is False and restored["updatedAt"] > binned["updatedAt"]
    assert await _ids(pclient, "false") == [1001]
    with pytest.raises(ValueError, match="not in the recycle bin"):
        pd.restore_prospect(1001)
    with pytest.raises(KeyError):
        pd.recycle_prospect(9999)


async def test_delete_moves_to_the_recycle_bin_and_a_write_is_refused(
    pd: PardotSimulator, pclient: httpx.AsyncClient
) -> None:
    assert (await pclient.delete(f"{P}/1001")).status_code == 204
    assert (pd.get_prospect(1001) or {})["isDeleted"] is True
    again = await pclient.delete(f"{P}/1001")
    assert (again.status_code, again.json()["code"]) == (404, 192)
    r = await pclient.patch(f"{P}/1001", json={"firstName": "X"})
    assert (r.status_code, r.json()["code"]) == (400, 219)
    missing = await pclient.delete(f"{P}/9999")
    assert (missing.status_code, missing.json()["code"]) == (404, 109)


async def test_undelete_restores_the_latest_active_deleted_prospect_by_email(
    pd: PardotSimulator, pclient: httpx.AsyncClient
) -> None:
    r = await pclient.post(
        f"{P}/do/undelete",
        json={"matchEmail": "Gone@acme.example", "fields": ["id", "email", "isDeleted"]},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"id": 1003, "email": "gone@acme.example", "isDeleted": False}
    assert (pd.get_prospect(1002) or {})["isDeleted"] is True  # only the latest active one
    assert await _ids(pclient, "false") == [1001, 1003]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"matchEmail": "jane@acme.example"}, 404, 109),  # no deleted prospect with it
        ({"matchEmail": "nobody@acme.example"}, 404, 109),
        ({}, 400, 153),
        ({"matchEmail": "x@acme.example", "prospect": {}}, 400, 154),
    ],
)
async def test_undelete_refusals(
    pclient: httpx.AsyncClient, body: dict[str, Any], status: int, code: int
) -> None:
    r = await pclient.post(f"{P}/do/undelete", json=body)
    assert (r.status_code, r.json()["code"]) == (status, code)


async def test_a_new_prospect_beside_one_in_the_recycle_bin_is_refused(
    pd: PardotSimulator, pclient: httpx.AsyncClient
) -> None:
    """Strict (UNCONFIRMED upstream): neither a create nor an upsert makes a second prospect
    beside a deleted one, nor silently restores it; undelete stays the way back."""
    r = await pclient.post(P, json={"email": "GONE@acme.example", "firstName": "New"})
    assert (r.status_code, r.json()["code"]) == (400, 54)
    assert "recycle bin (1002, 1003)" in r.json()["message"]
    upsert = {"matchEmail": "gone@acme.example", "prospect": {"firstName": "New"}}
    r = await pclient.post(f"{P}/do/upsertLatestByEmail", json=upsert)
    assert (r.status_code, r.json()["code"]) == (400, 54)
    assert await _ids(pclient, "all") == [1001, 1002, 1003]  # nothing made, nothing restored
    r = await pclient.post(
        f"{P}/do/upsertLatestByEmail", json={**upsert, "secondaryDeletedSearch": True}
    )
    assert r.status_code == 200 and (pd.get_prospect(1003) or {})["isDeleted"] is False
    r = await pclient.post(P, json={"email": "gone@acme.example"})  # 1003 is live: AMPSEA
    assert r.status_code == 201, r.text
