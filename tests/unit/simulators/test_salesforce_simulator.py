"""The Salesforce simulator over HTTP-shaped calls (httpx.ASGITransport): every behaviour syncd
relies on, with the real status codes and bodies."""

# ruff: noqa: E501  (the tables of real error bodies read best one case to a line)

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.simulators._base import Faults, ManualClock, TokenRegistry
from syncd.simulators.salesforce import SalesforceSimulator

V = "/services/data/v60.0"
USER_ID = "0055g00000AbCdEAAA"
OTHER_USER = "0055g00000AbCdFAAA"
INACTIVE_USER = "0055g00000AbCdGAAA"
QUEUE_ID = "00G5g00000QuEuEAAA"


def seed(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "oauth": {"client_id": "cid", "client_secret": "csecret", "username": "connector@acme.example"},
        "users": [
            {"Id": USER_ID, "Username": "connector@acme.example", "Email": "c@acme.example",
             "FirstName": "Sync", "LastName": "Connector", "IsActive": True},
            {"Id": OTHER_USER, "Username": "rep@acme.example", "LastName": "Rep"},
            {"Id": INACTIVE_USER, "Username": "gone@acme.example", "LastName": "Gone",
             "IsActive": False},
        ],
        "queues": [{"Id": QUEUE_ID, "Name": "Inbound"}],
        "leads": [
            {"Id": "00Q5g00000LeAd1AAA", "Email": "Jane@Acme.example", "LastName": "Doe",
             "FirstName": "Jane", "Company": "Acme", "OwnerId": OTHER_USER,
             "CreatedDate": "2026-01-01T10:00:00.000+0000"},
        ],
        "contacts": [{"Email": "carl@contact.example", "LastName": "Carl"}],
        "daily_api_limit": 1000,
    }  # fmt: skip
    base.update(extra)
    return base


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def sim(clock: ManualClock) -> SalesforceSimulator:
    return SalesforceSimulator(seed(), clock=clock)


async def _client(sim: SalesforceSimulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=sim.base_url)


@pytest.fixture
async def client(sim: SalesforceSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(sim) as c:
        yield c


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post(
        "/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
async def auth(client: httpx.AsyncClient) -> dict[str, str]:
    return await login(client)


# --- OAuth --------------------------------------------------------------------------------------


async def test_client_credentials_answer_shape(
    sim: SalesforceSimulator, client: httpx.AsyncClient
) -> None:
    r = await client.post(
        "/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"},
    )
    body = r.json()
    assert r.status_code == 200
    assert body["instance_url"] == sim.base_url
    assert body["id"] == f"{sim.base_url}/id/{sim.org_id}/{USER_ID}"
    assert body["token_type"] == "Bearer"
    assert isinstance(body["issued_at"], str) and body["issued_at"].isdigit()
    assert body["signature"] and body["scope"]
    assert "refresh_token" not in body
    assert sim.tokens.validate(body["access_token"]) is not None
    assert sim.connector_user_id == USER_ID
    assert sim.org_id.startswith("00D") and len(sim.org_id) == 18


@pytest.mark.parametrize(
    ("form", "error", "description"),
    [
        ({"grant_type": "client_credentials", "client_id": "nope", "client_secret": "csecret"},
         "invalid_client_id", "client identifier invalid"),
        ({"grant_type": "client_credentials", "client_id": "cid", "client_secret": "wrong"},
         "invalid_client", "invalid client credentials"),
        ({"grant_type": "authorization_code", "client_id": "cid"},
         "unsupported_grant_type", "grant type not supported"),
        ({}, "unsupported_grant_type", "grant type not supported"),
        ({"grant_type": "password", "client_id": "cid", "client_secret": "csecret",
          "username": "nobody@acme.example", "password": "x"},
         "invalid_grant", "authentication failure"),
        ({"grant_type": "password", "client_id": "cid", "client_secret": "csecret",
          "username": "gone@acme.example", "password": "x"},
         "invalid_grant", "authentication failure"),
        ({"grant_type": "password", "client_id": "cid", "client_secret": "csecret",
          "username": "rep@acme.example", "password": ""},
         "invalid_grant", "authentication failure"),
        ({"grant_type": "refresh_token", "client_id": "cid", "refresh_token": "bogus"},
         "invalid_grant", "expired access/refresh token"),
    ],
)  # fmt: skip
async def test_token_errors(
    client: httpx.AsyncClient, form: dict[str, str], error: str, description: str
) -> None:
    r = await client.post("/services/oauth2/token", data=form)
    assert r.status_code == 400
    assert r.json() == {"error": error, "error_description": description}


async def test_password_flow(sim: SalesforceSimulator, client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/services/oauth2/token",
        data={"grant_type": "password", "client_id": "cid", "client_secret": "csecret",
              "username": "rep@acme.example", "password": "pw+token"},
    )  # fmt: skip
    assert r.status_code == 200
    assert r.json()["id"].endswith(f"/{OTHER_USER}")
    assert "refresh_token" not in r.json()


async def test_password_must_match_seeded_password(clock: ManualClock) -> None:
    s = seed()
    s["oauth"] = {**s["oauth"], "password": "s3cret"}
    sim = SalesforceSimulator(s, clock=clock)
    async with await _client(sim) as c:
        form = {"grant_type": "password", "client_id": "cid", "client_secret": "csecret",
                "username": "connector@acme.example"}  # fmt: skip
        bad = await c.post("/services/oauth2/token", data={**form, "password": "other"})
        good = await c.post("/services/oauth2/token", data={**form, "password": "s3cret"})
    assert bad.json()["error"] == "invalid_grant"
    assert good.status_code == 200


async def test_refresh_token_flow_with_rotation(clock: ManualClock) -> None:
    s = seed()
    s["oauth"] = {**s["oauth"], "refresh_token": "rt-1", "rotate_refresh_tokens": True}
    sim = SalesforceSimulator(s, clock=clock)
    async with await _client(sim) as c:
        form = {"grant_type": "refresh_token", "client_id": "cid", "client_secret": "csecret"}
        first = await c.post("/services/oauth2/token", data={**form, "refresh_token": "rt-1"})
        assert first.status_code == 200
        new = first.json()["refresh_token"]
        assert new != "rt-1"
        reused = await c.post("/services/oauth2/token", data={**form, "refresh_token": "rt-1"})
        assert reused.json() == {
            "error": "invalid_grant",
            "error_description": "expired access/refresh token",
        }
        second = await c.post("/services/oauth2/token", data={**form, "refresh_token": new})
        assert second.status_code == 200


async def test_refresh_token_without_rotation_keeps_working(clock: ManualClock) -> None:
    s = seed()
    s["oauth"] = {**s["oauth"], "refresh_token": "rt-1"}
    sim = SalesforceSimulator(s, clock=clock)
    async with await _client(sim) as c:
        for _ in range(2):
            r = await c.post(
                "/services/oauth2/token",
                data={"grant_type": "refresh_token", "client_id": "cid", "refresh_token": "rt-1"},
            )
            assert r.status_code == 200
            assert "refresh_token" not in r.json()


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _assertion(private: bytes, clock: ManualClock, **claims: Any) -> str:
    payload = {"iss": "cid", "sub": "connector@acme.example", "aud": "https://login.salesforce.com",
               "exp": int(clock().timestamp()) + 180, **claims}  # fmt: skip
    return jwt.encode(payload, private, algorithm="RS256")


@pytest.mark.parametrize(
    ("claims", "status", "error"),
    [
        ({}, 200, None),
        ({"aud": "https://test.salesforce.com"}, 200, None),
        ({"aud": "https://evil.example"}, 400, ("invalid_grant", "audience is invalid")),
        ({"iss": "other"}, 400, ("invalid_client_id", "client identifier invalid")),
        ({"sub": "nobody@acme.example"}, 400, ("invalid_grant", "user hasn't approved this consumer")),
        ({"exp": 1}, 400, ("invalid_grant", "expired authorization code")),
    ],
)  # fmt: skip
async def test_jwt_flow(
    clock: ManualClock,
    rsa_keys: tuple[bytes, str],
    claims: dict[str, Any],
    status: int,
    error: tuple[str, str] | None,
) -> None:
    private, public = rsa_keys
    s = seed()
    s["oauth"] = {**s["oauth"], "jwt_public_key": public}
    sim = SalesforceSimulator(s, clock=clock)
    async with await _client(sim) as c:
        r = await c.post(
            "/services/oauth2/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                  "assertion": _assertion(private, clock, **claims)},
        )  # fmt: skip
    assert r.status_code == status
    if error is None:
        assert "refresh_token" not in r.json()
        assert r.json()["id"].endswith(f"/{USER_ID}")
    else:
        assert r.json() == {"error": error[0], "error_description": error[1]}


async def test_jwt_signature_is_verified_when_a_key_is_seeded(
    clock: ManualClock, rsa_keys: tuple[bytes, str]
) -> None:
    _, public = rsa_keys
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    s = seed()
    s["oauth"] = {**s["oauth"], "jwt_public_key": public}
    async with await _client(SalesforceSimulator(s, clock=clock)) as c:
        r = await c.post(
            "/services/oauth2/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                  "assertion": _assertion(other_pem, clock)},
        )  # fmt: skip
    assert r.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}
    # without a seeded key, only structure and claims are checked
    async with await _client(SalesforceSimulator(seed(), clock=clock)) as c:
        r = await c.post(
            "/services/oauth2/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                  "assertion": _assertion(other_pem, clock)},
        )  # fmt: skip
        assert r.status_code == 200
        garbage = await c.post(
            "/services/oauth2/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y"},
        )
        assert garbage.json()["error"] == "invalid_grant"


