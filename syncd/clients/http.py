"""HTTP plumbing shared by the API clients: client factory, retry policy, answer reading.

The clients are the only code that knows URLs and JSON. They all build their `httpx.AsyncClient`
here (so a test or `syncd demo` can pass an `httpx.ASGITransport` around a simulator), retry with
the one policy below, and read answers with `read_json`, which turns an HTML error page or
truncated JSON into a clear `RetriableAPIError` instead of a crash.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import tenacity

from syncd import errors

T = TypeVar("T")

USER_AGENT = "syncd/0.1"


class TokenSource(Protocol):
    """Where a client gets its bearer token (Salesforce OAuth; Pardot uses the same token)."""

    async def token(self) -> str:
        """The current access token, fetching one first if there is none."""
        ...

    async def refresh(self, stale: str) -> str:
        """A new token after `stale` was refused (401); concurrent callers share one refresh."""
        ...


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP call made by a client: what the budget tracker and the metrics count."""

    system: str  # "salesforce" | "pardot"
    method: str
    path: str
    status: int | None  # None: no answer (timeout, reset)
    outcome: str  # "ok" | "retriable" | "permanent" | "budget" | "auth" | "transport"
    duration_s: float


CallObserver = Callable[[CallRecord], None]


def report_call(
    on_call: CallObserver | None,
    *,
    system: str,
    method: str,
    path: str,
    status: int | None,
    outcome: str,
    started: float,
) -> None:
    """Tell the observer (budget, metrics) about one call; `started` is a `time.monotonic()`."""
    if on_call is not None:
        on_call(
            CallRecord(
                system=system,
                method=method,
                path=path,
                status=status,
                outcome=outcome,
                duration_s=time.monotonic() - started,
            )
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Short retries inside one API call: exponential backoff with full jitter, bounded attempts.

    `Retry-After` (or an API's own hint, carried as `RetriableAPIError.retry_after_s`) is honoured
    when it asks for a longer wait than the backoff, capped at `max_delay_s`; anything longer is
    left to the queue, which re-runs the item later.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay_s(self, attempt: int, retry_after_s: float | None, rand: float) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1); pure."""
        backoff = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        delay: float = backoff * rand
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        return delay

    def retrying(self) -> tenacity.AsyncRetrying:
        """A tenacity controller retrying `RetriableAPIError` (not budget exhaustion)."""

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = exc.retry_after_s if isinstance(exc, errors.APIError) else None
            return self.delay_s(state.attempt_number, retry_after, random.random())

        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_is_retriable),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait,
            reraise=True,
        )

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` under this policy; the last error is re-raised when attempts run out."""
        async for attempt in self.retrying():
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity re-raises")  # pragma: no cover


def _is_retriable(exc: BaseException) -> bool:
    # A spent daily budget (BudgetExhaustedError, not an APIError) is never retried here: it
    # does not come back within seconds, the runtime pauses the side.
    return isinstance(exc, errors.RetriableAPIError)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class Transports:
    """Transports the API clients use instead of the network (None: the real network).

    `World.transports()` gives in-process ones for the simulators; production passes none.
    """

    salesforce: httpx.AsyncBaseTransport | None = None
    pardot: httpx.AsyncBaseTransport | None = None


def build_http_client(
    base_url: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout_s: float = 60.0,
    verify: bool = True,
    max_connections: int = 20,
) -> httpx.AsyncClient:
    """The one way syncd makes an httpx client: timeouts, pool limits, user agent, transport."""
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers={"User-Agent": USER_AGENT},
        verify=verify,
        follow_redirects=False,
    )


# The setting that names each system's host, for "no answer" errors.
_HOST_SETTING = {"salesforce": "salesforce.login_url", "pardot": "pardot.base_url"}


def transport_failure(system: str, exc: httpx.HTTPError) -> errors.RetriableAPIError:
    """A call that got no usable answer (timeout, reset, refused) as a retriable error.

    The message names the host that did not answer (scheme, host and port only: paths and
    queries may carry personal data) and the setting that points at it.
    """
    kind = "TIMEOUT" if isinstance(exc, httpx.TimeoutException) else "CONNECTION_FAILED"
    try:
        url = exc.request.url
        port = f":{url.port}" if url.port else ""
        where = f" from {url.scheme}://{url.host}{port}"
    except RuntimeError:  # no request attached
        where = ""
    hint = _HOST_SETTING.get(system)
    check = f"; check {hint} and the network" if hint else ""
    return errors.RetriableAPIError(
        system=system,
        status=None,
        code=kind,
        message=f"{type(exc).__name__}: no answer{where}{check}",
    )


def read_json(system: str, response: httpx.Response) -> Any:
    """The JSON body of `response`, or a `RetriableAPIError` naming what arrived instead.

    Proxies and load balancers answer with HTML error pages, and a dropped connection can truncate
    a body: both are transient from syncd's point of view, and the message says which it was.
    """
    ctype = response.headers.get("content-type", "")
    body = response.content
    if not body:
        raise errors.RetriableAPIError(
            system=system,
            status=response.status_code,
            code="BAD_RESPONSE",
            message="empty body where JSON was expected",
        )
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        head = body[:200].lstrip().lower()
        if "html" in ctype or head.startswith((b"<!doctype", b"<html")):
            what = "an HTML page"
        else:
            what = f"{len(body)} bytes of malformed or truncated JSON ({ctype or 'no type'})"
        raise errors.RetriableAPIError(
            system=system,
            status=response.status_code,
            code="BAD_RESPONSE",
            message=f"expected JSON, got {what}",
        ) from None


def retry_after_s(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (delta form only; dates are treated as absent)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def expect_dict(system: str, value: Any, what: str) -> dict[str, Any]:
    """`value` if it is a JSON object, else a `RetriableAPIError` saying what `what` was instead."""
    if not isinstance(value, dict):
        raise errors.RetriableAPIError(
            system=system,
            status=None,
            code="BAD_RESPONSE",
            message=f"{what}: expected a JSON object, got {type(value).__name__}",
        )
    return value
