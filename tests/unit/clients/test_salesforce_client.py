"""SalesforceClient against the Salesforce simulator (wire-formats.md B), plus the SOQL helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd import errors
from syncd.clients.auth import SalesforceAuth
from syncd.clients.http import CallRecord, RetryPolicy
from syncd.clients.salesforce import (
    MAX_URI_BYTES,
    SalesforceClient,
    chunked_in_lists,
    parse_sf_datetime,
    soql_datetime,
    soql_in,
    soql_quote,
)
from syncd.settings import SalesforceSettings
from syncd.simulators import soql
from syncd.simulators._base import Faults, ManualClock, TokenRegistry
from syncd.simulators.salesforce import SalesforceSimulator

FAST = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.005)

NASTY = [
    "o'brien@example.com",
    'quote"d@example.com',
    "back\\slash@example.com",
    "a+tag@example.com",
    "ünïcødé@exämple.com",
    "emoji😀@example.com",
    "new\nline@example.com",
    "tab\there@example.com",
    "cr\rhere@example.com",
    "percent%_under@example.com",
    "\\'both\\'@example.com",
    "ctl\x01\x7f@example.com",
    "trailing-backslash\\",
]


# -- SOQL helpers, pure --------------------------------------------------------------------


@pytest.mark.parametrize("value", NASTY)
def test_soql_quote_round_trips_through_the_simulator_parser(value: str) -> None:
    query = soql.parse(f"SELECT Id FROM Lead WHERE Email = {soql_quote(value)}")
    literal = query.where
    assert isinstance(literal, soql.Compare)
    assert isinstance(literal.value, soql.StrLit)
    assert "".join(text for text, _ in soql.decode_string(literal.value.body)) == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_soql_quote_is_exact_for_any_text(value: str) -> None:
    query = soql.parse(f"SELECT Id FROM Lead WHERE Email = {soql_quote(value)} AND LastName = 'x'")
    where = query.where
    assert isinstance(where, soql.BoolOp)
    first = where.items[0]
    assert isinstance(first, soql.Compare) and isinstance(first.value, soql.StrLit)
    assert "".join(text for text, _ in soql.decode_string(first.value.body)) == value


def test_soql_quote_escapes_the_documented_characters() -> None:
    assert soql_quote("Bob's BBQ") == "'Bob\\'s BBQ'"
    assert soql_quote('a\\b"c\nd') == "'a\\\\b\\\"c\\nd'"
    assert soql_quote("50%_off") == "'50%_off'"  # wildcards matter only in LIKE


def test_soql_in_and_its_guards() -> None:
    assert soql_in("Email", ["a@x.com", "o'b@x.com"]) == "Email IN ('a@x.com','o\\'b@x.com')"
    with pytest.raises(ValueError, match="at least one"):
        soql_in("Email", [])
    with pytest.raises(ValueError, match="field name"):
        soql_in("Email) OR (Id", ["x"])


def test_soql_datetime_is_utc_whole_seconds() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert soql_datetime(datetime(2024, 5, 1, 2, 0, 0, 999_000, tzinfo=plus2)) == (
        "2024-05-01T00:00:00Z"
    )
    soql.parse(f"SELECT Id FROM Lead WHERE SystemModstamp >= {soql_datetime(datetime.now(UTC))}")
    with pytest.raises(ValueError, match="timezone-aware"):
        soql_datetime(datetime(2024, 5, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-12-02T18:23:39.000+0000", datetime(2021, 12, 2, 18, 23, 39, tzinfo=UTC)),
        ("2021-12-02T18:23:39.123Z", datetime(2021, 12, 2, 18, 23, 39, 123_000, tzinfo=UTC)),
        ("2021-12-02T20:23:39+02:00", datetime(2021, 12, 2, 18, 23, 39, tzinfo=UTC)),
        ("2021-12-02T13:23:39.5-0500", datetime(2021, 12, 2, 18, 23, 39, 500_000, tzinfo=UTC)),
    ],
)
def test_parse_sf_datetime(text: str, expected: datetime) -> None:
    parsed = parse_sf_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize("text", ["", "2021-12-02", "yesterday", "2021-12-02T18:23:39"])
def test_parse_sf_datetime_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a Salesforce dateTime"):
        parse_sf_datetime(text)


def test_chunked_in_lists_stays_under_the_budget_and_keeps_everything() -> None:
    emails = [f"person{i}+tag'x@example.com" for i in range(3000)] + ["person1+tag'x@example.com"]
    chunks = list(chunked_in_lists(emails, max_chars=4000))
    assert len(chunks) > 1
    flat = [e for c in chunks for e in c]
    assert flat == emails[:3000]  # order kept, the duplicate dropped
    for chunk in chunks:
        encoded = quote_plus(soql_in("Email", chunk))
        assert len(encoded) <= 4000 + len(quote_plus("Email IN ()"))
    with pytest.raises(ValueError, match="max_chars"):
        list(chunked_in_lists(["x" * 100], max_chars=50))


# -- the client against the simulator --------------------------------------------------------

CLIENT_ID = "3MVG9client.tests"
CLIENT_SECRET = "client-tests-secret-5521"
USERNAME = "connector@acme.example"
CONNECTOR_ID = "005000000000001AAA"
OTHER_USER_ID = "005000000000002AAA"


def sf_seed(**extra: Any) -> dict[str, Any]:
    return {
        "oauth": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "username": USERNAME},
        "users": [
            {"Id": CONNECTOR_ID, "Username": USERNAME, "Email": USERNAME, "Name": "Sync Connector"},
            {"Id": OTHER_USER_ID, "Username": "ann@acme.example", "Name": "Ann Owner"},
        ],
        **extra,
    }


def lead(i: int, **fields: Any) -> dict[str, Any]:
    return {"LastName": f"Person{i}", "Company": "Acme", "Email": f"p{i}@example.com", **fields}


class Org:
    """A simulator plus a client wired to it, with every CallRecord kept."""

    def __init__(self, sim: SalesforceSimulator, *, retry: RetryPolicy = FAST) -> None:
        self.sim = sim
        self.calls: list[CallRecord] = []
        settings = SalesforceSettings(
            login_url="https://login.salesforce.com",
            auth_flow="client_credentials",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
        )
        self.auth = SalesforceAuth(
            settings, transport=httpx.ASGITransport(app=sim.app), retry=FAST, clock=sim.clock
        )
        self.client = SalesforceClient(
            self.auth,
            transport=httpx.ASGITransport(app=sim.app),
            retry=retry,
            on_call=self.calls.append,
        )

    def requests(self, method: str, contains: str = "") -> int:
        return self.sim.counters.count(method, contains)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.auth.aclose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
async def org(clock: ManualClock) -> AsyncIterator[Org]:
    o = Org(SalesforceSimulator(sf_seed(), tokens=TokenRegistry(clock), clock=clock))
    yield o
    await o.aclose()


async def make_org(
    clock: ManualClock, *, faults: Faults | None = None, retry: RetryPolicy = FAST, **seed: Any
) -> Org:
    sim = SalesforceSimulator(
        sf_seed(**seed), tokens=TokenRegistry(clock), clock=clock, faults=faults
    )
    return Org(sim, retry=retry)


# queries


async def test_query_follows_query_more_over_4500_records(clock: ManualClock) -> None:
    o = await make_org(clock, leads=[lead(i) for i in range(4500)])
    try:
        seen = [r async for r in o.client.query("SELECT Id, Email FROM Lead ORDER BY Email")]
        assert len(seen) == 4500
        assert len({r["Id"] for r in seen}) == 4500
        assert seen[0]["attributes"]["type"] == "Lead"  # records as sent, attributes kept
        assert set(seen[0]) == {"attributes", "Id", "Email"}
        assert o.requests("GET", "/query") == 3  # 2000 + 2000 + 500
        assert o.client.calls_made == 3
        everything = await o.client.query_all("SELECT Id FROM Lead WHERE Email LIKE 'p1%'")
        assert len(everything) == 1 + 10 + 100 + 1000
        assert await o.client.count("SELECT COUNT() FROM Lead") == 4500
        assert await o.client.count("SELECT COUNT() FROM Lead WHERE Email = 'p7@example.com'") == 1
    finally:
        await o.aclose()


async def test_empty_query(org: Org) -> None:
    assert await org.client.query_all("SELECT Id FROM Lead WHERE Email = 'nobody@x.com'") == []


@pytest.mark.parametrize("value", NASTY)
async def test_nasty_values_match_exactly_through_the_simulator(org: Org, value: str) -> None:
    target = org.sim.insert("Lead", lead(1, LastName=value))
    decoy = org.sim.insert("Lead", lead(2, LastName=value + "x"))
    found = await org.client.query_all(
        f"SELECT Id, LastName FROM Lead WHERE LastName = {soql_quote(value)}"
    )
    assert [r["Id"] for r in found] == [target]
    assert found[0]["LastName"] == value
    assert decoy not in {r["Id"] for r in found}


@pytest.mark.parametrize(
    "email", ["o'brien@example.com", "a+tag@example.com", "x.y_z%q@example.com"]
)
async def test_nasty_emails_match_exactly(org: Org, email: str) -> None:
    target = org.sim.insert("Lead", lead(1, Email=email))
    org.sim.insert("Lead", lead(2, Email="other@example.com"))
    found = await org.client.query_all(f"SELECT Id FROM Lead WHERE {soql_in('Email', [email])}")
    assert [r["Id"] for r in found] == [target]


async def test_long_in_lists_are_split_under_the_uri_limit(org: Org) -> None:
    emails = [f"someone.with.a.long.address.{i}@subdomain.example.com" for i in range(1200)]
    for e in emails[::100]:
        org.sim.insert("Lead", lead(0, Email=e))
    base = "SELECT Id, Email FROM Lead WHERE "
    budget = MAX_URI_BYTES - 400 - len(quote_plus(base))
    found = []
    chunks = list(chunked_in_lists(emails, max_chars=budget))
    assert len(chunks) >= 2
    for chunk in chunks:
        found += await org.client.query_all(base + soql_in("Email", chunk))
    assert sorted(r["Email"] for r in found) == sorted(emails[::100])
    # one list that is too long is refused before it is sent, as a permanent error
    with pytest.raises(errors.PermanentAPIError) as caught:
        await org.client.query_all(base + soql_in("Email", emails))
    assert caught.value.code == "URI_TOO_LONG"
    assert org.requests("GET", "/query") == len(chunks)


async def test_malformed_query_and_bad_field_are_permanent(org: Org) -> None:
    with pytest.raises(errors.PermanentAPIError) as caught:
        await org.client.query_all("SELEKT Id FROM Lead")
    assert caught.value.code == "MALFORMED_QUERY" and caught.value.status == 400
    with pytest.raises(errors.PermanentAPIError) as caught:
        await org.client.query_all("SELECT Id, NoSuchField__c FROM Lead")
    assert caught.value.code == "INVALID_FIELD"
    assert org.requests("GET", "/query") == 2  # not retried


# single records


async def test_crud_round_trip(org: Org) -> None:
    lead_id = await org.client.create("Lead", lead(1, OwnerId=OTHER_USER_ID))
    assert org.sim.get("Lead", lead_id)["OwnerId"] == OTHER_USER_ID
    record = await org.client.get("Lead", lead_id)
    assert record is not None
    assert record["Email"] == "p1@example.com" and record["attributes"]["type"] == "Lead"
    assert parse_sf_datetime(record["SystemModstamp"]).tzinfo == UTC
    some = await org.client.get("Lead", lead_id, ["Id", "Email"])
    assert some is not None and some["Email"] == "p1@example.com"
    await org.client.update("Lead", lead_id, {"FirstName": "Jo"})
    assert org.sim.get("Lead", lead_id)["FirstName"] == "Jo"
    await org.client.delete("Lead", lead_id)
    assert org.sim.get("Lead", lead_id) is None
    assert await org.client.get("Lead", lead_id) is None  # 404 -> None
    assert await org.client.get("Lead", "00Q000000000000AAA") is None


async def test_create_runs_the_assignment_rule_only_when_asked(clock: ManualClock) -> None:
    o = await make_org(clock, assignment_rule={"owner_id": OTHER_USER_ID})
    try:
        plain = await o.client.create("Lead", lead(1, OwnerId=CONNECTOR_ID))
        assigned = await o.client.create("Lead", lead(2), auto_assign=True)
        assert o.sim.get("Lead", plain)["OwnerId"] == CONNECTOR_ID
        assert o.sim.get("Lead", assigned)["OwnerId"] == OTHER_USER_ID
        await o.client.update("Lead", plain, {"Title": "CTO"})  # updates never re-assign
        assert o.sim.get("Lead", plain)["OwnerId"] == CONNECTOR_ID
    finally:
        await o.aclose()


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"LastName": "X", "Email": "x@example.com"}, "REQUIRED_FIELD_MISSING", "Company"),
        (lead(1, Email="not-an-email"), "INVALID_EMAIL_ADDRESS", "Email"),
        (lead(1, Bogus__c=1), "INVALID_FIELD", "Bogus__c"),
        (lead(1, Id="00Q000000000001AAA"), "INVALID_FIELD", None),
    ],
)
async def test_create_errors_are_permanent_with_details(
    org: Org, fields: dict[str, Any], code: str, field: str | None
) -> None:
    with pytest.raises(errors.PermanentAPIError) as caught:
        await org.client.create("Lead", fields)
    exc = caught.value
    assert exc.code == code and exc.status == 400
    assert exc.details and exc.details[0].code == code
    if field:
        assert field in exc.details[0].fields
    assert org.requests("POST", "/sobjects/Lead") == 1


async def test_duplicate_rule_error_names_the_matches(clock: ManualClock) -> None:
    o = await make_org(clock, duplicate_rule=True)
    try:
        first = await o.client.create("Lead", lead(1))
        with pytest.raises(errors.PermanentAPIError) as caught:
            await o.client.create("Lead", lead(2, Email="P1@example.com"))
        assert caught.value.code == "DUPLICATES_DETECTED"
        assert first in caught.value.message
        assert len(o.sim.records("Lead")) == 1
    finally:
        await o.aclose()


async def test_duplicates_inside_a_collection_are_per_record(clock: ManualClock) -> None:
    o = await make_org(clock, duplicate_rule=True)
    try:
        existing = o.sim.insert("Lead", lead(1))
        results = await o.client.create_many("Lead", [lead(2), lead(3, Email="p1@example.com")])
        assert results[0].success and not results[1].success
        assert results[1].errors[0].code == "DUPLICATES_DETECTED"
        assert existing in results[1].errors[0].message
    finally:
        await o.aclose()


async def test_an_expired_session_is_renewed_once_and_reported(org: Org) -> None:
    await org.client.limits()
    org.sim.tokens.expire_all()
    await org.client.limits()
    assert [c.outcome for c in org.calls] == ["ok", "auth", "ok"]
    assert [c.status for c in org.calls] == [200, 401, 200]
    assert org.auth.logins == 2


async def test_update_errors(org: Org) -> None:
    lead_id = org.sim.insert("Lead", lead(1))
    org.sim.convert_lead(lead_id)
    with pytest.raises(errors.PermanentAPIError) as caught:
        await org.client.update("Lead", lead_id, {"Title": "CEO"})
    assert caught.value.code == "CANNOT_UPDATE_CONVERTED_LEAD"
    gone = org.sim.insert("Lead", lead(2))
    org.sim.remove("Lead", gone)
    with pytest.raises(errors.PermanentAPIError) as caught:
        await org.client.update("Lead", gone, {"Title": "CEO"})
    assert caught.value.code == "ENTITY_IS_DELETED" and caught.value.status == 404
    with pytest.raises(errors.PermanentAPIError) as caught:
        await org.client.delete("Lead", gone)  # first attempt: the caller learns it was gone
    assert caught.value.code == "ENTITY_IS_DELETED"
    with pytest.raises(errors.PermanentAPIError, match="MALFORMED_ID"):
        await org.client.update("Lead", "not-an-id", {"Title": "CEO"})
    assert org.requests("PATCH") == 2  # the malformed id never left the process


# collections


async def test_create_many_450_records_in_three_calls(org: Org) -> None:
    results = await org.client.create_many("Lead", [lead(i) for i in range(450)])
    assert len(results) == 450 and all(r.success for r in results)
    assert org.requests("POST", "/composite/sobjects") == 3
    by_email = {r["Email"]: r["Id"] for r in org.sim.records("Lead")}
    # results come back in request order
    assert [r.id for r in results] == [by_email[f"p{i}@example.com"] for i in range(450)]


async def test_create_many_mixed_results_are_returned_per_record(org: Org) -> None:
    batch = [lead(0), lead(1, Email="bad-address"), {"LastName": "NoCompany"}, lead(3)]
    results = await org.client.create_many("Lead", batch)
    assert [r.success for r in results] == [True, False, False, True]
    assert results[1].id is None and results[1].errors[0].code == "INVALID_EMAIL_ADDRESS"
    assert results[1].errors[0].fields == ("Email",)
    assert results[2].errors[0].code == "REQUIRED_FIELD_MISSING"
    assert not any(r.retriable for r in results)
    assert len(org.sim.records("Lead")) == 2


async def test_create_many_all_or_none_rolls_back(org: Org) -> None:
    results = await org.client.create_many(
        "Lead", [lead(0), lead(1, Email="bad")], all_or_none=True
    )
    assert [r.success for r in results] == [False, False]
    assert results[0].errors[0].code == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert org.sim.records("Lead") == []


async def test_update_many_and_delete_many(org: Org) -> None:
    ids = [org.sim.insert("Lead", lead(i)) for i in range(250)]
    converted = ids[5]
    org.sim.convert_lead(converted)
    updates = [{"Id": rid, "Title": f"T{n}"} for n, rid in enumerate(ids)]
    results = await org.client.update_many("Lead", updates)
    assert org.requests("PATCH", "/composite/sobjects") == 2
    assert [r.id for r in results] == ids  # failed items get their id from the request
    assert not results[5].success
    assert results[5].errors[0].code == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert all(r.success for n, r in enumerate(results) if n != 5)
    assert org.sim.get("Lead", ids[7])["Title"] == "T7"
    with pytest.raises(ValueError, match="Id"):
        await org.client.update_many("Lead", [{"Title": "no id"}])

    org.sim.remove("Lead", ids[9])
    deleted = await org.client.delete_many(ids[:220])
    assert org.requests("DELETE", "/composite/sobjects") == 2
    assert [r.id for r in deleted] == ids[:220]
    assert not deleted[9].success and deleted[9].errors[0].code == "ENTITY_IS_DELETED"
    assert sum(r.success for r in deleted) == 219
    assert len(org.sim.records("Lead")) == 30
    assert await org.client.delete_many([]) == []


async def test_a_chunk_refused_by_the_daily_limit_comes_back_per_record(clock: ManualClock) -> None:
    o = await make_org(clock, daily_api_limit=2)
    try:
        results = await o.client.create_many("Lead", [lead(i) for i in range(450)])
        assert len(results) == 450
        refused = [r for r in results if not r.success]
        assert len(refused) in (50, 200)  # whichever chunk came last (they run concurrently)
        assert all(r.retriable and r.errors[0].code == "REQUEST_LIMIT_EXCEEDED" for r in refused)
        assert len(o.sim.records("Lead")) == 450 - len(refused)
        # when no chunk gets through, the call raises
        with pytest.raises(errors.BudgetExhaustedError) as caught:
            await o.client.update_many("Lead", [{"Id": r.id, "Title": "x"} for r in results[:3]])
        assert "TotalRequests" in caught.value.message
    finally:
        await o.aclose()


async def test_delete_many_fails_a_malformed_id_alone(org: Org) -> None:
    ids = [org.sim.insert("Lead", lead(i)) for i in range(3)]
    results = await org.client.delete_many([ids[0], "garbage", ids[1]])
    assert [r.success for r in results] == [True, False, True]
    assert results[1].errors[0].code == "MALFORMED_ID" and results[1].id == "garbage"
    assert [r["Id"] for r in org.sim.records("Lead")] == [ids[2]]
    results = await org.client.delete_many([ids[2], "garbage"], all_or_none=True)
    assert [r.errors[0].code for r in results] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "MALFORMED_ID",
    ]
    assert org.requests("DELETE") == 1  # the all-or-none call was never sent


# replication, metadata, usage


async def test_get_updated_and_get_deleted(org: Org, clock: ManualClock) -> None:
    start = clock()
    clock.advance(minutes=1)
    kept = org.sim.insert("Lead", lead(1))
    gone = org.sim.insert("Lead", lead(2))
    clock.advance(minutes=1)
    org.sim.remove("Lead", gone)
    clock.advance(minutes=2)
    updated = await org.client.get_updated("Lead", start, clock())
    assert kept in updated.ids
    assert updated.latest_date_covered == clock().replace(second=0)
    deleted = await org.client.get_deleted("Lead", start, clock())
    assert [d.id for d in deleted.records] == [gone]
    assert deleted.records[0].deleted_date.tzinfo == UTC
    assert deleted.earliest_date_available is not None
    assert deleted.earliest_date_available <= start
    with pytest.raises(errors.PermanentAPIError):
        await org.client.get_updated("Lead", clock() - timedelta(days=31), clock())
    with pytest.raises(ValueError, match="timezone-aware"):
        await org.client.get_updated("Lead", datetime(2026, 1, 1), clock())


async def test_describe_limits_and_usage_tracking(org: Org) -> None:
    assert org.client.usage is None
    described = await org.client.describe("Lead")
    names = {f["name"] for f in described["fields"]}
    assert {"Email", "Company", "SystemModstamp", "OwnerId"} <= names
    limits = await org.client.limits()
    assert limits["DailyApiRequests"]["Max"] == org.sim.daily_api_limit
    usage = org.client.usage
    assert usage is not None
    assert (usage.used, usage.limit) == (org.sim.api_usage, org.sim.daily_api_limit)
    assert [c.outcome for c in org.calls] == ["ok", "ok"]
    assert {c.system for c in org.calls} == {"salesforce"}
    assert org.calls[0].path.endswith("/sobjects/Lead/describe")
    with pytest.raises(errors.PermanentAPIError) as caught:
        await org.client.describe("NoSuchObject")
    assert caught.value.code == "NOT_FOUND"


async def test_daily_limit_is_budget_exhaustion_and_not_retried(clock: ManualClock) -> None:
    o = await make_org(clock, daily_api_limit=2)
    try:
        await o.client.limits()
        await o.client.limits()
        with pytest.raises(errors.BudgetExhaustedError) as caught:
            await o.client.limits()
        assert caught.value.code == "REQUEST_LIMIT_EXCEEDED" and caught.value.status == 403
        assert o.requests("GET", "/limits") == 3  # not hot-retried
        assert o.client.usage is not None and o.client.usage.used == o.client.usage.limit == 2
        assert o.calls[-1].outcome == "budget"
        with pytest.raises(errors.BudgetExhaustedError):
            await o.client.create("Lead", lead(1))
        assert o.sim.records("Lead") == []
    finally:
        await o.aclose()


# faults


async def test_server_errors_are_retried(clock: ManualClock) -> None:
    o = await make_org(
        clock,
        faults=Faults(error_rate=0.3, seed=7),
        retry=RetryPolicy(max_attempts=10, base_delay_s=0.001, max_delay_s=0.002),
        leads=[lead(i) for i in range(30)],
    )
    try:
        for _ in range(10):
            assert await o.client.count("SELECT COUNT() FROM Lead") == 30
        ids = [r["Id"] for r in await o.client.query_all("SELECT Id FROM Lead")]
        for rid in ids[:10]:
            await o.client.update("Lead", rid, {"Title": "retried"})
        faults = o.sim.counters.faults
        assert faults["http_500"] + faults["http_503"] > 0
        assert all(o.sim.get("Lead", rid)["Title"] == "retried" for rid in ids[:10])
        assert any(c.outcome == "retriable" for c in o.calls)
    finally:
        await o.aclose()


async def test_burst_limits_are_retried_even_for_creates(clock: ManualClock) -> None:
    o = await make_org(
        clock,
        faults=Faults(rate_limit_rate=0.4, seed=3),
        retry=RetryPolicy(max_attempts=10, base_delay_s=0.001, max_delay_s=0.002),
    )
    try:
        for i in range(10):
            await o.client.create("Lead", lead(i))
        assert o.sim.counters.faults["rate_limited"] > 0
        assert len(o.sim.records("Lead")) == 10  # refused requests were never applied
    finally:
        await o.aclose()


async def test_lost_responses_on_updates_and_deletes_are_retried_safely(clock: ManualClock) -> None:
    o = await make_org(
        clock,
        faults=Faults(lost_response_rate=0.4, seed=11),
        retry=RetryPolicy(max_attempts=12, base_delay_s=0.001, max_delay_s=0.002),
        leads=[lead(i) for i in range(20)],
    )
    try:
        ids = sorted(r["Id"] for r in o.sim.records("Lead"))
        for rid in ids[:10]:
            await o.client.update("Lead", rid, {"Title": "patched"})
        for rid in ids[10:15]:
            await o.client.delete("Lead", rid)
        updated = await o.client.update_many("Lead", [{"Id": rid, "City": "Oslo"} for rid in ids])
        assert [r.success for r in updated] == [True] * 10 + [False] * 5 + [True] * 5
        results = await o.client.delete_many(ids[15:])
        assert all(r.success for r in results)
        assert o.requests("PATCH", "/composite/sobjects") >= 1
        faults = o.sim.counters.faults
        assert faults["lost_502"] + faults["lost_dropped"] > 0
        assert all(o.sim.get("Lead", rid)["Title"] == "patched" for rid in ids[:10])
        assert all(o.sim.get("Lead", rid)["City"] == "Oslo" for rid in ids[:10])
        assert len(o.sim.records("Lead")) == 10
    finally:
        await o.aclose()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_lost_response_on_create_raises_without_a_second_create(
    clock: ManualClock, seed: int
) -> None:
    o = await make_org(clock, faults=Faults(lost_response_rate=1.0, seed=seed))
    try:
        with pytest.raises(errors.RetriableAPIError) as caught:
            await o.client.create("Lead", lead(1))
        assert "re-match" in caught.value.message
        assert o.requests("POST", "/sobjects/Lead") == 1
        assert len(o.sim.records("Lead")) == 1  # it was applied: resending would duplicate it
        with pytest.raises(errors.RetriableAPIError):
            await o.client.create_many("Lead", [lead(i) for i in range(2, 5)])
        assert o.requests("POST", "/composite/sobjects") == 1
        assert len(o.sim.records("Lead")) == 4
    finally:
        await o.aclose()


async def test_create_many_keeps_results_of_chunks_that_got_through(clock: ManualClock) -> None:
    o = await make_org(clock, faults=Faults(lost_response_rate=0.5, seed=5))
    try:
        results = await o.client.create_many("Lead", [lead(i) for i in range(1000)])
        assert len(results) == 1000
        lost = [r for r in results if not r.success]
        saved = [r for r in results if r.success]
        assert lost and saved
        assert all(r.retriable and r.id is None for r in lost)
        assert o.requests("POST", "/composite/sobjects") == 5  # no chunk sent twice
        assert len(o.sim.records("Lead")) == 1000  # lost answers: saved, outcome unknown
        assert {r.id for r in saved} <= {r["Id"] for r in o.sim.records("Lead")}
    finally:
        await o.aclose()


async def test_no_secret_or_token_in_errors(clock: ManualClock) -> None:
    o = await make_org(clock, daily_api_limit=1)
    try:
        await o.client.limits()
        with pytest.raises(errors.BudgetExhaustedError) as caught:
            await o.client.limits()
        token = await o.auth.token()
        assert token not in str(caught.value) and CLIENT_SECRET not in str(caught.value)
    finally:
        await o.aclose()


# answers a real org should never give, but proxies and outages do (tiny fake APIs)


Canned = tuple[int, bytes, str] | tuple[int, bytes, str, dict[str, str]]


def fake_api(pages: dict[str, Canned]) -> Any:
    """An ASGI app with a token endpoint and canned answers by path (fakes the API, not syncd)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        if path == "/services/oauth2/token":
            extra = {}
            status, body, ctype = (
                200,
                json.dumps(
                    {
                        "access_token": "00Dfake!token-value-0001",
                        "instance_url": "https://fake.my.salesforce.com",
                        "id": "https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA",
                        "token_type": "Bearer",
                        "issued_at": "1767600000000",
                    }
                ).encode(),
                "application/json",
            )
        else:
            status, body, ctype, *more = pages.get(
                path, (404, b'[{"errorCode":"NOT_FOUND","message":"x"}]', "application/json")
            )
            extra = more[0] if more else {}
        headers = [(b"content-type", ctype.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def fake_client(app: Any) -> tuple[SalesforceAuth, SalesforceClient]:
    settings = SalesforceSettings(
        auth_flow="client_credentials", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    auth = SalesforceAuth(settings, transport=httpx.ASGITransport(app=app), retry=FAST)
    client = SalesforceClient(
        auth,
        transport=httpx.ASGITransport(app=app),
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.001),
    )
    return auth, client


Q = "/services/data/v60.0/query"


def page(records: list[dict[str, Any]], next_url: str | None) -> tuple[int, bytes, str]:
    body: dict[str, Any] = {"totalSize": 99, "done": next_url is None, "records": records}
    if next_url:
        body["nextRecordsUrl"] = next_url
    return 200, json.dumps(body).encode(), "application/json"


async def test_a_repeating_next_records_url_is_a_paging_loop() -> None:
    loop_url = f"{Q}/01gXX0000000001AAA-2000"
    app = fake_api({Q: page([{"Id": "1"}], loop_url), loop_url: page([{"Id": "2"}], loop_url)})
    auth, client = await fake_client(app)
    async with auth, client:
        seen = []
        with pytest.raises(errors.PagingLoopError):
            async for record in client.query("SELECT Id FROM Lead"):
                seen.append(record["Id"])
        assert seen == ["1", "2"]
        assert client.calls_made == 2


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        ((200, b"<html><body>Maintenance</body></html>", "text/html"), "HTML"),
        ((200, b'{"totalSize":1,"done":true,"records":[{"Id"', "application/json"), "truncated"),
        ((200, b'{"totalSize":1,"done":true}', "application/json"), "records"),
        ((200, b'{"totalSize":1,"records":[]}', "application/json"), "done"),
        ((200, b'{"totalSize":"1","done":true,"records":[]}', "application/json"), "totalSize"),
        ((200, b'{"totalSize":1,"done":false,"records":[]}', "application/json"), "nextRecordsUrl"),
        ((200, b"[1,2]", "application/json"), "object"),
        ((403, b"<html>Forbidden by proxy</html>", "text/html"), "HTML"),
        ((500, b"", "text/plain"), "empty"),
    ],
)
async def test_malformed_answers_are_retriable_bad_response(
    answer: tuple[int, bytes, str], what: str
) -> None:
    auth, client = await fake_client(fake_api({Q: answer}))
    async with auth, client:
        with pytest.raises(errors.RetriableAPIError) as caught:
            await client.query_all("SELECT Id FROM Lead")
        assert caught.value.code == "BAD_RESPONSE"
        assert what.lower() in caught.value.message.lower()
        assert client.calls_made == 2  # retried like any transient failure


