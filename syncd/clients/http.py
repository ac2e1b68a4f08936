"""HTTP plumbing shared by the API clients: the one call chain, retry policy, answer reading.

The clients are the only code that knows URLs and JSON. They all build their `httpx.AsyncClient`
here (so a test or `syncd demo` can pass an `httpx.ASGITransport` around a simulator) and make
every call through one `CallChain`, in the shape of httpx's own extension points:

- **token renewal is an `httpx.Auth` flow** (`TokenRenewal`): the bearer token comes from a
  `TokenSource`; an answer the client calls stale (Salesforce 401 `INVALID_SESSION_ID`, Pardot 401
  or code 184) renews it once per logical call and the request is sent again;
- **retry lives in one place**: the tenacity `RetryPolicy` below retries `RetriableAPIError`;
  a write that is not idempotent is resent only when the error proves it was not processed
  (never blindly after a lost answer); a spent budget (`BudgetExhaustedError`) is never retried;
- **call observers are a list of hooks** (`CallChain.hooks`, like httpx's `event_hooks`): each
  HTTP exchange, the stale-token one inside the auth flow included, is reported as a
  `CallRecord` to every hook: budget accounting, metrics and logs are each one hook.

Answers are read with `read_json`, which turns an HTML error page or truncated JSON into a clear
`RetriableAPIError` instead of a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import tenacity

from syncd import errors, logs

log = logs.get(__name__)

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


CallHook = Callable[[CallRecord], None]
CallObserver = CallHook  # the former name


def outcome_of(error: errors.APIError | errors.BudgetExhaustedError | None) -> str:
    """The `CallRecord.outcome` of an answer classified as `error` (None: a success)."""
    if error is None:
        return "ok"
    if isinstance(error, errors.BudgetExhaustedError):
        return "budget"
    if isinstance(error, errors.AuthError):
        return "auth"
    if isinstance(error, errors.RetriableAPIError):
        return "retriable"
    return "permanent"


def log_call(record: CallRecord) -> None:
    """The logging hook: an event for every answer that is not a success (no URL query, no body)."""
    if record.outcome not in ("ok", "auth"):
        log.info(
            f"{record.system}_call_error",
            method=record.method,
            path=record.path,
            status=record.status,
            outcome=record.outcome,
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


# -- the call chain --------------------------------------------------------------------------------

Signal = errors.APIError | errors.BudgetExhaustedError
# An answer classified: the error it carries (None: a success), and whether that error proves
# the request was not processed (so even a write may be sent again).
Classified = tuple[Signal | None, bool]

_UNSENT_TRANSPORT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_STARTED = "syncd.started"


class TokenRenewal(httpx.Auth):
    """Bearer auth from a `TokenSource` that renews a refused token once, then resends.

    One instance serves one logical call, so the token is renewed at most once across that
    call's retries: a token refused again right after renewal is the client's `AuthError`.
    """

    requires_response_body = True  # Pardot says "stale" in the body (code 184)

    def __init__(
        self, tokens: TokenSource, *, system: str, is_stale: Callable[[httpx.Response], bool]
    ) -> None:
        self._tokens = tokens
        self._system = system
        self._is_stale = is_stale
        self.renewed = False

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("syncd's API clients are asynchronous")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._tokens.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if self.renewed or not self._is_stale(response):
            return
        self.renewed = True
        log.info(
            "api_token_renewing",
            system=self._system,
            method=request.method,
            status=response.status_code,
        )
        token = await self._tokens.refresh(token)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


class _Failure(Exception):
    """One attempt's error, with whether it proves the request was not processed."""

    def __init__(self, error: Signal, unprocessed: bool):
        super().__init__(str(error))
        self.error = error
        self.unprocessed = unprocessed


class _Final(Exception):
    """Carries an error out of the retry loop without being retried."""

    def __init__(self, error: errors.SyncdError) -> None:
        super().__init__(str(error))
        self.error = error


