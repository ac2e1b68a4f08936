"""Salesforce REST client: SOQL queries, record CRUD, sObject Collections, replication, limits.

The only code that knows Salesforce REST URLs and JSON (wire-formats.md section B). Every call
goes to `{instance_url}/services/data/v{api_version}` with the bearer token of a `SalesforceAuth`.

Errors (the `syncd.errors` tree):

- 5xx, 429, timeouts, dropped connections, `UNABLE_TO_LOCK_ROW`, HTML pages and truncated or
  malformed JSON -> `RetriableAPIError` (`Retry-After` honoured; malformed answers have the code
  `BAD_RESPONSE`).
- 403 `REQUEST_LIMIT_EXCEEDED` whose message names `TotalRequests` (the rolling 24 h limit) ->
  `BudgetExhaustedError`, never hot-retried; other `REQUEST_LIMIT_EXCEEDED` answers (concurrency,
  bursts) -> `RetriableAPIError`, retried with backoff.
- 401 `INVALID_SESSION_ID` -> the token is renewed once per call (`auth.refresh(stale)`, the
  shared `http.TokenRenewal` auth flow) and the call is sent again; a second 401 -> `AuthError`.
- Any other 4xx (`MALFORMED_QUERY`, `INVALID_FIELD`, `REQUIRED_FIELD_MISSING`,
  `DUPLICATES_DETECTED`, `CANNOT_UPDATE_CONVERTED_LEAD`, ...) -> `PermanentAPIError` with every
  error entry as an `ErrorDetail`. `get` returns None on 404.
- Per-record results of sObject Collections are returned as `SaveResult`s, never raised: the
  caller decides per record. Only a failure of the whole request raises.

Retries and idempotency. Reads (queries, get, describe, limits), updates (PATCH sets the same
values again) and deletes are idempotent: they are retried under the `RetryPolicy` on any
`RetriableAPIError`. Creates (`create`, `create_many`) are NOT: after a 5xx, a timeout or a lost
answer Salesforce may well have saved the record, and sending the POST again would create a
duplicate. A create is therefore retried only when the error proves the request was not processed
(the connection was never made, a 401 before the token renewal, `REQUEST_LIMIT_EXCEEDED`, 429,
`UNABLE_TO_LOCK_ROW`); any other `RetriableAPIError` is raised at once, saying the create may have
been applied, and the pipeline re-matches by email before it creates again. The chain (auth,
retry, never resending an unsure write, the call hooks) is `http.CallChain`, shared with Pardot.

Records are returned as Salesforce sends them, including `attributes` (`attributes.type` names the
sObject, which matters for polymorphic lookups such as `Owner`, `Who`).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, quote_plus

import httpx

from syncd import errors, logs
from syncd.clients import http

log = logs.get(__name__)

SYSTEM = "salesforce"
COLLECTION_MAX_RECORDS = 200  # the sObject Collections cap per request
MAX_URI_BYTES = 16_384  # Salesforce refuses longer request URIs (414)
COMPOSITE_MAX_QUERIES = 5  # a /composite call holds at most 5 query or collection subrequests
DEFAULT_API_VERSION = "60.0"

T = TypeVar("T")

_SOBJECT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_API_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
_GONE_CODES = frozenset({"ENTITY_IS_DELETED", "NOT_FOUND"})
# Codes that prove the request was refused before any data changed: safe to resend even a POST.
_REFUSED_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW"})


_BudgetSignal = errors.BudgetExhaustedError  # (SaveResult's field `errors` hides the module)

# -- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaveResult:
    """The outcome for one record of a collection call, in request order.

    Attributes:
        id: the record id (for updates and deletes filled in from the request when the API
            leaves it out of a failed item).
        success: whether this record was saved.
        errors: the API's errors for this record (`statusCode` as `code`).
        retriable: True when the record failed only because its whole chunk failed transiently
            (its `errors` carry that chunk's error code). For creates this means the outcome is
            unknown: re-match before creating again.
        budget: set when the record's chunk was refused for the daily API limit (not
            processed): the side is to pause, the record was not saved and can be sent again.
    """

    id: str | None
    success: bool
    errors: tuple[errors.ErrorDetail, ...]
    retriable: bool = False
    budget: _BudgetSignal | None = None


@dataclass(frozen=True)
class ApiUsage:
    """The org's daily API usage from the last `Sforce-Limit-Info: api-usage=N/M` header."""

    used: int
    limit: int


@dataclass(frozen=True)
class UpdatedIds:
    """Answer of getUpdated: ids changed in the window; next `start` = `latest_date_covered`."""

    ids: list[str]
    latest_date_covered: datetime