async def test_identity_url(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.get(f"/id/{sim.org_id}/{USER_ID}", headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == USER_ID and body["organization_id"] == sim.org_id
    assert body["username"] == "connector@acme.example" and body["active"] is True
    r = await client.get(f"/id/{sim.org_id}/{USER_ID}", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403


# --- sessions and limits -------------------------------------------------------------------------


async def test_invalid_and_expired_session(clock: ManualClock) -> None:
    sim = SalesforceSimulator(seed(token_ttl_s=60), clock=clock)
    async with await _client(sim) as c:
        r = await c.get(f"{V}/limits", headers={"Authorization": "Bearer bogus"})
        assert r.status_code == 401
        assert r.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]
        assert (await c.get(f"{V}/limits")).status_code == 401
        auth = await login(c)
        assert (await c.get(f"{V}/limits", headers=auth)).status_code == 200
        clock.advance(seconds=61)
        r = await c.get(f"{V}/limits", headers=auth)
        assert r.status_code == 401
        assert r.json()[0]["errorCode"] == "INVALID_SESSION_ID"


async def test_tokens_shared_registry_ttl(clock: ManualClock) -> None:
    tokens = TokenRegistry(clock, ttl_s=5)
    sim = SalesforceSimulator(seed(), tokens=tokens, clock=clock)
    async with await _client(sim) as c:
        auth = await login(c)
        clock.advance(seconds=6)
        assert (await c.get(f"{V}/limits", headers=auth)).status_code == 401


async def test_limit_header_and_daily_limit(clock: ManualClock) -> None:
    sim = SalesforceSimulator(seed(daily_api_limit=3), clock=clock)
    async with await _client(sim) as c:
        auth = await login(c)
        seen = []
        for _ in range(3):
            r = await c.get(f"{V}/limits", headers=auth)
            assert r.status_code == 200
            seen.append(r.headers["Sforce-Limit-Info"])
        assert seen == ["api-usage=1/3", "api-usage=2/3", "api-usage=3/3"]
        assert r.json()["DailyApiRequests"] == {"Max": 3, "Remaining": 0}
        r = await c.get(f"{V}/query", params={"q": "SELECT Id FROM Lead"}, headers=auth)
        assert r.status_code == 403
        assert r.json() == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
        assert r.headers["Sforce-Limit-Info"] == "api-usage=3/3"
        # the token endpoint is not a REST call
        assert (await c.post("/services/oauth2/token", data={"grant_type": "client_credentials",
                "client_id": "cid", "client_secret": "csecret"})).status_code == 200  # fmt: skip
    assert sim.api_usage == 3


async def test_versions_and_any_version(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.get("/services/data/")
    versions = {v["version"]: v for v in r.json()}
    assert versions["60.0"] == {
        "label": "Spring '24",
        "url": "/services/data/v60.0",
        "version": "60.0",
    }
    assert "Sforce-Limit-Info" not in r.headers
    for v in ("v52.0", "v60.0", "v62.0"):
        r = await client.get(
            f"/services/data/{v}/query", params={"q": "SELECT COUNT() FROM Lead"}, headers=auth
        )
        assert r.json() == {"totalSize": 1, "done": True, "records": []}


# --- query --------------------------------------------------------------------------------------


async def test_query_shape_and_formats(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    q = "SELECT Id, Email, CreatedDate, IsConverted, OwnerId FROM Lead WHERE Email = 'jane@acme.EXAMPLE'"
    r = await client.get(f"{V}/query", params={"q": q}, headers=auth)
    assert r.status_code == 200
    assert r.json() == {
        "totalSize": 1,
        "done": True,
        "records": [
            {
                "attributes": {"type": "Lead", "url": f"{V}/sobjects/Lead/00Q5g00000LeAd1AAA"},
                "Id": "00Q5g00000LeAd1AAA",
                "Email": "Jane@Acme.example",
                "CreatedDate": "2026-01-01T10:00:00.000+0000",
                "IsConverted": False,
                "OwnerId": OTHER_USER,
            }
        ],
    }
    empty = await client.get(
        f"{V}/query", params={"q": "SELECT Id FROM Lead WHERE Email = 'x@y.z'"}, headers=auth
    )
    assert empty.json() == {"totalSize": 0, "done": True, "records": []}


@pytest.mark.parametrize(
    ("q", "status", "code", "fragment"),
    [
        ("SELECT Id FROM Lead WHERE", 400, "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Foo FROM Lead", 400, "INVALID_FIELD", "No such column 'Foo' on entity 'Lead'"),
        ("SELECT Id FROM Nope", 400, "INVALID_TYPE", "sObject type 'Nope' is not supported"),
        ("SELECT Id FROM Lead WHERE Description = 'x'", 400, "INVALID_FIELD",
         "field 'Description' can not be filtered in a query call"),
        ("SELECT Id FROM Lead WHERE Email = 'a\\qb'", 400, "MALFORMED_QUERY", "\\q"),
    ],
)  # fmt: skip
async def test_query_errors(
    client: httpx.AsyncClient, auth: dict[str, str], q: str, status: int, code: str, fragment: str
) -> None:
    r = await client.get(f"{V}/query", params={"q": q}, headers=auth)
    assert r.status_code == status
    [err] = r.json()
    assert err["errorCode"] == code and fragment in err["message"]


async def test_query_too_long(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    in_list = ",".join(f"'user{n}@example.com'" for n in range(700))  # ~16 KB URI
    r = await client.get(
        f"{V}/query", params={"q": f"SELECT Id FROM Lead WHERE Email IN ({in_list})"}, headers=auth
    )
    assert r.status_code == 414
    # the same query fits inside a composite body, where only the 100,000-char SOQL cap applies
    long_q = "SELECT Id FROM Lead WHERE " + " OR ".join(["Email = 'a@b.cd'"] * 6000)
    r = await client.post(
        f"{V}/composite",
        json={
            "compositeRequest": [
                {"method": "GET", "url": f"{V}/query?q={long_q}", "referenceId": "q"}
            ]
        },
        headers=auth,
    )
    sub = r.json()["compositeResponse"][0]
    assert sub["httpStatusCode"] == 400 and sub["body"][0]["errorCode"] == "MALFORMED_QUERY"


async def test_query_more_paging_over_4500(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for n in range(4500):
        sim.insert("Lead", {"LastName": f"L{n}", "Company": "Bulk", "Email": f"bulk{n}@x.example"})
    r = await client.get(
        f"{V}/query",
        params={"q": "SELECT Id, Email FROM Lead WHERE Company = 'Bulk' ORDER BY Email"},
        headers=auth,
    )
    page = r.json()
    assert page["totalSize"] == 4500 and page["done"] is False and len(page["records"]) == 2000
    assert page["nextRecordsUrl"].startswith(f"{V}/query/01g") and page["nextRecordsUrl"].endswith(
        "-2000"
    )
    seen = [rec["Email"] for rec in page["records"]]
    # records are snapshotted: a change after the first page does not show on later pages
    last = sim.records("Lead")[-1]
    sim.modify("Lead", last["Id"], {"Email": "changed@x.example"})
    calls = 1
    while not page["done"]:
        page = (await client.get(page["nextRecordsUrl"], headers=auth)).json()
        calls += 1
        seen.extend(rec["Email"] for rec in page["records"])
    assert calls == 3 and len(seen) == 4500 == len(set(seen))
    assert "changed@x.example" not in seen and seen == sorted(seen)
    assert "nextRecordsUrl" not in page
    again = await client.get(f"{V}/query/{page.get('x', '01gBOGUS')}-2000", headers=auth)
    assert again.status_code == 400 and again.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    small = await client.get(
        f"{V}/query",
        params={"q": "SELECT Id FROM Lead"},
        headers={**auth, "Sforce-Query-Options": "batchSize=500"},
    )
    assert len(small.json()["records"]) == 500 and small.json()["nextRecordsUrl"].endswith("-500")


async def test_query_cursor_expires(
    sim: SalesforceSimulator, clock: ManualClock, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for n in range(2100):
        sim.insert("Lead", {"LastName": f"L{n}", "Company": "Bulk"})
    page = (
        await client.get(f"{V}/query", params={"q": "SELECT Id FROM Lead"}, headers=auth)
    ).json()
    clock.advance(minutes=16)
    r = await client.get(page["nextRecordsUrl"], headers=auth)
    assert r.status_code == 400 and r.json() == [
        {"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}
    ]


async def test_query_by_modstamp_and_in_list_uses_indexes_on_50k(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    for n in range(50_000):
        if n % 5_000 == 0:
            clock.advance(seconds=1)
        sim.insert("Lead", {"LastName": "L", "Company": "C", "Email": f"user{n}@example.com"})
    cutoff = clock().replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    emails = ",".join(f"'USER{n}@example.com'" for n in range(0, 50_000, 250))
    examined_before = sim.tables["Lead"].reads
    r = await client.get(
        f"{V}/query",
        params={"q": f"SELECT Id, Email FROM Lead WHERE Email IN ({emails})"},
        headers=auth,
    )
    assert r.json()["totalSize"] == 200
    r = await client.get(
        f"{V}/query",
        params={
            "q": f"SELECT Id FROM Lead WHERE SystemModstamp >= {cutoff} ORDER BY SystemModstamp LIMIT 2000"
        },
        headers=auth,
    )
    assert r.json()["totalSize"] == 2000
    # Independent of machine speed: the records the two queries examined. The Email and
    # SystemModstamp indexes answer them from 200 and 2,000 candidates (a few reads each, to
    # filter and to build the page: 4,600 today); a full scan reads all 50,000 per query.
    examined = sim.tables["Lead"].reads - examined_before
    assert examined <= 3 * (200 + 2000)


async def test_query_all_sees_deleted(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    sim.remove("Lead", "00Q5g00000LeAd1AAA")
    q = {"q": "SELECT Id, IsDeleted FROM Lead"}
    assert (await client.get(f"{V}/query", params=q, headers=auth)).json()["totalSize"] == 0
    r = (await client.get(f"{V}/queryAll", params=q, headers=auth)).json()
    assert r["records"][0]["IsDeleted"] is True


# --- sObject CRUD --------------------------------------------------------------------------------


async def test_crud_round_trip(
    sim: SalesforceSimulator, clock: ManualClock, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(
        f"{V}/sobjects/Lead",
        json={"LastName": "Smith", "Company": "SmithCorp", "Email": "s@smith.example"},
        headers=auth,
    )
    assert r.status_code == 201
    body = r.json()
    assert (
        body["success"] is True
        and body["errors"] == []
        and body["id"].startswith("00Q")
        and len(body["id"]) == 18
    )
    lead_id = body["id"]
    rec = (await client.get(f"{V}/sobjects/Lead/{lead_id}", headers=auth)).json()
    assert rec["attributes"] == {"type": "Lead", "url": f"{V}/sobjects/Lead/{lead_id}"}
    assert rec["Status"] == "Open - Not Contacted" and rec["Name"] == "Smith"
    assert rec["OwnerId"] == USER_ID and rec["IsConverted"] is False
    assert rec["CreatedDate"] == "2026-01-05T09:00:00.000+0000" == rec["SystemModstamp"]
    assert {"pi__score__c", "pi__grade__c", "pi__comments__c", "HasOptedOutOfEmail"} <= set(rec)
    clock.advance(seconds=30)
    r = await client.patch(
        f"{V}/sobjects/Lead/{lead_id}", json={"FirstName": "Ann", "pi__score__c": 42}, headers=auth
    )
    assert r.status_code == 204 and r.content == b""
    rec = sim.get("Lead", lead_id)
    assert rec is not None
    assert rec["Name"] == "Ann Smith" and rec["pi__score__c"] == 42.0
    assert (
        rec["LastModifiedDate"]
        == rec["SystemModstamp"]
        == datetime(2026, 1, 5, 9, 0, 30, tzinfo=UTC)
    )
    assert rec["CreatedDate"] == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    r = await client.delete(f"{V}/sobjects/Lead/{lead_id}", headers=auth)
    assert r.status_code == 204
    r = await client.get(f"{V}/sobjects/Lead/{lead_id}", headers=auth)
    assert r.status_code == 404
    r = await client.patch(f"{V}/sobjects/Lead/{lead_id}", json={"FirstName": "B"}, headers=auth)
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    unknown = await client.get(f"{V}/sobjects/Lead/00Q5g00000NoNeXAAA", headers=auth)
    assert unknown.status_code == 404
    assert unknown.json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]


@pytest.mark.parametrize(
    ("sobject", "body", "code", "message", "fields"),
    [
        ("Lead", {"Company": "X"}, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ["LastName"]),
        ("Lead", {"Email": "a@b.cd"}, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName, Company]", ["LastName", "Company"]),
        ("Contact", {"FirstName": "X"}, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ["LastName"]),
        ("Lead", {"LastName": "X", "Company": "Y", "Email": "bad"}, "INVALID_EMAIL_ADDRESS", "Email: invalid email address: bad", ["Email"]),
        ("Lead", {"LastName": "X", "Company": "Y", "Foo": 1}, "INVALID_FIELD", "No such column 'Foo' on sobject of type Lead", ["Foo"]),
        ("Lead", {"Id": "00Q5g00000LeAd1AAA", "LastName": "X", "Company": "Y"}, "INVALID_FIELD", "The Id field should not be specified in the sobject data.", None),
        ("Lead", {"LastName": "X", "Company": "Y", "IsConverted": True}, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: IsConverted.", ["IsConverted"]),
        ("Lead", {"LastName": "X", "Company": "Y", "Email": "a" * 75 + "@b.com"}, "STRING_TOO_LONG", "Email: data value too large", ["Email"]),
        ("Lead", {"LastName": "X" * 81, "Company": "Y"}, "STRING_TOO_LONG", "(max length=80)", ["LastName"]),
        ("Lead", {"LastName": "X", "Company": "Y", "OwnerId": INACTIVE_USER}, "INACTIVE_OWNER_OR_USER", "inactive user", ["OwnerId"]),
        ("Lead", {"LastName": "X", "Company": "Y", "OwnerId": "0055g00000NoBoDAAA"}, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["OwnerId"]),
        ("Lead", {"LastName": "X", "Company": "Y", "OwnerId": "00Q5g00000LeAd1AAA"}, "FIELD_INTEGRITY_EXCEPTION", "Owner ID: id value of incorrect type", ["OwnerId"]),
        ("Lead", {"LastName": "X", "Company": "Y", "OwnerId": "nope"}, "MALFORMED_ID", "Owner ID: id value of incorrect type: nope", ["OwnerId"]),
        ("Contact", {"LastName": "X", "OwnerId": QUEUE_ID}, "FIELD_INTEGRITY_EXCEPTION", "Owner ID", ["OwnerId"]),
        ("Task", {"Subject": "x", "TaskSubtype": "Fax"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "bad value for restricted picklist field: Fax", ["TaskSubtype"]),
        ("Task", {"Subject": "x", "WhoId": "00Q5g00000NoNeXAAA"}, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["WhoId"]),
        ("Lead", {"LastName": "X", "Company": "Y", "HasOptedOutOfEmail": "yes"}, "JSON_PARSER_ERROR", "Cannot deserialize", None),
    ],
)  # fmt: skip
async def test_create_errors(
    client: httpx.AsyncClient, auth: dict[str, str], sobject: str, body: dict[str, Any],
    code: str, message: str, fields: list[str] | None,
) -> None:  # fmt: skip
    r = await client.post(f"{V}/sobjects/{sobject}", json=body, headers=auth)
    assert r.status_code == 400
    [err] = r.json()
    assert err["errorCode"] == code and message in err["message"]
    assert err.get("fields") == fields


async def test_queue_owner_and_default_owner(
    client: httpx.AsyncClient, auth: dict[str, str], sim: SalesforceSimulator
) -> None:
    r = await client.post(
        f"{V}/sobjects/Lead",
        json={"LastName": "Q", "Company": "Y", "OwnerId": QUEUE_ID},
        headers=auth,
    )
    assert r.status_code == 201
    assert sim.get("Lead", r.json()["id"])["OwnerId"] == QUEUE_ID  # type: ignore[index]
    r = await client.post(
        f"{V}/sobjects/Lead",
        json={"LastName": "Q", "Company": "Y", "OwnerId": OTHER_USER[:15]},
        headers=auth,
    )
    assert sim.get("Lead", r.json()["id"])["OwnerId"] == OTHER_USER  # type: ignore[index]


async def test_read_only_update_and_bad_ids(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.patch(
        f"{V}/sobjects/Lead/00Q5g00000LeAd1AAA",
        json={"CreatedDate": "2020-01-01T00:00:00Z"},
        headers=auth,
    )
    assert r.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    r = await client.patch(
        f"{V}/sobjects/Lead/00Q5g00000LeAd1AAA", json={"Company": None}, headers=auth
    )
    assert r.json()[0] == {
        "message": "Required fields are missing: [Company]",
        "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["Company"],
    }
    r = await client.get(f"{V}/sobjects/Lead/garbage", headers=auth)
    assert r.status_code == 404
    r = await client.get(f"{V}/sobjects/Nope/00Q5g00000LeAd1AAA", headers=auth)
    assert r.status_code == 404
    r = await client.post(
        f"{V}/sobjects/Lead",
        content=b"{not json",
        headers={**auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


async def test_converted_lead(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    contact_id = sim.convert_lead("00Q5g00000LeAd1AAA", {"Department": "Ops"})
    lead = sim.get("Lead", "00Q5g00000LeAd1AAA")
    assert (
        lead is not None
        and lead["IsConverted"] is True
        and lead["ConvertedContactId"] == contact_id
    )
    assert (
        lead["Status"] == "Closed - Converted" and lead["ConvertedDate"].isoformat() == "2026-01-05"
    )
    contact = sim.get("Contact", contact_id)
    assert (
        contact is not None
        and contact["Email"] == "Jane@Acme.example"
        and contact["Department"] == "Ops"
    )
    assert contact["OwnerId"] == OTHER_USER and contact["AccountId"] == lead["ConvertedAccountId"]
    r = await client.patch(
        f"{V}/sobjects/Lead/00Q5g00000LeAd1AAA", json={"Title": "CEO"}, headers=auth
    )
    assert r.status_code == 400
    assert r.json() == [
        {
            "message": "cannot reference converted lead",
            "errorCode": "CANNOT_UPDATE_CONVERTED_LEAD",
            "fields": [],
        }
    ]


async def test_task_create_and_read(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    body = {"Subject": "Email: Q3 pricing", "WhoId": "00Q5g00000LeAd1AAA", "Status": "Completed",
            "ActivityDate": "2026-01-05", "TaskSubtype": "Email", "Description": "hello"}  # fmt: skip
    r = await client.post(f"{V}/sobjects/Task", json=body, headers=auth)
    assert r.status_code == 201 and r.json()["id"].startswith("00T")
    rec = (await client.get(f"{V}/sobjects/Task/{r.json()['id']}", headers=auth)).json()
    assert (
        rec["ActivityDate"] == "2026-01-05"
        and rec["IsClosed"] is True
        and rec["OwnerId"] == USER_ID
    )
    r = await client.patch(
        f"{V}/sobjects/Task/{rec['Id']}", json={"TaskSubtype": "Call"}, headers=auth
    )
    assert r.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


async def test_user_and_queue_reads(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.get(
        f"{V}/query",
        params={"q": "SELECT Id, Username, IsActive FROM User WHERE Username = 'REP@acme.example'"},
        headers=auth,
    )
    assert r.json()["records"][0]["Id"] == OTHER_USER
    r = await client.get(
        f"{V}/query", params={"q": "SELECT Id, Name FROM Group WHERE Type = 'Queue'"}, headers=auth
    )
    assert [rec["Name"] for rec in r.json()["records"]] == ["Inbound"]
    r = await client.get(f"{V}/sobjects/User/{USER_ID}", headers=auth)
    assert r.json()["Username"] == "connector@acme.example"


async def test_describe_with_dropped_field(clock: ManualClock) -> None:
    sim = SalesforceSimulator(seed(drop_fields={"Lead": ["Title"]}), clock=clock)
    async with await _client(sim) as c:
        auth = await login(c)
        d = (await c.get(f"{V}/sobjects/Lead/describe", headers=auth)).json()
        assert d["name"] == "Lead" and d["label"] == "Lead" and d["keyPrefix"] == "00Q"
        fields = {f["name"]: f for f in d["fields"]}
        assert "Title" not in fields
        assert {"name", "type", "updateable", "createable", "nillable", "length", "label"} <= set(
            fields["Email"]
        )
        assert fields["Email"]["type"] == "email" and fields["Email"]["length"] == 80
        assert fields["IsConverted"]["updateable"] is False
        assert fields["pi__score__c"]["type"] == "double"
        r = await c.post(
            f"{V}/sobjects/Lead",
            json={"LastName": "X", "Company": "Y", "Title": "CEO"},
            headers=auth,
        )
        assert r.json()[0]["errorCode"] == "INVALID_FIELD"
        r = await c.get(f"{V}/query", params={"q": "SELECT Title FROM Lead"}, headers=auth)
        assert r.json()[0]["errorCode"] == "INVALID_FIELD"


# --- rules ---------------------------------------------------------------------------------------


async def test_duplicate_rule(clock: ManualClock) -> None:
    sim = SalesforceSimulator(seed(duplicate_rule=True), clock=clock)
    async with await _client(sim) as c:
        auth = await login(c)
        body = {"LastName": "Dup", "Company": "Y", "Email": "JANE@acme.example"}
        r = await c.post(f"{V}/sobjects/Lead", json=body, headers=auth)
        assert r.status_code == 400
        [err] = r.json()
        assert (
            err["errorCode"] == "DUPLICATES_DETECTED"
            and err["message"] == "Use one of these records?"
        )
        assert err["fields"] == []
        match = err["duplicateResut"]["matchResults"][0]
        assert match["entityType"] == "Lead"
        assert match["matchRecords"][0]["record"]["Id"] == "00Q5g00000LeAd1AAA"
        r = await c.post(
            f"{V}/sobjects/Lead", json={**body, "Email": "carl@CONTACT.example"}, headers=auth
        )
        assert r.json()[0]["duplicateResut"]["matchResults"][0]["entityType"] == "Contact"
        r = await c.post(
            f"{V}/sobjects/Lead",
            json=body,
            headers={**auth, "Sforce-Duplicate-Rule-Header": "allowSave=true"},
        )
        assert r.status_code == 201
        r = await c.post(
            f"{V}/composite/sobjects",
            json={
                "records": [
                    {"attributes": {"type": "Lead"}, **body},
                    {
                        "attributes": {"type": "Lead"},
                        "LastName": "U",
                        "Company": "Y",
                        "Email": "u@x.example",
                    },
                ]
            },
            headers=auth,
        )
        first, second = r.json()
        assert (
            first["success"] is False and first["errors"][0]["statusCode"] == "DUPLICATES_DETECTED"
        )
        assert second["success"] is True


async def test_assignment_rule(clock: ManualClock) -> None:
    sim = SalesforceSimulator(seed(assignment_rule={"owner_id": QUEUE_ID}), clock=clock)
    async with await _client(sim) as c:
        auth = await login(c)
        body = {"LastName": "A", "Company": "Y", "OwnerId": OTHER_USER}
        r = await c.post(
            f"{V}/sobjects/Lead", json=body, headers={**auth, "Sforce-Auto-Assign": "TRUE"}
        )
        assert sim.get("Lead", r.json()["id"])["OwnerId"] == QUEUE_ID  # type: ignore[index]
        # the header's REST default is TRUE
        r = await c.post(f"{V}/sobjects/Lead", json=body, headers=auth)
        assert sim.get("Lead", r.json()["id"])["OwnerId"] == QUEUE_ID  # type: ignore[index]
        r = await c.post(
            f"{V}/sobjects/Lead", json=body, headers={**auth, "Sforce-Auto-Assign": "false"}
        )
        kept = r.json()["id"]
        assert sim.get("Lead", kept)["OwnerId"] == OTHER_USER  # type: ignore[index]
        await c.patch(
            f"{V}/sobjects/Lead/{kept}",
            json={"Title": "x"},
            headers={**auth, "Sforce-Auto-Assign": "FALSE"},
        )
        assert sim.get("Lead", kept)["OwnerId"] == OTHER_USER  # type: ignore[index]
        r = await c.post(
            f"{V}/composite/sobjects",
            json={"records": [{"attributes": {"type": "Lead"}, **body}]},
            headers={**auth, "Sforce-Auto-Assign": "TRUE"},
        )
        assert sim.get("Lead", r.json()[0]["id"])["OwnerId"] == QUEUE_ID  # type: ignore[index]


# --- collections and composite -------------------------------------------------------------------


def _lead(**fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Lead"}, "LastName": "C", "Company": "Y", **fields}


async def test_collection_create_mixed(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    records = [
        _lead(Email="ok1@x.example"),
        _lead(Email="bad"),
        {"LastName": "NoType"},
        _lead(Email="ok2@x.example"),
    ]
    r = await client.post(
        f"{V}/composite/sobjects", json={"allOrNone": False, "records": records}, headers=auth
    )
    assert r.status_code == 200
    res = r.json()
    assert [x["success"] for x in res] == [True, False, False, True]
    assert res[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "INVALID_EMAIL_ADDRESS",
                "message": "Email: invalid email address: bad",
                "fields": ["Email"],
            }
        ],
    }
    assert "id" not in res[2] and res[2]["errors"][0]["statusCode"]
    assert res[0]["errors"] == [] and res[0]["id"].startswith("00Q")
    assert sim.counters.count("POST", "composite/sobjects") == 1
    assert sim.api_usage == 1


async def test_collection_all_or_none_rolls_back(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    before = len(sim.records("Lead"))
    r = await client.post(
        f"{V}/composite/sobjects",
        json={"allOrNone": True, "records": [_lead(Email="a@x.example"), _lead(Email="bad")]},
        headers=auth,
    )
    first, second = r.json()
    assert first == {"success": False, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                     "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
                     "fields": []}]}  # fmt: skip
    assert second["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert len(sim.records("Lead")) == before
    # updates and deletes roll back too
    r = await client.patch(
        f"{V}/composite/sobjects",
        json={"allOrNone": True, "records": [
            {"attributes": {"type": "Lead"}, "id": "00Q5g00000LeAd1AAA", "Title": "Changed"},
            {"attributes": {"type": "Lead"}, "id": "00Q5g00000NoNeXAAA", "Title": "x"}]},
        headers=auth,
    )  # fmt: skip
    assert [x["success"] for x in r.json()] == [False, False]
    assert sim.get("Lead", "00Q5g00000LeAd1AAA")["Title"] is None  # type: ignore[index]


async def test_collection_update_and_delete(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    created = (
        await client.post(
            f"{V}/composite/sobjects", json={"records": [_lead(), _lead()]}, headers=auth
        )
    ).json()
    a, b = created[0]["id"], created[1]["id"]
    sim.convert_lead(b)
    r = await client.patch(
        f"{V}/composite/sobjects",
        json={"allOrNone": False, "records": [
            {"attributes": {"type": "Lead"}, "id": a, "Title": "T"},
            {"attributes": {"type": "Lead"}, "id": b, "Title": "T"},
            {"attributes": {"type": "Lead"}, "Title": "no id"}]},
        headers=auth,
    )  # fmt: skip
    res = r.json()
    assert res[0] == {"id": a, "success": True, "errors": []}
    assert res[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "CANNOT_UPDATE_CONVERTED_LEAD",
                "message": "cannot reference converted lead",
                "fields": [],
            }
        ],
    }
    assert res[2]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    r = await client.delete(
        f"{V}/composite/sobjects",
        params={"ids": f"{a},00Q5g00000NoNeXAAA", "allOrNone": "false"},
        headers=auth,
    )
    res = r.json()
    assert res[0] == {"id": a, "success": True, "errors": []}
    assert res[1]["success"] is False
    assert sim.get("Lead", a) is None


async def test_collection_limit_201(
    client: httpx.AsyncClient, auth: dict[str, str], sim: SalesforceSimulator
) -> None:
    r = await client.post(
        f"{V}/composite/sobjects", json={"records": [_lead() for _ in range(201)]}, headers=auth
    )
    assert r.status_code == 400
    assert r.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    r = await client.post(
        f"{V}/composite/sobjects", json={"records": [_lead() for _ in range(200)]}, headers=auth
    )
    assert r.status_code == 200 and all(x["success"] for x in r.json())


async def test_composite_with_references(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(
        f"{V}/composite",
        json={"allOrNone": False, "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "newLead",
             "body": {"LastName": "Ref", "Company": "Y", "Email": "ref@x.example"}},
            {"method": "POST", "url": f"{V}/sobjects/Task", "referenceId": "task",
             "body": {"Subject": "Email: hi", "WhoId": "@{newLead.id}", "TaskSubtype": "Email"}},
            {"method": "GET", "url": f"{V}/query?q=SELECT+Id+FROM+Task+WHERE+WhoId='@{{newLead.id}}'",
             "referenceId": "q"},
        ]},
        headers=auth,
    )  # fmt: skip
    assert r.status_code == 200
    lead, task, query = r.json()["compositeResponse"]
    assert lead["httpStatusCode"] == 201 and lead["referenceId"] == "newLead"
    assert lead["httpHeaders"]["Location"].endswith(lead["body"]["id"])
    assert task["httpStatusCode"] == 201
    assert sim.get("Task", task["body"]["id"])["WhoId"] == lead["body"]["id"]  # type: ignore[index]
    assert query["body"]["totalSize"] == 1
    assert sim.api_usage == 1


async def test_composite_all_or_none(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    before = len(sim.records("Lead"))
    r = await client.post(
        f"{V}/composite",
        json={"allOrNone": True, "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "a", "body": {"LastName": "A", "Company": "Y"}},
            {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "b", "body": {"LastName": "B"}},
            {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "c", "body": {"LastName": "C", "Company": "Y"}},
        ]},
        headers=auth,
    )  # fmt: skip
    a, b, c = r.json()["compositeResponse"]
    assert a["httpStatusCode"] == 400 and a["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert b["httpStatusCode"] == 400 and b["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert c["httpStatusCode"] == 400 and c["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert len(sim.records("Lead")) == before


def _query_sub(n: int) -> dict[str, Any]:
    return {"method": "GET", "url": f"{V}/query?q=SELECT+Id+FROM+Lead", "referenceId": f"q{n}"}


def _collection_sub(n: int) -> dict[str, Any]:
    return {"method": "POST", "url": f"{V}/composite/sobjects", "referenceId": f"c{n}",
            "body": {"records": [_lead(Email=f"c{n}@x.example")]}}  # fmt: skip


def _create_sub(n: int) -> dict[str, Any]:
    return {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": f"l{n}",
            "body": {"LastName": f"L{n}", "Company": "Y"}}  # fmt: skip


@pytest.mark.parametrize(
    ("subs", "ok"),
    [
        ([_query_sub(n) for n in range(5)], True),
        ([_query_sub(n) for n in range(3)] + [_collection_sub(n) for n in range(2)], True),
        ([_query_sub(n) for n in range(5)] + [_create_sub(n) for n in range(20)], True),
        ([_query_sub(n) for n in range(6)], False),
        ([_query_sub(n) for n in range(3)] + [_collection_sub(n) for n in range(3)], False),
        ([_collection_sub(n) for n in range(6)], False),
        ([_create_sub(n) for n in range(26)], False),
    ],
    ids=["5q", "3q+2c", "5q+20w", "6q", "3q+3c", "6c", "26w"],
)
async def test_composite_limits_25_subrequests_5_queries_or_collections(
    sim: SalesforceSimulator,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    subs: list[dict[str, Any]],
    ok: bool,
) -> None:
    before = len(sim.records("Lead"))
    r = await client.post(f"{V}/composite", json={"compositeRequest": subs}, headers=auth)
    if ok:
        assert r.status_code == 200
        assert all(a["httpStatusCode"] < 300 for a in r.json()["compositeResponse"])
        return
    assert r.status_code == 400
    (error,) = r.json()
    assert error["errorCode"] == "INVALID_BATCH_REQUEST"
    assert "25" in error["message"] or "5" in error["message"]
    assert len(sim.records("Lead")) == before  # refused whole: no subrequest ran


# --- replication ---------------------------------------------------------------------------------


async def test_updated_refuses_a_range_over_the_id_limit(
    clock: ManualClock,
) -> None:
    sim = SalesforceSimulator(seed(updated_id_limit=3), clock=clock)
    assert SalesforceSimulator(seed(), clock=clock, updated_id_limit=7).updated_id_limit == 7
    assert SalesforceSimulator(seed(), clock=clock).updated_id_limit == 600_000
    start = clock()
    clock.advance(minutes=1)
    for n in range(3):
        sim.insert("Lead", {"LastName": f"N{n}", "Company": "Y"})
    clock.advance(minutes=2)
    async with await _client(sim) as c:
        auth = await login(c)
        params = {"start": start.isoformat(), "end": clock().isoformat()}
        r = await c.get(f"{V}/sobjects/Lead/updated/", params=params, headers=auth)
        assert r.status_code == 200 and len(r.json()["ids"]) == 3
        sim.insert("Lead", {"LastName": "N4", "Company": "Y"})
        clock.advance(minutes=1)
        params["end"] = clock().isoformat()
        r = await c.get(f"{V}/sobjects/Lead/updated/", params=params, headers=auth)
        assert r.status_code == 400
        (error,) = r.json()
        assert error["errorCode"] == "EXCEEDED_ID_LIMIT" and "3" in error["message"]
        # A shorter range holding at most the limit is answered.
        params["end"] = (start + timedelta(minutes=2)).isoformat()
        r = await c.get(f"{V}/sobjects/Lead/updated/", params=params, headers=auth)
        assert r.status_code == 200 and len(r.json()["ids"]) == 3


# --- write counters ------------------------------------------------------------------------------


async def test_written_counts_fields_of_every_write_attempt(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    lead = "00Q5g00000LeAd1AAA"
    await client.post(f"{V}/sobjects/Lead", json={"LastName": "A", "Company": "Y"}, headers=auth)
    await client.patch(f"{V}/sobjects/Lead/{lead}", json={"Title": "CTO"}, headers=auth)
    # refused writes count too: a read-only field, an unknown one
    await client.patch(f"{V}/sobjects/Lead/{lead}", json={"IsConverted": True}, headers=auth)
    await client.post(f"{V}/sobjects/Contact", json={"Nope__c": 1}, headers=auth)
    await client.post(
        f"{V}/composite/sobjects",
        json={"records": [_lead(Email="x@x.example"), {"LastName": "NoType"}]},
        headers=auth,
    )
    await client.patch(
        f"{V}/composite/sobjects",
        json={"records": [{"attributes": {"type": "Lead"}, "id": lead, "Title": "CEO"}]},
        headers=auth,
    )
    await client.post(
        f"{V}/composite",
        json={"compositeRequest": [
            {"method": "PATCH", "url": f"{V}/sobjects/Lead/{lead}", "referenceId": "p",
             "body": {"Title": "COO"}},
            _query_sub(1),
        ]},
        headers=auth,
    )  # fmt: skip
    await client.get(f"{V}/query", params={"q": "SELECT Id, Title FROM Lead"}, headers=auth)
    await client.delete(f"{V}/sobjects/Lead/{lead}", headers=auth)
    want = {
        "?": {"LastName": 1},
        "Contact": {"Nope__c": 1},
        "Lead": {"Company": 2, "Email": 1, "IsConverted": 1, "LastName": 2, "Title": 3},
    }
    assert sim.written() == want
    r = await client.get("/__sim__/written")
    assert r.status_code == 200 and r.json() == want


# --- replication ---------------------------------------------------------------------------------


async def test_updated_and_deleted(
    sim: SalesforceSimulator, clock: ManualClock, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    start = clock()
    clock.advance(minutes=5)
    sim.modify("Lead", "00Q5g00000LeAd1AAA", {"Title": "CTO"})
    new_id = sim.insert("Lead", {"LastName": "N", "Company": "Y"})
    clock.advance(minutes=1)
    sim.remove("Lead", new_id)
    clock.advance(minutes=2)
    params = {"start": start.isoformat(), "end": clock().isoformat()}
    r = await client.get(f"{V}/sobjects/Lead/updated/", params=params, headers=auth)
    assert r.status_code == 200
    assert r.json() == {
        "ids": ["00Q5g00000LeAd1AAA"],
        "latestDateCovered": "2026-01-05T09:08:00.000+0000",
    }
    r = await client.get(f"{V}/sobjects/Lead/deleted/", params=params, headers=auth)
    body = r.json()
    assert body["deletedRecords"] == [{"id": new_id, "deletedDate": "2026-01-05T09:06:00.000+0000"}]
    assert body["earliestDateAvailable"] == "2025-12-21T09:08:00.000+0000"
    assert body["latestDateCovered"] == "2026-01-05T09:08:00.000+0000"


@pytest.mark.parametrize(
    ("kind", "start", "end", "code"),
    [
        ("updated", "2025-11-01T00:00:00+00:00", "2026-01-05T00:00:00+00:00", "INVALID_REPLICATION_DATE"),
        ("deleted", "2025-12-15T00:00:00+00:00", "2026-01-05T00:00:00+00:00", "INVALID_REPLICATION_DATE"),
        ("updated", "2026-01-05T08:00:00+00:00", "2026-01-04T00:00:00+00:00", "INVALID_REPLICATION_DATE"),
        ("updated", "yesterday", "2026-01-05T00:00:00+00:00", "INVALID_REPLICATION_DATE"),
        ("updated", None, "2026-01-05T00:00:00+00:00", "MISSING_ARGUMENT"),
    ],
)  # fmt: skip
async def test_replication_windows(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    kind: str,
    start: str | None,
    end: str,
    code: str,
) -> None:
    params = {"end": end} if start is None else {"start": start, "end": end}
    r = await client.get(f"{V}/sobjects/Lead/{kind}/", params=params, headers=auth)
    assert r.status_code == 400 and r.json()[0]["errorCode"] == code


# --- faults and control routes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "status", "code", "message"),
    [
        (Faults(error_rate=1.0, seed=3), {500, 503}, {"UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE"}, None),
        (Faults(rate_limit_rate=1.0, seed=1), {403}, {"REQUEST_LIMIT_EXCEEDED"}, "ConcurrentPerOrgLongTxn Limit exceeded."),
    ],
)  # fmt: skip
async def test_faults(
    clock: ManualClock, faults: Faults, status: set[int], code: set[str], message: str | None
) -> None:
    sim = SalesforceSimulator(seed(), faults=faults, clock=clock)
    async with await _client(sim) as c:
        auth = await login(c)  # the token endpoint is exempt
        seen = set()
        for _ in range(8):
            r = await c.get(f"{V}/limits", headers=auth)
            assert r.status_code in status
            [err] = r.json()
            assert err["errorCode"] in code
            if message:
                assert err["message"] == message
            seen.add(r.status_code)
            assert "Sforce-Limit-Info" in r.headers
        if status == {500, 503}:
            assert seen == {500, 503}
    assert sum(sim.counters.faults.values()) == 8


async def test_lost_response_fault_commits_the_write(clock: ManualClock) -> None:
    sim = SalesforceSimulator(seed(faults={"lost_response_rate": 1.0, "seed": 7}), clock=clock)
    async with await _client(sim) as c:
        auth = await login(c)
        for n in range(4):
            try:
                r = await c.post(
                    f"{V}/sobjects/Lead",
                    json={"LastName": f"Lost{n}", "Company": "Y"},
                    headers=auth,
                )
                assert r.status_code == 502
            except httpx.RemoteProtocolError:
                pass
    assert sum(1 for rec in sim.records("Lead") if rec["LastName"].startswith("Lost")) == 4


async def test_counters_routes(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.get(f"{V}/query", params={"q": "SELECT Id FROM Lead"}, headers=auth)
    await client.get(f"{V}/sobjects/Lead/00Q5g00000LeAd1AAA", headers=auth)
    snap = (await client.get("/__sim__/counters")).json()
    assert snap["api_usage"] == 2
    assert snap["requests"]["GET /services/data/v60.0/query"] == 1
    assert snap["requests"]["GET /services/data/v60.0/sobjects/Lead/{id}"] == 1
    assert snap["requests"]["POST /services/oauth2/token"] == 1
    assert (await client.post("/__sim__/reset-counters")).status_code == 200
    snap = (await client.get("/__sim__/counters")).json()
    assert snap["total"] == 0 and snap["api_usage"] == 0


# --- seed ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"leads": [{"Email": "x@y.zz", "Company": "C"}]}, "salesforce.leads[0]"),
        ({"leads": [{"LastName": "x", "Company": "C", "Bogus": 1}]}, "Bogus"),
        ({"leads": [{"LastName": "x", "Company": "C", "Email": "nope"}]}, "invalid email"),
        ({"leads": [{"Id": "003000000000001AAA", "LastName": "x", "Company": "C"}]}, "not a Lead id"),
        ({"contacts": [{"LastName": "x", "OwnerId": "0055g00000NoBoDAAA"}]}, "salesforce.contacts[0]"),
        ({"oauth": {"client_id": "a", "client_secret": "b", "username": "who@x.example"}}, "names no seeded user"),
        ({"assignment_rule": {"owner_id": "0055g00000NoBoDAAA"}}, "assignment_rule"),
        ({"drop_fields": {"Nope": ["Title"]}}, "drop_fields"),
    ],
)  # fmt: skip
def test_bad_seed_names_the_record(patch: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        SalesforceSimulator(seed(**patch))
    assert fragment in str(info.value)


def test_seed_ids_and_timestamps() -> None:
    sim = SalesforceSimulator(
        seed(tasks=[{"Subject": "s", "WhoId": "00Q5g00000LeAd1AAA"}], org_id="00D5g00000OrGiDAAA")
    )
    assert sim.org_id == "00D5g00000OrGiDAAA"
    lead = sim.get("Lead", "00Q5g00000LeAd1")  # a 15-char id finds its record
    assert lead is not None and lead["SystemModstamp"] == datetime(2026, 1, 1, 10, tzinfo=UTC)
    [contact] = sim.records("Contact")
    assert (
        contact["Id"].startswith("003")
        and len(contact["Id"]) == 18
        and contact["OwnerId"] == USER_ID
    )
    [task] = sim.records("Task")
    assert task["Id"].startswith("00T") and task["Status"] == "Not Started"
    # the SystemModstamp of a new write never goes below a seeded one
    past = SalesforceSimulator(seed(), clock=ManualClock(datetime(2025, 1, 1, tzinfo=UTC)))
    new = past.insert("Lead", {"LastName": "x", "Company": "y"})
    assert past.get("Lead", new)["SystemModstamp"] >= datetime(2026, 1, 1, 10, tzinfo=UTC)  # type: ignore[index]
    assert timedelta(0) == timedelta(0)


async def test_counters_count_composite_subrequests_not_the_envelope(
    sim: SalesforceSimulator, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """A composite of queries writes nothing; a composite carrying a PATCH writes once."""
    before = sim.counters.writes
    queries = {
        "compositeRequest": [
            {"method": "GET", "url": f"{V}/query?q=SELECT+Id+FROM+Lead", "referenceId": "a"},
            {"method": "GET", "url": f"{V}/query?q=SELECT+Id+FROM+Contact", "referenceId": "b"},
        ]
    }
    r = await client.post(f"{V}/composite", json=queries, headers=auth)
    assert r.status_code == 200
    assert sim.counters.writes == before
    assert sim.counters.subrequests[f"GET {V}/query"] == 2
    lead_id = sim.records("Lead")[0]["Id"]
    patch = {
        "compositeRequest": [
            {
                "method": "PATCH",
                "url": f"{V}/sobjects/Lead/{lead_id}",
                "referenceId": "p",
                "body": {"Title": "CTO"},
            }
        ]
    }
    r = await client.post(f"{V}/composite", json=patch, headers=auth)
    assert r.json()["compositeResponse"][0]["httpStatusCode"] == 204
    assert sim.counters.writes == before + 1
    assert "subrequests" in sim.counters.snapshot()