class CallChain:
    """The one way both API clients make a call: auth, send, classify, read, retry, report.

    Args:
        system: "salesforce" or "pardot" (the `CallRecord.system`).
        client: the httpx client (`build_http_client`); its event hooks are set here.
        tokens: where the bearer token comes from.
        is_stale: whether an answer refuses the token (renewed once, then resent).
        classify: the error an answer carries and whether it proves the request unprocessed.
        retry: the retry policy.
        route: the URL path as reported in call records and logs (ids replaced).
        hooks: called with a `CallRecord` for every HTTP exchange; append to add observers.
        slots: at most this many exchanges in flight (Pardot allows 5), when given.
    """

    def __init__(
        self,
        *,
        system: str,
        client: httpx.AsyncClient,
        tokens: TokenSource,
        is_stale: Callable[[httpx.Response], bool],
        classify: Callable[[httpx.Response], Classified],
        retry: RetryPolicy,
        route: Callable[[str], str],
        hooks: list[CallHook],
        slots: int | None = None,
    ) -> None:
        self.system = system
        self.hooks = hooks
        self.calls_made = 0
        self._http = client
        self._tokens = tokens
        self._is_stale = is_stale
        self._classify = classify
        self._retry = retry
        self._route = route
        self._slots = asyncio.Semaphore(slots) if slots is not None else None
        client.event_hooks = {"request": [self._on_request], "response": [self._on_response]}

    async def call(
        self,
        build: Callable[[], Awaitable[httpx.Request]],
        *,
        read: Callable[[httpx.Response, int], T],
        accept: Callable[[httpx.Response, int], bool] | None = None,
        idempotent: bool = True,
    ) -> T:
        """One logical call under the retry policy; its answer read by `read(response, attempt)`.

        `build()` makes the request (an error there is raised at once, never retried);
        `accept(response, attempt)` may take an error answer as a success (a 404 on GET, a
        delete found already gone on a retry). `read` runs inside the retries, so a truncated
        or malformed answer is retried like any transient failure. A call that is not
        `idempotent` is resent only when its error proves it was not processed; otherwise the
        error says it may have been applied.
        """
        auth = TokenRenewal(self._tokens, system=self.system, is_stale=self._is_stale)
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            try:
                request = await self._build(build)
                response = await self._send(request, auth)
                if response.status_code >= 300 and not (accept and accept(response, attempts)):
                    error, unprocessed = self._classify(response)
                    if error is not None:
                        raise _Failure(error, unprocessed)
                try:
                    return read(response, attempts)
                except errors.APIError as exc:
                    raise _Failure(exc, False) from None
            except _Failure as failure:
                error = failure.error
                if (
                    isinstance(error, errors.RetriableAPIError)
                    and not idempotent
                    and not failure.unprocessed
                ):
                    raise _Final(_maybe_applied(error, request.method)) from None
                raise error from None

        try:
            return await self._retry.call(attempt)
        except _Final as final:
            raise final.error from None

    @staticmethod
    async def _build(build: Callable[[], Awaitable[httpx.Request]]) -> httpx.Request:
        try:
            return await build()
        except errors.SyncdError as exc:
            # A request that cannot be made (a URI too long, no token: the token endpoint was
            # already retried by the token source) is not retried again here.
            raise _Final(exc) from None

    async def _send(self, request: httpx.Request, auth: TokenRenewal) -> httpx.Response:
        async with self._slots if self._slots is not None else contextlib.nullcontext():
            try:
                return await self._http.send(request, auth=auth)
            except httpx.HTTPError as exc:
                record = self._record(request, None, "transport")
                self._emit(record)
                log.warning(
                    f"{self.system}_call_failed",
                    method=record.method,
                    path=record.path,
                    error=type(exc).__name__,
                )
                failure = transport_failure(self.system, exc)
                raise _Failure(failure, isinstance(exc, _UNSENT_TRANSPORT)) from None
            except errors.SyncdError as exc:  # from the token source, inside the auth flow
                raise _Final(exc) from None

    # -- hooks ------------------------------------------------------------------------------------

    async def _on_request(self, request: httpx.Request) -> None:
        self.calls_made += 1
        request.extensions[_STARTED] = time.monotonic()

    async def _on_response(self, response: httpx.Response) -> None:
        await response.aread()
        status = response.status_code
        outcome = "ok" if status < 300 else outcome_of(self._classify(response)[0])
        self._emit(self._record(response.request, status, outcome))

    def _record(self, request: httpx.Request, status: int | None, outcome: str) -> CallRecord:
        started = request.extensions.get(_STARTED)
        took = time.monotonic() - started if isinstance(started, float) else 0.0
        return CallRecord(
            system=self.system,
            method=request.method,
            path=self._route(request.url.path),
            status=status,
            outcome=outcome,
            duration_s=took,
        )

    def _emit(self, record: CallRecord) -> None:
        for hook in list(self.hooks):
            hook(record)


def _maybe_applied(error: errors.RetriableAPIError, method: str) -> errors.RetriableAPIError:
    return type(error)(
        system=error.system,
        status=error.status,
        code=error.code,
        message=(
            f"{error.message}; the {method} may have been applied, so it was not resent: "
            "re-match by email before creating again"
        ),
        details=error.details,
        retry_after_s=error.retry_after_s,
    )


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