@dataclass(frozen=True)
class DeletedRecord:
    id: str
    deleted_date: datetime


@dataclass(frozen=True)
class DeletedIds:
    """Answer of getDeleted; `earliest_date_available` bounds how far back deletes are kept."""

    records: list[DeletedRecord]
    earliest_date_available: datetime | None
    latest_date_covered: datetime


class SalesforceTokenSource(http.TokenSource, Protocol):
    """A token source that also says where the org's REST API lives (`SalesforceAuth` does)."""

    async def instance_url(self) -> str:
        """`https://acme.my.salesforce.com`, without a trailing slash."""
        ...


# -- SOQL helpers --------------------------------------------------------------------------

_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def soql_quote(value: str) -> str:
    """`value` as a SOQL string literal: quoted, with every special character escaped.

    Backslash, both quotes, newline, carriage return, tab, backspace and form feed use their
    backslash escapes; other control characters become `\\uXXXX` (the only other escape SOQL has).
    `%` and `_` are left alone: they only need escaping inside LIKE patterns.
    """
    out = []
    for ch in value:
        esc = _SOQL_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def soql_datetime(value: datetime) -> str:
    """`value` as an unquoted SOQL dateTime literal in UTC, whole seconds: `2024-05-01T00:00:00Z`.

    SOQL documents only whole-second literals, so milliseconds are dropped (floored). For a lower
    bound (`SystemModstamp >= x`) that selects a superset, which the pollers' overlap absorbs;
    for an exclusive upper bound pass a whole-second value. Naive datetimes are refused.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("soql_datetime needs a timezone-aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_in(field: str, values: Iterable[str]) -> str:
    """`Email IN ('a@x.com','b@x.com')`; values are quoted with `soql_quote`."""
    if not _FIELD_PATH.match(field):
        raise ValueError(f"not a SOQL field name: {field!r}")
    quoted = [soql_quote(v) for v in values]
    if not quoted:
        raise ValueError("soql_in needs at least one value (SOQL has no empty IN list)")
    return f"{field} IN ({','.join(quoted)})"


def chunked_in_lists(values: Iterable[str], *, max_chars: int) -> Iterator[list[str]]:
    """Split `values` (duplicates dropped, order kept) so each `IN (...)` list stays short.

    `max_chars` is the budget for the URL-encoded list (quotes, escapes and commas included), i.e.
    `MAX_URI_BYTES` minus the rest of the request URL. A value that alone exceeds the budget
    raises ValueError.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    chunk: list[str] = []
    used = 0
    seen: set[str] = set()
    for value in values:
        if value in seen:
            continue
        seen.add(value)
        cost = len(quote_plus(soql_quote(value))) + 3  # "%2C" separator
        if cost > max_chars:
            raise ValueError(f"one value needs {cost} URL characters, over max_chars={max_chars}")
        if chunk and used + cost > max_chars:
            yield chunk
            chunk, used = [], 0
        chunk.append(value)
        used += cost
    if chunk:
        yield chunk


_SF_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})$"
)


def parse_sf_datetime(text: str) -> datetime:
    """A Salesforce dateTime (`2021-12-02T18:23:39.000+0000`, also `Z` / `+00:00`) in UTC."""
    m = _SF_DATETIME.match(text.strip())
    if not m:
        raise ValueError(f"not a Salesforce dateTime: {text!r}")
    base, frac, zone = m.groups()
    if zone == "Z":
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    micro = (frac or ".0")[1:].ljust(6, "0")
    return datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(UTC)


