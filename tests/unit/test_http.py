"""The shared HTTP plumbing: retry policy decisions, answer reading, the one call chain."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from syncd import errors
from syncd.clients.http import (
    CallChain,
    CallRecord,
    Classified,
    RetryPolicy,
    build_http_client,
    read_json,
)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "rand", "expected"),
    [
        (1, None, 1.0, 0.5),
        (2, None, 1.0, 1.0),
        (3, None, 0.5, 1.0),
        (10, None, 1.0, 30.0),
        (1, 7.0, 0.1, 7.0),
        (1, 999.0, 0.1, 30.0),
    ],
    ids=["first", "second", "jitter", "capped", "retry-after", "retry-after-capped"],
)
def test_delay(attempt: int, retry_after: float | None, rand: float, expected: float) -> None:
    assert RetryPolicy().delay_s(attempt, retry_after, rand) == pytest.approx(expected)


async def test_retries_retriable_then_succeeds() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise errors.RetriableAPIError("pardot", 503, "503", "unavailable")
        return "ok"

    assert await RetryPolicy(base_delay_s=0.001).call(flaky) == "ok"
    assert calls == 3


@pytest.mark.parametrize(
    "exc",
    [
        errors.PermanentAPIError("salesforce", 400, "REQUIRED_FIELD_MISSING", "LastName"),
        errors.BudgetExhaustedError("salesforce", 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests"),
    ],
    ids=["permanent", "budget"],
)
async def test_does_not_retry(exc: errors.APIError) -> None:
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(type(exc)):
        await RetryPolicy(base_delay_s=0.001).call(fail)
    assert calls == 1


async def test_gives_up_after_max_attempts() -> None:
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise errors.RetriableAPIError("pardot", 500, "500", "boom")

    with pytest.raises(errors.RetriableAPIError):
        await RetryPolicy(max_attempts=4, base_delay_s=0.001).call(fail)
    assert calls == 4


@pytest.mark.parametrize(
    ("body", "ctype", "words"),
    [
        (b"<!DOCTYPE html><html><body>Bad Gateway</body></html>", "text/html", "HTML page"),
        (b'{"values": [1, 2', "application/json", "truncated JSON"),
        (b"", "application/json", "empty body"),
    ],
    ids=["html", "truncated", "empty"],
)
def test_read_json_explains_bad_answers(body: bytes, ctype: str, words: str) -> None:
    resp = httpx.Response(502, content=body, headers={"content-type": ctype})
    with pytest.raises(errors.RetriableAPIError) as err:
        read_json("pardot", resp)
    assert err.value.code == "BAD_RESPONSE"
    assert words in str(err.value)


# -- the one call chain of both clients -----------------------------------------------------------


class Tokens:
    """A TokenSource handing out numbered tokens; `refresh` issues the next one."""

    def __init__(self) -> None:
        self.issued = 1
        self.refreshes = 0

    async def token(self) -> str:
        return f"t{self.issued}"

    async def refresh(self, stale: str) -> str:
        self.refreshes += 1
        if stale == f"t{self.issued}":
            self.issued += 1
        return f"t{self.issued}"


def _classify(response: httpx.Response) -> Classified:
    status = response.status_code
    if status == 401:
        return errors.AuthError("pardot", 401, "184", "invalid token"), True
    if status == 403:
        return errors.BudgetExhaustedError("pardot", 403, "122", "Daily API rate limit met"), True
    if status >= 500:
        return errors.RetriableAPIError("pardot", status, "183", "internal error"), False
    return errors.PermanentAPIError("pardot", status, str(status), "refused"), False


def chain_over(
    answers: list[int | Exception], hooks: list[Any] | None = None, tokens: Tokens | None = None
) -> tuple[CallChain, Tokens, list[str]]:
    """A CallChain over a fake API answering `answers` in order; what it saw, with tokens."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.headers.get('authorization')}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"ok": answer < 300})

    tokens = tokens or Tokens()
    client = build_http_client("http://api.test", transport=httpx.MockTransport(handle))
    chain = CallChain(
        system="pardot",
        client=client,
        tokens=tokens,
        is_stale=lambda r: r.status_code == 401,
        classify=_classify,
        retry=RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.001),
        route=lambda path: path,
        hooks=hooks if hooks is not None else [],
    )
    return chain, tokens, seen


async def _call(chain: CallChain, method: str = "GET", *, idempotent: bool = True) -> Any:
    async def build() -> httpx.Request:
        return httpx.Request(method, "http://api.test/things/1")

    return await chain.call(build, read=lambda r, n: r.json(), idempotent=idempotent)


async def test_a_stale_token_is_renewed_once_per_call_across_retries() -> None:
    chain, tokens, seen = chain_over([401, 503, 401])
    with pytest.raises(errors.AuthError):
        await _call(chain)
    # renewed after the first 401; the retry after the 503 is refused again: no second renewal
    assert seen == ["GET Bearer t1", "GET Bearer t2", "GET Bearer t2"]
    assert tokens.refreshes == 1

    chain, tokens, seen = chain_over([401, 200])
    assert await _call(chain) == {"ok": True}
    assert seen == ["GET Bearer t1", "GET Bearer t2"]


async def test_every_exchange_reaches_every_hook() -> None:
    budget: list[CallRecord] = []
    metrics: list[CallRecord] = []
    chain, _, _ = chain_over([401, 503, 200, httpx.ConnectError("refused"), 200], [budget.append])
    chain.hooks.append(metrics.append)  # registered later, like the daemon's metrics
    await _call(chain)
    await _call(chain)
    outcomes = ["auth", "retriable", "ok", "transport", "ok"]
    assert [r.outcome for r in budget] == outcomes
    assert metrics == budget
    assert chain.calls_made == 5
    assert {(r.system, r.method, r.path) for r in budget} == {("pardot", "GET", "/things/1")}
    assert [r.status for r in budget] == [401, 503, 200, None, 200]


async def test_a_write_is_never_resent_blindly() -> None:
    # the answer was lost after sending: the POST may have been applied
    chain, _, seen = chain_over([httpx.ReadTimeout("slow"), 201])
    with pytest.raises(errors.RetriableAPIError) as info:
        await _call(chain, "POST", idempotent=False)
    assert len(seen) == 1 and "may have been applied" in info.value.message
    # a 5xx answer: the same
    chain, _, seen = chain_over([500, 201])
    with pytest.raises(errors.RetriableAPIError):
        await _call(chain, "POST", idempotent=False)
    assert len(seen) == 1
    # the connection was never made: nothing was sent, so it is sent again
    chain, _, seen = chain_over([httpx.ConnectError("refused"), 201])
    assert await _call(chain, "POST", idempotent=False) == {"ok": True}
    assert len(seen) == 2


async def test_a_spent_budget_is_not_retried_and_is_no_api_error() -> None:
    records: list[CallRecord] = []
    chain, _, seen = chain_over([403, 200], [records.append])
    with pytest.raises(errors.BudgetExhaustedError) as info:
        await _call(chain)
    assert not isinstance(info.value, errors.APIError)
    assert len(seen) == 1 and [r.outcome for r in records] == ["budget"]


async def test_token_source_failures_are_not_retried_again() -> None:
    class Down(Tokens):
        calls = 0

        async def token(self) -> str:
            self.calls += 1
            raise errors.RetriableAPIError("salesforce", 503, "HTTP_503", "token endpoint down")

    down = Down()
    chain, _, seen = chain_over([200], tokens=down)
    with pytest.raises(errors.RetriableAPIError, match="token endpoint down"):
        await _call(chain)
    assert down.calls == 1 and seen == []  # the token source retried already: not multiplied
