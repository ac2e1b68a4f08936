"""PardotClient against the Pardot simulator (httpx.ASGITransport) and small fakes of the API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncd import errors
from syncd.clients.http import NO_RETRY, CallRecord, RetryPolicy
from syncd.clients.pardot import PardotClient, format_datetime, parse_datetime
from syncd.simulators._base import Faults, ManualClock, TokenRegistry
from syncd.simulators.pardot import PardotSimulator

BU = "0Uv000000000042AAA"
FAST = RetryPolicy(max_attempts=8, base_delay_s=0.001, max_delay_s=0.005)
SF_USER = "005000000000001AAA"
SF_ORG = "00D000000000001AAA"


class RegistryTokens:
    """A TokenSource that asks the shared TokenRegistry for tokens (as the Salesforce OAuth
    token manager would ask the Salesforce simulator)."""

    def __init__(self, registry: TokenRegistry, *, refresh_ok: bool = True) -> None:
        self.registry = registry
        self.refresh_ok = refresh_ok
        self.current: str | None = None
        self.refreshes = 0

    async def token(self) -> str:
        if self.current is None:
            self.current = self.registry.issue(SF_USER, SF_ORG).token
        return self.current

    async def refresh(self, stale: str) -> str:
        self.refreshes += 1
        if self.current == stale:
            self.current = (
                self.registry.issue(SF_USER, SF_ORG).token if self.refresh_ok else "00D!refused"
            )
        assert self.current is not None
        return self.current


def seed(n: int = 10, **extra: Any) -> dict[str, Any]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "business_unit_id": BU,
        "users": [
            {
                "id": 1,
                "email": "ann@acme.example",
                "username": "ann@acme.example",
                "salesforceId": SF_USER,
            },
            {"id": 2, "email": "bob@acme.example", "username": "bob@acme.example"},
        ],
        "prospects": [
            {
                "id": 1000 + i,
                "email": f"p{i}@example.com",
                "userId": 1,
                "updatedAt": (base + timedelta(seconds=i)).isoformat(),
            }
            for i in range(n)
        ],
        "emails": [
            {
                "id": 5001 + i,
                "prospectId": 1000 + i % max(n, 1),
                "subject": f"S{i}",
                "sentAt": (base + timedelta(hours=i)).isoformat(),
            }
            for i in range(5 if n else 0)
        ],
        **extra,
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))


def make(
    sim: PardotSimulator,
    *,
    retry: RetryPolicy = FAST,
    tokens: RegistryTokens | None = None,
    business_unit_id: str = BU,
    max_concurrency: int = 5,
    calls: list[CallRecord] | None = None,
) -> tuple[PardotClient, RegistryTokens]:
    source = tokens or RegistryTokens(sim.tokens)
    client = PardotClient(
        base_url="http://pi.test",
        business_unit_id=business_unit_id,
        tokens=source,
        transport=httpx.ASGITransport(app=sim.app),
        retry=retry,
        max_concurrency=max_concurrency,
        on_call=calls.append if calls is not None else None,
    )
    return client, source


def simulator(
    clock: ManualClock, data: dict[str, Any], faults: Faults | None = None
) -> PardotSimulator:
    return PardotSimulator(data, clock=clock, tokens=TokenRegistry(clock), faults=faults)


async def collect(it: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row async for row in it]


# ----- the prospect feed ------------------------------------------------------------------------


async def test_iter_prospects_pages_through_2500(clock: ManualClock) -> None:
    sim = simulator(clock, seed(2500))
    client, _ = make(sim)
    async with client:
        rows = await collect(client.iter_prospects(["email"], page_size=1000))
    assert [r["id"] for r in rows] == list(range(1000, 3500))
    assert set(rows[0]) == {"email", "id", "updatedAt"}
    assert client.calls_made == 3
    assert sim.counters.count("GET", "prospects") == 3


async def test_iter_prospects_from_a_time_and_deleted(clock: ManualClock) -> None:
    sim = simulator(clock, seed(10))
    client, _ = make(sim)
    async with client:
        await client.delete_prospect(1008)
        since = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
        rows = await collect(client.iter_prospects(["id"], updated_since=since))
        assert [r["id"] for r in rows] == [1005, 1006, 1007, 1009]
        rows = await collect(
            client.iter_prospects(["isDeleted"], updated_since=since, deleted="all")
        )
        assert [(r["id"], r["isDeleted"]) for r in rows][-1] == (1008, True)


async def test_positive_utc_offsets_are_url_encoded(clock: ManualClock) -> None:
    sim = simulator(clock, seed(10, timezone="+05:30"))
    client, _ = make(sim)
    async with client:
        since = datetime.fromisoformat("2026-01-01T05:30:07+05:30")  # 00:00:07 UTC
        rows = await collect(client.iter_prospects(["id"], updated_since=since))
    assert [r["id"] for r in rows] == [1007, 1008, 1009]
    assert rows[0]["updatedAt"].endswith("+05:30")


def tie_seed(n: int, tie: range, cap: int) -> dict[str, Any]:
    """`n` prospects; those with an index in `tie` share one updatedAt."""
    data = seed(n, page_token_record_cap=cap)
    shared = datetime(2026, 1, 1, 0, 30, tzinfo=UTC).isoformat()
    for i in tie:
        data["prospects"][i]["updatedAt"] = shared
    return data


@pytest.mark.parametrize(
    ("n", "tie", "cap", "page"),
    [
        (60, range(0), 10, 4),  # no ties: plain restarts from the last updatedAt
        (60, range(20, 28), 10, 4),  # a tie smaller than the cap, straddling a restart
        (90, range(10, 55), 10, 4),  # 45 records share one instant: more than a chain holds
        (50, range(50), 7, 3),  # every record shares one instant
    ],
)
async def test_restart_across_the_record_cap_yields_each_once(
    clock: ManualClock, n: int, tie: range, cap: int, page: int
) -> None:
    sim = simulator(clock, tie_seed(n, tie, cap))
    client, _ = make(sim)
    async with client:
        rows = await collect(client.iter_prospects(["email"], page_size=page))
    ids = [r["id"] for r in rows]
    assert sorted(ids) == list(range(1000, 1000 + n))
    assert len(ids) == len(set(ids))
    times = [parse_datetime(r["updatedAt"]) for r in rows]
    assert times == sorted(times)


async def test_a_shared_instant_is_read_by_id_while_writes_move_rows_out_of_it(
    clock: ManualClock,
) -> None:
    """A bulk load stamps every prospect with one second; syncd's workers then write back
    prospects the feed already read, moving them out of that second, while the first read
    goes on. A new chain started at that second again re-reads every row still in it and
    yields only as many new ones as were moved meanwhile: the read crawls. A chain that
    began and ended at one second is followed by a read of that second by id instead."""
    n, cap, page = 90, 7, 3  # a chain holds 9 rows (cap rounded up to whole pages)
    sim = simulator(clock, tie_seed(n, range(n), cap))
    client, _ = make(sim)
    clock.advance(seconds=5)  # writes land after the shared instant
    first: list[int] = []
    again: list[int] = []
    moved = 0
    async with client:
        async for row in client.iter_prospects(["email"], page_size=page):
            if row["id"] in first:
                again.append(row["id"])  # a moved row, read again with its new updatedAt
                continue
            first.append(row["id"])
            # The workers write back one prospect the feed read per page the feed reads.
            while moved < min(sim.counters.count("GET", "prospects"), len(first) - 1):
                sim.edit_prospect(first[moved], {"city": "Oslo"})
                moved += 1
    assert sorted(first) == list(range(1000, 1000 + n))
    assert sorted(again) == sorted(first[:moved])
    # The crawl read about one new row a page (90 pages and more for the instant); by id it
    # takes 30 pages (9 rows a chain), after two chains from the instant.
    assert sim.counters.count("GET", "prospects") <= 6 + 30 + 30


async def test_expired_page_token_restarts_the_chain(clock: ManualClock) -> None:
    sim = simulator(clock, seed(12))
    client, _ = make(sim)
    seen: list[int] = []
    async with client:
        async for row in client.iter_prospects(["id"], page_size=4):
            seen.append(row["id"])
            if len(seen) == 4:
                clock.advance(hours=5)  # the token in hand expires (code 210)
    assert seen == list(range(1000, 1012))


async def test_changed_rows_come_again_with_new_data(clock: ManualClock) -> None:
    sim = simulator(clock, seed(6))
    client, _ = make(sim)
    seen: list[tuple[int, Any]] = []
    async with client:
        async for row in client.iter_prospects(["city"], page_size=2):
            seen.append((row["id"], row["city"]))
            if row["id"] == 1001:
                sim.edit_prospect(1000, {"city": "Oslo"})
    assert seen[-1] == (1000, "Oslo")
    assert sorted({i for i, _ in seen}) == list(range(1000, 1006))


# ----- single-record calls ----------------------------------------------------------------------


@pytest.mark.sends_read_only  # shows the client surfacing the refusal of a read-only field
async def test_prospect_crud_and_upsert(clock: ManualClock) -> None:
    sim = simulator(clock, seed(3))
    client, _ = make(sim)
    async with client:
        created = await client.create_prospect(
            {"email": "new@example.com", "firstName": "Ny"}, ["id", "email", "createdAt"]
        )
        pid = created["id"]
        assert parse_datetime(created["createdAt"]) == clock.now
        got = await client.get_prospect(pid, ["id", "firstName"])
        assert got == {"id": pid, "firstName": "Ny"}
        assert await client.update_prospect(pid, {"company": "Acme"}, ["company"]) == {
            "company": "Acme"
        }
        assert await client.update_prospect(pid, {"company": "Acme2"}, ()) == {}
        found = await client.find_prospects_by_email("NEW@example.com", ["company"])
        assert found == [{"company": "Acme2", "id": pid}]

        up = await client.upsert_prospect_by_email(
            "new@example.com", {"city": "Rome"}, ["id", "city"]
        )
        assert up == {"id": pid, "city": "Rome"}
        up2 = await client.upsert_prospect_by_email("other@example.com", {}, ["id", "email"])
        assert up2["email"] == "other@example.com" and up2["id"] != pid

        await client.delete_prospect(pid)
        await client.delete_prospect(pid)  # already in the recycle bin: done
        assert await client.get_prospect(pid, ["id"]) is None
        assert await client.get_prospect(424242, ["id"]) is None
        with pytest.raises(errors.PermanentAPIError) as info:
            await client.update_prospect(pid, {"company": "X"})
        assert info.value.code == "219"
        with pytest.raises(errors.PermanentAPIError) as info:
            await client.update_prospect(1000, {"updatedAt": "2026-01-01T00:00:00Z"})
        assert info.value.code == "180" and "updatedAt" in info.value.message
        with pytest.raises(errors.PermanentAPIError) as info:
            await client.create_prospect({"email": "bad"}, ["id"])
        assert info.value.code == "4"


async def test_users_and_emails(clock: ManualClock) -> None:
    sim = simulator(clock, seed(3))
    client, _ = make(sim)
    async with client:
        users = await client.list_users()
        assert [(u["id"], u["salesforceId"]) for u in users] == [(1, SF_USER), (2, None)]
        emails = await collect(client.iter_emails(["prospectId", "subject", "sentAt"]))
        assert [e["id"] for e in emails] == [5001, 5002, 5003, 5004, 5005]
        emails = await collect(client.iter_emails(["subject"], after_id=5003))
        assert [e["id"] for e in emails] == [5004, 5005]
        since = datetime(2026, 1, 1, 1, tzinfo=UTC)
        emails = await collect(client.iter_emails(["subject"], after_id=5001, sent_since=since))
        assert [e["id"] for e in emails] == [5002, 5003, 5004, 5005]


async def test_emails_resume_by_id_across_the_record_cap(clock: ManualClock) -> None:
    data = seed(3, page_token_record_cap=5)
    data["emails"] = [
        {"id": 7000 + i, "prospectId": 1000, "subject": "s", "sentAt": "2026-01-02T00:00:00Z"}
        for i in range(2500)
    ]
    sim = simulator(clock, data)
    client, _ = make(sim)
    async with client:
        emails = await collect(client.iter_emails(["subject"]))
    assert [e["id"] for e in emails] == list(range(7000, 9500))


# ----- tokens, limits, faults -------------------------------------------------------------------


async def test_refused_token_is_renewed_once(clock: ManualClock) -> None:
    sim = simulator(clock, seed(3))
    calls: list[CallRecord] = []
    client, tokens = make(sim, calls=calls)
    async with client:
        assert await client.get_prospect(1000, ["id"]) == {"id": 1000}
        sim.tokens.expire_all()
        assert await client.get_prospect(1001, ["id"]) == {"id": 1001}
    assert tokens.refreshes == 1
    assert [c.outcome for c in calls] == ["ok", "auth", "ok"]
    assert calls[0].path == "/api/v5/objects/prospects/{id}"


async def test_a_second_refusal_is_an_auth_error(clock: ManualClock) -> None:
    sim = simulator(clock, seed(3))
    tokens = RegistryTokens(sim.tokens, refresh_ok=False)
    client, _ = make(sim, tokens=tokens)
    async with client:
        await tokens.token()
        sim.tokens.expire_all()
        with pytest.raises(errors.AuthError) as info:
            await client.get_prospect(1000, ["id"])
    assert info.value.code == "184" and "pardot_api scope" in info.value.message
    assert "00D" not in str(info.value)  # no token in the message
    assert tokens.refreshes == 1


@pytest.mark.parametrize(
    ("bu", "code", "hint"),
    [("0Uv000000000099AAA", "201", "pardot.business_unit_id"), ("nope", "182", "0Uv")],
)
async def test_business_unit_errors_name_the_setting(
    clock: ManualClock, bu: str, code: str, hint: str
) -> None:
    sim = simulator(clock, seed(1))
    client, _ = make(sim, business_unit_id=bu)
    async with client:
        with pytest.raises(errors.AuthError) as info:
            await client.list_users()
    assert info.value.code == code and hint in info.value.message
    assert client.calls_made == 1  # not retried


async def test_concurrency_cap_is_respected(clock: ManualClock) -> None:
    sim = simulator(clock, seed(20), Faults(latency_ms=20))
    client, _ = make(sim, retry=NO_RETRY, max_concurrency=5)
    async with client:
        rows = await asyncio.gather(*(client.get_prospect(1000 + i, ["id"]) for i in range(20)))
    assert [r["id"] for r in rows if r] == list(range(1000, 1020))
    assert sim.counters.faults["concurrent_limit"] == 0


async def test_concurrency_limit_answers_are_retried(clock: ManualClock) -> None:
    sim = simulator(clock, seed(20), Faults(latency_ms=20))
    patient = RetryPolicy(max_attempts=20, base_delay_s=0.01, max_delay_s=0.05)
    client, _ = make(sim, max_concurrency=5, retry=patient)
    other, _ = make(sim, max_concurrency=5, retry=patient)  # a second process, same unit
    async with client, other:
        rows = await asyncio.gather(
            *(c.get_prospect(1000 + i, ["id"]) for i in range(10) for c in (client, other))
        )
    assert all(rows)
    assert sim.counters.faults["concurrent_limit"] > 0  # 66s happened, and were retried


async def test_injected_faults_are_retried(clock: ManualClock) -> None:
    faults = Faults(error_rate=0.3, rate_limit_rate=0.2, seed=7)
    sim = simulator(clock, seed(300), faults)
    calls: list[CallRecord] = []
    client, _ = make(
        sim, retry=RetryPolicy(max_attempts=12, base_delay_s=0.001, max_delay_s=0.002), calls=calls
    )
    async with client:
        rows = await collect(client.iter_prospects(["email"], page_size=20))
        await client.update_prospect(1000, {"city": "Bergen"})
    assert sorted(r["id"] for r in rows) == list(range(1000, 1300))
    assert {c.outcome for c in calls} == {"ok", "retriable"}
    assert sim.counters.faults["http_500"] and sim.counters.faults["rate_limited"]
    assert client.calls_made == len(calls)


async def test_daily_limit_raises_budget_exhausted(clock: ManualClock) -> None:
    sim = simulator(clock, seed(3, daily_api_limit=2))
    client, _ = make(sim)
    async with client:
        await client.get_prospect(1000, ["id"])
        await client.get_prospect(1001, ["id"])
        with pytest.raises(errors.BudgetExhaustedError) as info:
            await client.get_prospect(1002, ["id"])
    assert info.value.code == "122"
    assert client.calls_made == 3  # never hot-retried


async def test_html_error_page_is_a_clear_retriable_error(clock: ManualClock) -> None:
    sim = simulator(clock, seed(3), Faults(error_rate=1.0, seed=2))
    client, _ = make(sim, retry=RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.001))
    async with client:
        with pytest.raises(errors.RetriableAPIError) as info:
            await client.list_users()
    assert info.value.status in (500, 503)
    assert client.calls_made == 3


# ----- fakes of the API for answers the simulator never gives ------------------------------------

Handler = Callable[[str, str, dict[str, str]], tuple[int, bytes, str]]


def fake_api(handler: Handler) -> tuple[Callable[..., Any], list[str]]:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        query = dict(httpx.QueryParams(scope["query_string"].decode()))
        seen.append(f"{scope['method']} {scope['path']}")
        status, body, ctype = handler(scope["method"], scope["path"], query)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app, seen


def fake_client(app: Callable[..., Any], retry: RetryPolicy = NO_RETRY) -> PardotClient:
    registry = TokenRegistry()
    return PardotClient(
        base_url="http://pi.test",
        business_unit_id=BU,
        tokens=RegistryTokens(registry),
        transport=httpx.ASGITransport(app=app),
        retry=retry,
    )


@pytest.mark.parametrize(
    ("body", "ctype", "needle"),
    [
        (b"<html><body>Service Unavailable</body></html>", "text/html", "HTML page"),
        (b'{"values": [{"id": 1', "application/json", "truncated JSON"),
        (b'{"items": []}', "application/json", "no 'values' list"),
        (b'{"values": [{"email": "x@y.z"}]}', "application/json", "has no 'id'"),
        (b'{"values": [], "nextPageToken": 5}', "application/json", "nextPageToken"),
        (b"[1, 2]", "application/json", "expected a JSON object"),
    ],
)
async def test_malformed_answers_are_clear_errors(body: bytes, ctype: str, needle: str) -> None:
    app, _ = fake_api(lambda m, p, q: (200, body, ctype))
    async with fake_client(app) as client:
        with pytest.raises(errors.RetriableAPIError) as info:
            await client.list_users()
    assert info.value.code == "BAD_RESPONSE" and needle in info.value.message


async def test_bad_updated_at_is_a_clear_error() -> None:
    page = json.dumps({"values": [{"id": 1, "updatedAt": "yesterday"}], "nextPageToken": None})
    app, _ = fake_api(lambda m, p, q: (200, page.encode(), "application/json"))
    async with fake_client(app) as client:
        with pytest.raises(errors.RetriableAPIError, match="updatedAt"):
            await collect(client.iter_prospects(["id"]))


async def test_a_repeating_page_token_stops_the_read() -> None:
    def handler(method: str, path: str, query: dict[str, str]) -> tuple[int, bytes, str]:
        n = int(query.get("nextPageToken", "t0")[1:])
        page = {
            "values": [{"id": n + 1, "updatedAt": "2026-01-01T00:00:00Z"}],
            "nextPageToken": "t1",
            "nextPageUrl": None,
        }
        return 200, json.dumps(page).encode(), "application/json"

    app, seen = fake_api(handler)
    async with fake_client(app) as client:
        with pytest.raises(errors.PagingLoopError):
            await collect(client.iter_prospects(["id"]))
    assert len(seen) == 2


async def test_a_create_is_not_resent_after_an_ambiguous_failure() -> None:
    app, seen = fake_api(
        lambda m, p, q: (500, b'{"code":183,"message":"internal"}', "application/json")
    )
    async with fake_client(app, retry=FAST) as client:
        with pytest.raises(errors.RetriableAPIError) as info:
            await client.create_prospect({"email": "a@b.co"}, ["id"])
    assert seen == ["POST /api/v5/objects/prospects"]
    assert "may have been applied" in info.value.message


async def test_a_create_refused_for_concurrency_is_resent() -> None:
    answers = [(429, b'{"code":66,"message":"concurrent"}'), (201, b'{"id":7}')]

    def handler(method: str, path: str, query: dict[str, str]) -> tuple[int, bytes, str]:
        status, body = answers.pop(0)
        return status, body, "application/json"

    app, seen = fake_api(handler)
    async with fake_client(app, retry=FAST) as client:
        assert await client.create_prospect({"email": "a@b.co"}, ["id"]) == {"id": 7}
    assert len(seen) == 2


async def test_other_answers_classified_by_code() -> None:
    answers = {
        "/api/v5/objects/users": (400, b'{"code":214,"message":"API request timed out."}'),
    }
    app, _ = fake_api(lambda m, p, q: (*answers[p], "application/json"))
    async with fake_client(app) as client:
        with pytest.raises(errors.RetriableAPIError) as info:
            await client.list_users()
    assert info.value.code == "214"


def test_datetime_helpers() -> None:
    assert parse_datetime("2024-05-01T10:22:33-04:00") == datetime(
        2024, 5, 1, 14, 22, 33, tzinfo=UTC
    )
    assert parse_datetime("2024-05-01T14:22:33Z").tzinfo is not None
    with pytest.raises(ValueError):
        parse_datetime("2024-05-01T10:22:33")
    assert (
        format_datetime(datetime(2024, 5, 1, 1, 2, 3, 999, tzinfo=UTC))
        == "2024-05-01T01:02:03+00:00"
    )
    with pytest.raises(ValueError):
        format_datetime(datetime(2024, 5, 1))


# ----- not found, unknown names, read-only fields (issue 11; wire-formats C.3a and C.6) ----------


def v5_answer(status: int, code: int, message: str) -> httpx.MockTransport:
    """A fake of the v5 API answering every request with one error body (`{"code", "message"}`)."""
    body = json.dumps({"code": code, "message": message}).encode()

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    return httpx.MockTransport(handle)


def mock_client(transport: httpx.MockTransport, calls: list[CallRecord]) -> PardotClient:
    return PardotClient(
        base_url="http://pi.test",
        business_unit_id=BU,
        tokens=RegistryTokens(TokenRegistry()),
        transport=transport,
        retry=FAST,
        on_call=calls.append,
    )


NOT_FOUND_ANSWERS = [
    pytest.param(404, 109, "The requested record was not found.", id="404-code-109"),
    pytest.param(404, 192, "Object specified does not exist", id="404-code-192"),
    pytest.param(400, 192, "Object specified does not exist", id="400-code-192"),
]


@pytest.mark.parametrize(("status", "code", "message"), NOT_FOUND_ANSWERS)
async def test_both_not_found_codes_mean_not_found(status: int, code: int, message: str) -> None:
    calls: list[CallRecord] = []
    async with mock_client(v5_answer(status, code, message), calls) as client:
        assert await client.get_prospect(1234, ["id", "email"]) is None
        await client.delete_prospect(1234)  # already gone counts as done
    assert len(calls) == 2  # neither is retried


@pytest.mark.parametrize(("status", "code", "message"), NOT_FOUND_ANSWERS)
async def test_not_found_on_an_update_is_a_permanent_error(
    status: int, code: int, message: str
) -> None:
    calls: list[CallRecord] = []
    async with mock_client(v5_answer(status, code, message), calls) as client:
        with pytest.raises(errors.PermanentAPIError) as info:
            await client.update_prospect(1234, {"city": "Oslo"})
    assert (info.value.code, info.value.message) == (str(code), message)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("code", "message", "call"),
    [
        pytest.param(
            51,
            "Invalid parameter: fields. It contains an invalid or unknown field: favoriteColor.",
            "read",
            id="51-unknown-field-in-fields",
        ),
        pytest.param(
            154, "Invalid property in request: favoriteColor", "write", id="154-unknown-property"
        ),
        pytest.param(
            154,
            "Invalid property in request: salesforceLeadId",
            "write",
            id="154-read-only-property",
        ),
        pytest.param(
            180,
            "One or more of the specified fields are invalid: read-only field grade",
            "write",
            id="180-read-only-field",
        ),
    ],
)
async def test_refused_names_are_permanent_with_the_message_kept(
    code: int, message: str, call: str
) -> None:
    """What the error queue shows is the API's own code and message, whole; never retried."""
    calls: list[CallRecord] = []
    async with mock_client(v5_answer(400, code, message), calls) as client:
        with pytest.raises(errors.PermanentAPIError) as info:
            if call == "read":
                await client.get_prospect(1234, ["id", "favoriteColor"])
            else:
                await client.update_prospect(1234, {"favoriteColor": "blue", "grade": "A"})
    assert type(info.value) is errors.PermanentAPIError
    assert info.value.code == str(code)
    assert info.value.message == message
    assert str(info.value) == f"pardot HTTP 400 {code}: {message}"
    assert [c.outcome for c in calls] == ["permanent"]


async def test_missing_prospect_in_the_simulator_is_not_found(clock: ManualClock) -> None:
    sim = simulator(clock, seed(2))
    client, _ = make(sim)
    async with client:
        assert await client.get_prospect(999_999, ["id"]) is None
        await client.delete_prospect(999_999)