LOCKED = (
    b'[{"message":"unable to obtain exclusive access to this record",'
    b'"errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]'
)


async def test_unable_to_lock_row_is_retriable() -> None:
    auth, client = await fake_client(fake_api({Q: (400, LOCKED, "application/json")}))
    async with auth, client:
        with pytest.raises(errors.RetriableAPIError) as caught:
            await client.query_all("SELECT Id FROM Lead")
    assert caught.value.code == "UNABLE_TO_LOCK_ROW"
    assert client.calls_made == 2


async def test_retry_after_is_carried_to_the_retry_policy() -> None:
    body = b'[{"errorCode":"SERVER_UNAVAILABLE","message":"Server Unavailable"}]'
    answer = (
        503,
        body,
        "application/json",
        {"Retry-After": "0", "Sforce-Limit-Info": "api-usage=7/15000"},
    )
    auth, client = await fake_client(fake_api({Q: answer}))
    async with auth, client:
        with pytest.raises(errors.RetriableAPIError) as caught:
            await client.query_all("SELECT Id FROM Lead")
        assert caught.value.code == "SERVER_UNAVAILABLE" and caught.value.status == 503
        assert caught.value.retry_after_s == 0.0
        assert client.usage is not None and (client.usage.used, client.usage.limit) == (7, 15000)


