"""The shared HTTP plumbing: retry policy decisions and answer reading."""

from __future__ import annotations

import httpx
import pytest

from syncd import errors
from syncd.clients.http import RetryPolicy, read_json


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