def _param_datetime(value: datetime) -> str:
    """getUpdated/getDeleted `start`/`end`: ISO 8601 UTC with an explicit offset."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


# -- answers -------------------------------------------------------------------------------


def _bad(status: int | None, message: str) -> errors.RetriableAPIError:
    return errors.RetriableAPIError(
        system=SYSTEM, status=status, code="BAD_RESPONSE", message=message
    )


def _error_entries(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, list):
        return [e for e in body if isinstance(e, dict)]
    if isinstance(body, dict):
        return [body]
    return []


def _detail(entry: Mapping[str, Any]) -> errors.ErrorDetail:
    """One error entry (`errorCode` on REST errors, `statusCode` inside collections)."""
    code = entry.get("errorCode") or entry.get("statusCode") or "UNKNOWN_ERROR"
    message = str(entry.get("message") or "")
    raw_fields = entry.get("fields")
    fields = (
        tuple(str(f) for f in raw_fields if isinstance(f, str))
        if isinstance(raw_fields, list)
        else ()
    )
    dup = entry.get("duplicateResut") or entry.get("duplicateResult")  # sic: the API misspells it
    if isinstance(dup, dict):
        message = _with_duplicates(message, dup)
    return errors.ErrorDetail(code=str(code), message=message, fields=fields)


def _with_duplicates(message: str, dup: Mapping[str, Any]) -> str:
    """Append the duplicate rule and matched record ids (not secret, useful to the operator)."""
    ids: list[str] = []
    for match in dup.get("matchResults") or []:
        if not isinstance(match, dict):
            continue
        for rec in match.get("matchRecords") or []:
            record = rec.get("record") if isinstance(rec, dict) else None
            if isinstance(record, dict) and isinstance(record.get("Id"), str):
                ids.append(record["Id"])
    rule = dup.get("duplicateRule")
    extra = []
    if isinstance(rule, str):
        extra.append(f"duplicate rule {rule}")
    if ids:
        extra.append("matches " + ", ".join(ids))
    return f"{message} ({'; '.join(extra)})" if extra else message


def classify(
    response: httpx.Response,
) -> tuple[errors.APIError | errors.BudgetExhaustedError, bool]:
    """The error for a non-2xx `response`, and whether it proves the request was not processed."""
    status = response.status_code
    retry_after = http.retry_after_s(response)
    try:
        body = http.read_json(SYSTEM, response)
    except errors.RetriableAPIError as exc:
        if status == 414:
            return _uri_too_long(None), True
        # An HTML page or a cut-off body: a proxy or a dropped answer, whatever the status.
        return errors.RetriableAPIError(
            system=SYSTEM,
            status=status,
            code="BAD_RESPONSE",
            message=f"HTTP {status} {exc.message}",
            retry_after_s=retry_after,
        ), status == 429
    details = tuple(_detail(e) for e in _error_entries(body))
    code = details[0].code if details else f"HTTP_{status}"
    message = details[0].message if details else f"HTTP {status} without an error entry"
    codes = {d.code for d in details}
    kwargs: dict[str, Any] = {
        "system": SYSTEM,
        "status": status,
        "code": code,
        "message": message,
        "details": details,
        "retry_after_s": retry_after,
    }
    if "REQUEST_LIMIT_EXCEEDED" in codes:
        limit = next(d for d in details if d.code == "REQUEST_LIMIT_EXCEEDED")
        kwargs.update(code=limit.code, message=limit.message)
        if "TotalRequests" in limit.message:
            kwargs["message"] = (
                f"{limit.message} (the org's rolling 24 h API limit is spent: Salesforce calls "
                "pause until usage drops)"
            )
            del kwargs["details"]
            return errors.BudgetExhaustedError(**kwargs), True
        return errors.RetriableAPIError(**kwargs), True
    if "UNABLE_TO_LOCK_ROW" in codes:
        kwargs.update(code="UNABLE_TO_LOCK_ROW")
        return errors.RetriableAPIError(**kwargs), True
    if status == 429:
        return errors.RetriableAPIError(**kwargs), True
    if status >= 500:
        return errors.RetriableAPIError(**kwargs), False
    if status == 401:
        kwargs["message"] = (
            f"{message}: a freshly obtained token was refused too; check that the connector user "
            "has the API Enabled permission and that the org's IP restrictions allow this host"
        )
        return errors.AuthError(**kwargs), True
    if status == 414:
        return _uri_too_long(None), True
    return errors.PermanentAPIError(**kwargs), True


def _uri_too_long(length: int | None) -> errors.PermanentAPIError:
    size = f"{length} bytes" if length is not None else "too long"
    return errors.PermanentAPIError(
        system=SYSTEM,
        status=414 if length is None else None,
        code="URI_TOO_LONG",
        message=(
            f"the request URI is {size} (limit {MAX_URI_BYTES}): split the IN list with "
            "chunked_in_lists"
        ),
    )


def _save_result(item: Any, fallback_id: str | None) -> SaveResult:
    if not isinstance(item, dict) or not isinstance(item.get("success"), bool):
        raise _bad(200, "a collection result item without a boolean 'success'")
    raw_errors = item.get("errors") or []
    if not isinstance(raw_errors, list):
        raise _bad(200, "a collection result item whose 'errors' is not a list")
    record_id = item.get("id")
    return SaveResult(
        id=record_id if isinstance(record_id, str) else fallback_id,
        success=item["success"],
        errors=tuple(_detail(e) for e in raw_errors if isinstance(e, dict)),
    )


def _save_results(
    response: httpx.Response, expected: int, ids: Sequence[str | None]
) -> list[SaveResult]:
    body = http.read_json(SYSTEM, response)
    if not isinstance(body, list) or len(body) != expected:
        got = f"{len(body)} items" if isinstance(body, list) else type(body).__name__
        raise _bad(response.status_code, f"expected {expected} collection results, got {got}")
    return [_save_result(item, ids[i]) for i, item in enumerate(body)]


@dataclass(frozen=True)
class _QueryPage:
    records: list[dict[str, Any]]
    total_size: int
    done: bool
    next_url: str | None


def _query_page(response: httpx.Response) -> _QueryPage:
    body = http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "query answer")
    records, done, total = body.get("records"), body.get("done"), body.get("totalSize")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _bad(response.status_code, "query answer without a 'records' list of objects")
    if not isinstance(done, bool):
        raise _bad(response.status_code, "query answer without a boolean 'done'")
    if not isinstance(total, int) or isinstance(total, bool):
        raise _bad(response.status_code, "query answer without an integer 'totalSize'")
    next_url = body.get("nextRecordsUrl")
    if not done and not (isinstance(next_url, str) and next_url.startswith("/")):
        raise _bad(response.status_code, "query answer with done=false but no nextRecordsUrl")
    return _QueryPage(records, total, done, next_url if not done else None)


def _composite_pages(response: httpx.Response, expected: int) -> list[_QueryPage]:
    """The query pages of a `/composite` answer; a failed subrequest raises its own error."""
    body = http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "composite answer")
    answers = body.get("compositeResponse")
    if not isinstance(answers, list) or len(answers) != expected:
        raise _bad(response.status_code, f"expected {expected} composite subresponses")
    pages: list[_QueryPage] = []
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("httpStatusCode"), int):
            raise _bad(response.status_code, "composite subresponse without httpStatusCode")
        sub = httpx.Response(
            answer["httpStatusCode"],
            json=answer.get("body"),
            request=response.request,
        )
        if sub.status_code >= 300:
            error, _ = classify(sub)
            raise error
        pages.append(_query_page(sub))
    return pages


def _date_field(body: Mapping[str, Any], key: str, status: int) -> datetime:
    value = body.get(key)
    if not isinstance(value, str):
        raise _bad(status, f"answer without '{key}'")
    try:
        return parse_sf_datetime(value)
    except ValueError:
        raise _bad(status, f"'{key}' is not a Salesforce dateTime") from None


# -- the client ----------------------------------------------------------------------------


class SalesforceClient:
    """Salesforce REST API calls for syncd; see the module docstring for errors and retries.

    Args:
        auth: where the bearer token and the instance URL come from (a `SalesforceAuth`).
        api_version: the REST API version, e.g. "60.0".
        transport: an httpx transport (tests pass `httpx.ASGITransport(app=sim.app)`).
        retry: the retry policy for transient failures.
        timeout_s: per-request timeout.
        verify: verify TLS certificates.
        on_call: one call hook (the budget's), added to `call_hooks`.
        call_hooks: called with a `CallRecord` for every HTTP exchange (budget, metrics); the
            log hook comes first. `client.call_hooks` is the live list: append to add one.
        max_connections: connection pool size; collection chunks run at most this many at once.
    """

    def __init__(
        self,
        auth: SalesforceTokenSource,
        *,
        api_version: str = DEFAULT_API_VERSION,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: http.RetryPolicy = http.RetryPolicy(),  # noqa: B008 - frozen, immutable
        timeout_s: float = 60.0,
        verify: bool = True,
        on_call: http.CallHook | None = None,
        max_connections: int = 10,
        call_hooks: Sequence[http.CallHook] = (),
    ) -> None:
        self._auth = auth
        self._prefix = f"/services/data/v{api_version}"
        self._chunk_slots = asyncio.Semaphore(max(1, min(max_connections, 4)))
        self._http = http.build_http_client(
            "",
            transport=transport,
            timeout_s=timeout_s,
            verify=verify,
            max_connections=max_connections,
        )
        self._usage: ApiUsage | None = None
        self._chain = http.CallChain(
            system=SYSTEM,
            client=self._http,
            tokens=auth,
            is_stale=lambda response: response.status_code == 401,
            classify=classify,
            retry=retry,
            route=_route,
            hooks=[http.log_call, *call_hooks, *([on_call] if on_call else [])],
        )
        self._http.event_hooks["response"].append(self._track_usage)

    @property
    def call_hooks(self) -> list[http.CallHook]:
        """Called with a `CallRecord` for every HTTP exchange; append to add an observer."""
        return self._chain.hooks

    @property
    def calls_made(self) -> int:
        """HTTP exchanges made so far (token renewals' resends and failed ones included)."""
        return self._chain.calls_made

    async def __aenter__(self) -> SalesforceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections (the auth object is the caller's to close)."""
        await self._http.aclose()

    @property
    def usage(self) -> ApiUsage | None:
        """The org's daily API usage from the last `Sforce-Limit-Info` header, if any was seen."""
        return self._usage

    # -- queries ---------------------------------------------------------------------------

    async def query(
        self, soql: str, *, include_deleted: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of `soql`, following `nextRecordsUrl` until `done`.

        `include_deleted` uses the `queryAll` resource: deleted records too (in the recycle
        bin, and merge losers), with `IsDeleted` and `MasterRecordId` when selected.
        Raises `PagingLoopError` if a `nextRecordsUrl` comes back twice.
        """
        resource = "/queryAll" if include_deleted else "/query"
        page = await self._request(
            "GET", self._prefix + resource, params={"q": soql}, parse=_query_page
        )
        seen: set[str] = set()
        while True:
            for record in page.records:
                yield record
            if page.next_url is None:
                return
            if page.next_url in seen:
                raise errors.PagingLoopError(
                    system=SYSTEM,
                    status=200,
                    code="PAGING_LOOP",
                    message=(
                        "Salesforce returned the same nextRecordsUrl twice; the query was "
                        "stopped to avoid an endless loop"
                    ),
                )
            seen.add(page.next_url)
            page = await self._request("GET", page.next_url, parse=_query_page)

    async def query_many(self, soqls: Sequence[str]) -> list[list[dict[str, Any]]]:
        """The records of each query in `soqls`, in order, up to 5 queries per API call.

        The queries ride in one `POST /composite` (which counts as ONE API call; Salesforce
        allows at most 5 query subrequests in it); a query with more rows than its first page
        follows its `nextRecordsUrl` on its own. A refused subrequest raises its error as
        `query` would. Each SOQL is sent in a subrequest URL: keep IN lists under the URI limit.
        """
        if len(soqls) <= 1:
            return [await self.query_all(q) for q in soqls]
        out: list[list[dict[str, Any]]] = []
        for start in range(0, len(soqls), COMPOSITE_MAX_QUERIES):
            group = list(soqls[start : start + COMPOSITE_MAX_QUERIES])
            body = {
                "allOrNone": False,
                "compositeRequest": [
                    {
                        "method": "GET",
                        "url": f"{self._prefix}/query?q={quote_plus(q)}",
                        "referenceId": f"q{i}",
                    }
                    for i, q in enumerate(group)
                ],
            }
            pages = await self._request(
                "POST",
                self._prefix + "/composite",
                json=body,
                parse=functools.partial(_composite_pages, expected=len(group)),
            )
            for page in pages:
                records = list(page.records)
                seen: set[str] = set()
                while page.next_url is not None:
                    if page.next_url in seen:
                        raise errors.PagingLoopError(
                            system=SYSTEM,
                            status=200,
                            code="PAGING_LOOP",
                            message="Salesforce returned the same nextRecordsUrl twice",
                        )
                    seen.add(page.next_url)
                    page = await self._request("GET", page.next_url, parse=_query_page)
                    records.extend(page.records)
                out.append(records)
        return out

    async def query_all(self, soql: str) -> list[dict[str, Any]]:
        """Every record of `soql` as a list (for small results; stream big ones with `query`)."""
        return [record async for record in self.query(soql)]

    async def query_with_deleted(self, soql: str) -> list[dict[str, Any]]:
        """Every record of `soql` through the REST `queryAll` resource, deleted ones included.

        How syncd tells a merge from a delete: a deleted Lead or Contact read with
        `SELECT Id, IsDeleted, MasterRecordId ...` names its survivor in `MasterRecordId`.
        (`query_all` is the list form of `query`; this is Salesforce's `queryAll`.)
        """
        return [record async for record in self.query(soql, include_deleted=True)]

    async def count(self, soql_count: str, *, include_deleted: bool = False) -> int:
        """The result of `SELECT COUNT() FROM ...` (its `totalSize`); `include_deleted` counts
        through `queryAll` (e.g. merge losers: `WHERE IsDeleted = true AND MasterRecordId !=
        null`)."""
        resource = "/queryAll" if include_deleted else "/query"
        page = await self._request(
            "GET", self._prefix + resource, params={"q": soql_count}, parse=_query_page
        )
        return page.total_size

    # -- single records --------------------------------------------------------------------

    async def get(
        self, sobject: str, record_id: str, fields: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """The record (with `attributes`), or None when it does not exist (404)."""
        path = self._record_path(sobject, record_id)
        params = {"fields": ",".join(fields)} if fields else None

        def parse(response: httpx.Response) -> dict[str, Any] | None:
            if response.status_code == 404:
                return None
            return http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "record")

        return await self._request("GET", path, params=params, parse=parse, ok_statuses={404})

    async def create(
        self, sobject: str, fields: Mapping[str, Any], *, auto_assign: bool = False
    ) -> str:
        """Create one record and return its id; NOT retried when it may have been applied.

        `auto_assign` runs the active assignment rule (Leads, Cases, Accounts); without it
        `Sforce-Auto-Assign: FALSE` is sent, because REST applies the rule by default.
        """
        path = f"{self._prefix}/sobjects/{_sobject(sobject)}"

        def parse(response: httpx.Response) -> str:
            body = http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "create answer")
            result = _save_result(body, None)
            if not result.success or not result.id:
                first = result.errors[0] if result.errors else None
                raise errors.PermanentAPIError(
                    system=SYSTEM,
                    status=response.status_code,
                    code=first.code if first else "CREATE_FAILED",
                    message=first.message if first else "the create answer was not a success",
                    details=result.errors,
                )
            return result.id

        return await self._request(
            "POST",
            path,
            json=dict(fields),
            headers=_assign_header(auto_assign),
            parse=parse,
            idempotent=False,
        )

    async def update(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Update one record (PATCH; idempotent, so retried); assignment rules are not run."""
        await self._request(
            "PATCH",
            self._record_path(sobject, record_id),
            json=dict(fields),
            headers=_assign_header(False),
            parse=_no_content,
        )

    async def delete(self, sobject: str, record_id: str) -> None:
        """Delete one record; a retry that finds the record already gone counts as success."""
        await self._request(
            "DELETE", self._record_path(sobject, record_id), parse=_no_content, gone_ok=True
        )

    # -- collections -----------------------------------------------------------------------

    async def create_many(
        self,
        sobject: str,
        records: Sequence[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
        auto_assign: bool = False,
    ) -> list[SaveResult]:
        """Create records through `/composite/sobjects`, 200 per request; results in order.

        `all_or_none` holds per chunk of 200 (each chunk is its own transaction). A chunk whose
        request fails as a whole yields failed results with `retriable` set, unless every chunk
        failed: then the first error is raised. Creates are not resent after a possibly applied
        request (see the module docstring).
        """
        typed = [{"attributes": {"type": _sobject(sobject)}, **r} for r in records]
        path = f"{self._prefix}/composite/sobjects"

        async def send(chunk: list[dict[str, Any]]) -> list[SaveResult]:
            return await self._request(
                "POST",
                path,
                json={"allOrNone": all_or_none, "records": chunk},
                headers=_assign_header(auto_assign),
                parse=lambda r: _save_results(r, len(chunk), [None] * len(chunk)),
                idempotent=False,
            )

        return await self._chunked(typed, [None] * len(typed), send)

    async def update_many(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[SaveResult]:
        """Update records (each with `Id`) through `/composite/sobjects`, 200 per request."""
        typed: list[dict[str, Any]] = []
        ids: list[str | None] = []
        for r in records:
            record_id = r.get("Id", r.get("id"))
            if not isinstance(record_id, str) or not record_id:
                raise ValueError("update_many: every record needs its 'Id'")
            rest = {k: v for k, v in r.items() if k not in ("Id", "id")}
            typed.append({"attributes": {"type": _sobject(sobject)}, "id": record_id, **rest})
            ids.append(record_id)
        path = f"{self._prefix}/composite/sobjects"

        async def send(chunk: list[dict[str, Any]]) -> list[SaveResult]:
            chunk_ids = [c["id"] for c in chunk]
            return await self._request(
                "PATCH",
                path,
                json={"allOrNone": all_or_none, "records": chunk},
                headers=_assign_header(False),
                parse=lambda r: _save_results(r, len(chunk), chunk_ids),
            )

        return await self._chunked(typed, ids, send)

    async def delete_many(
        self, ids: Sequence[str], *, all_or_none: bool = False
    ) -> list[SaveResult]:
        """Delete records by id through `/composite/sobjects`, 200 per request.

        When a chunk is retried after a lost answer, records the first attempt already deleted
        (`ENTITY_IS_DELETED`) are reported as successes. A malformed id fails alone, with
        `MALFORMED_ID`, without being sent (unless `all_or_none`: then nothing is sent).
        """
        malformed = {i for i, record_id in enumerate(ids) if not _is_record_id(record_id)}
        if malformed:
            bad = errors.ErrorDetail("MALFORMED_ID", "not a 15- or 18-character Salesforce id")
            rolled = errors.ErrorDetail(
                "ALL_OR_NONE_OPERATION_ROLLED_BACK", "not sent: another id in the call is malformed"
            )
            if all_or_none:
                return [
                    SaveResult(rid, False, (bad if i in malformed else rolled,))
                    for i, rid in enumerate(ids)
                ]
            good = [rid for i, rid in enumerate(ids) if i not in malformed]
            sent = iter(await self.delete_many(good) if good else [])
            return [
                SaveResult(rid, False, (bad,)) if i in malformed else next(sent)
                for i, rid in enumerate(ids)
            ]
        path = f"{self._prefix}/composite/sobjects"
        id_list: list[str | None] = list(ids)

        async def send(chunk: list[str]) -> list[SaveResult]:
            def parse(response: httpx.Response) -> list[SaveResult]:
                return _save_results(response, len(chunk), list(chunk))

            def parse_retried(response: httpx.Response) -> list[SaveResult]:
                return [_gone_as_success(r) for r in parse(response)]

            return await self._request(
                "DELETE",
                path,
                params={"ids": ",".join(chunk), "allOrNone": str(all_or_none).lower()},
                parse=parse,
                parse_retried=parse_retried,
            )

        return await self._chunked(list(ids), id_list, send)

    # -- replication, metadata -------------------------------------------------------------

    async def get_updated(self, sobject: str, start: datetime, end: datetime) -> UpdatedIds:
        """Ids of `sobject` records changed (SystemModstamp) between `start` and `end`."""

        def parse(response: httpx.Response) -> UpdatedIds:
            body = http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "getUpdated")
            ids = body.get("ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise _bad(response.status_code, "getUpdated answer without an 'ids' list")
            latest = _date_field(body, "latestDateCovered", response.status_code)
            return UpdatedIds(ids=list(ids), latest_date_covered=latest)

        return await self._request(
            "GET",
            f"{self._prefix}/sobjects/{_sobject(sobject)}/updated/",
            params={"start": _param_datetime(start), "end": _param_datetime(end)},
            parse=parse,
        )

    async def get_deleted(self, sobject: str, start: datetime, end: datetime) -> DeletedIds:
        """Records of `sobject` deleted between `start` and `end` (kept about 15 days)."""

        def parse(response: httpx.Response) -> DeletedIds:
            status = response.status_code
            body = http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "getDeleted")
            raw = body.get("deletedRecords")
            if not isinstance(raw, list):
                raise _bad(status, "getDeleted answer without a 'deletedRecords' list")
            records = []
            for item in raw:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise _bad(status, "a deleted record without an 'id'")
                records.append(DeletedRecord(item["id"], _date_field(item, "deletedDate", status)))
            earliest = (
                _date_field(body, "earliestDateAvailable", status)
                if body.get("earliestDateAvailable") is not None
                else None
            )
            latest = _date_field(body, "latestDateCovered", status)
            return DeletedIds(records, earliest, latest)

        return await self._request(
            "GET",
            f"{self._prefix}/sobjects/{_sobject(sobject)}/deleted/",
            params={"start": _param_datetime(start), "end": _param_datetime(end)},
            parse=parse,
        )

    async def describe(self, sobject: str) -> dict[str, Any]:
        """The sObject's describe answer (fields, picklists, createable/updateable flags)."""
        return await self._request(
            "GET", f"{self._prefix}/sobjects/{_sobject(sobject)}/describe", parse=_json_object
        )

    async def limits(self) -> dict[str, Any]:
        """The org's limits (`DailyApiRequests: {Max, Remaining}`, ...)."""
        return await self._request("GET", f"{self._prefix}/limits", parse=_json_object)

    # -- plumbing --------------------------------------------------------------------------

    def _record_path(self, sobject: str, record_id: str) -> str:
        return f"{self._prefix}/sobjects/{_sobject(sobject)}/{_record_id(record_id)}"

    async def _chunked(
        self,
        items: list[Any],
        ids: list[str | None],
        send: Callable[[list[Any]], Awaitable[list[SaveResult]]],
    ) -> list[SaveResult]:
        """Send `items` in chunks of 200, a few at once; assemble the results in order."""
        if not items:
            return []
        starts = range(0, len(items), COLLECTION_MAX_RECORDS)

        async def bounded(start: int) -> list[SaveResult]:
            async with self._chunk_slots:
                return await send(items[start : start + COLLECTION_MAX_RECORDS])

        outcomes = await asyncio.gather(*(bounded(s) for s in starts), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, errors.APIError | errors.BudgetExhaustedError):
                raise failure
        if failures and len(failures) == len(outcomes):
            raise failures[0]
        results: list[SaveResult] = []
        for start, outcome in zip(starts, outcomes, strict=True):
            if isinstance(outcome, errors.APIError | errors.BudgetExhaustedError):
                detail = errors.ErrorDetail(code=outcome.code, message=outcome.message)
                size = min(COLLECTION_MAX_RECORDS, len(items) - start)
                budget = outcome if isinstance(outcome, errors.BudgetExhaustedError) else None
                retriable = budget is not None or isinstance(outcome, errors.RetriableAPIError)
                results.extend(
                    SaveResult(ids[start + i], False, (detail,), retriable, budget)
                    for i in range(size)
                )
                log.warning(
                    "salesforce_chunk_failed",
                    code=outcome.code,
                    status=outcome.status,
                    records=size,
                )
            elif isinstance(outcome, list):
                results.extend(outcome)
        return results

    async def _request(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[httpx.Response], T],
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        ok_statuses: frozenset[int] | set[int] = frozenset(),
        gone_ok: bool = False,
        parse_retried: Callable[[httpx.Response], T] | None = None,
    ) -> T:
        """One logical call through the shared call chain (`http.CallChain`).

        `path` is relative to the instance URL. `parse` reads a successful answer (a malformed
        one raises `RetriableAPIError` BAD_RESPONSE, retried like any transient failure);
        `parse_retried`, when given, reads the answer of a second or later attempt. `gone_ok`:
        a 404 / ENTITY_IS_DELETED on a second or later attempt counts as success (a delete whose
        first answer was lost).
        """

        async def build() -> httpx.Request:
            url = await self._auth.instance_url() + path
            try:
                request = self._http.build_request(
                    method,
                    url,
                    params=dict(params) if params else None,
                    json=json,
                    headers={"Accept": "application/json", **(headers or {})},
                )
            except httpx.InvalidURL:  # a query far beyond any limit (httpx caps URLs at 64 KiB)
                size = len(quote_plus(str((params or {}).get("q", "")))) + len(url)
                raise _uri_too_long(size) from None
            size = len(str(request.url).encode())
            if size > MAX_URI_BYTES:
                raise _uri_too_long(size)
            return request

        def accept(response: httpx.Response, attempt: int) -> bool:
            if response.status_code in ok_statuses:
                return True
            return gone_ok and attempt > 1 and classify(response)[0].code in _GONE_CODES

        def read(response: httpx.Response, attempt: int) -> T:
            if response.status_code >= 300 and response.status_code not in ok_statuses:
                response = _synthetic_no_content(response)  # accepted: gone on a retry
            reader = parse_retried if parse_retried and attempt > 1 else parse
            return reader(response)

        return await self._chain.call(build, read=read, accept=accept, idempotent=idempotent)

    async def _track_usage(self, response: httpx.Response) -> None:
        header = response.headers.get("sforce-limit-info")
        if not header:
            return
        m = _API_USAGE.search(header)
        if m:
            self._usage = ApiUsage(used=int(m.group(1)), limit=int(m.group(2)))


def _sobject(name: str) -> str:
    if not _SOBJECT.match(name):
        raise ValueError(f"not an sObject name: {name!r}")
    return name


def _is_record_id(value: object) -> bool:
    return isinstance(value, str) and _RECORD_ID.match(value) is not None


def _record_id(record_id: str) -> str:
    if not _is_record_id(record_id):
        raise errors.PermanentAPIError(
            system=SYSTEM,
            status=None,
            code="MALFORMED_ID",
            message=f"{record_id!r} is not a 15- or 18-character Salesforce id",
        )
    return record_id


def _route(path: str) -> str:
    """The URL path with record ids and query locators replaced, for logs and call records."""
    parts = []
    for seg in path.split("/"):
        if _RECORD_ID.match(seg) and not seg.isalpha():
            parts.append("{id}")
        elif seg.startswith("01g") and "-" in seg:
            parts.append("{locator}")
        else:
            parts.append(quote(seg, safe=""))
    return "/".join(parts)


def _assign_header(auto_assign: bool) -> dict[str, str]:
    return {"Sforce-Auto-Assign": "TRUE" if auto_assign else "FALSE"}


def _no_content(response: httpx.Response) -> None:
    return None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    return http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "answer")


def _synthetic_no_content(response: httpx.Response) -> httpx.Response:
    return httpx.Response(204, request=response.request)


def _gone_as_success(result: SaveResult) -> SaveResult:
    if not result.success and result.errors and all(e.code in _GONE_CODES for e in result.errors):
        return SaveResult(result.id, True, ())
    return result