async def test_a_second_401_is_an_auth_error() -> None:
    body = b'[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]'
    auth, client = await fake_client(fake_api({Q: (401, body, "application/json")}))
    async with auth, client:
        with pytest.raises(errors.AuthError) as caught:
            await client.query_all("SELECT Id FROM Lead")
        assert caught.value.code == "INVALID_SESSION_ID"
        assert "API Enabled" in caught.value.message
        assert client.calls_made == 2 and auth.logins == 2  # one renewal, then give up


class FlakyNetwork(httpx.AsyncBaseTransport):
    """The network in front of the simulator: fails the next requests with the given errors."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.failures: list[Exception] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures and "/services/data/" in request.url.path:
            raise self.failures.pop(0)
        return await self.inner.handle_async_request(request)


async def test_timeouts_and_refused_connections(clock: ManualClock) -> None:
    sim = SalesforceSimulator(sf_seed(), tokens=TokenRegistry(clock), clock=clock)
    net = FlakyNetwork(sim.app)
    settings = SalesforceSettings(
        auth_flow="client_credentials", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    async with (
        SalesforceAuth(settings, transport=net, retry=FAST) as auth,
        SalesforceClient(auth, transport=net, retry=FAST) as client,
    ):
        # reads retry through timeouts
        net.failures = [httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow")]
        assert await client.count("SELECT COUNT() FROM Lead") == 0
        # a create whose connection was refused was never sent: retried, created once
        net.failures = [httpx.ConnectError("refused")]
        await client.create("Lead", lead(1))
        assert len(sim.records("Lead")) == 1
        # a create that timed out waiting for its answer may have been applied: not resent
        net.failures = [httpx.ReadTimeout("slow")]
        with pytest.raises(errors.RetriableAPIError) as caught:
            await client.create("Lead", lead(2))
        assert caught.value.code == "TIMEOUT" and caught.value.status is None
        assert "re-match" in caught.value.message
        # reads that never get through end as a retriable error, not a crash
        net.failures = [httpx.ReadTimeout("slow")] * FAST.max_attempts
        with pytest.raises(errors.RetriableAPIError, match="TIMEOUT"):
            await client.limits()
