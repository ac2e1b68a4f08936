"""Pardot (Account Engagement) API v5 client: prospect feed and writes, users, sent emails.

The only code that knows Pardot v5 URLs and JSON (wire-formats.md section C). Every call sends
`Authorization: Bearer <Salesforce access token>` (from a `TokenSource`) and
`Pardot-Business-Unit-Id`; at most `max_concurrency` calls are in flight (Pardot allows 5).

Errors, classified by the v5 body code (`{"code": int, "message": str}`), not by the HTTP status
(the status of the limit answers varies between 400 and 429):

- 66 (concurrent limit; retried after `CONCURRENCY_RETRY_S`, since Pardot sends no
  `Retry-After`), 183 (internal error), 214 (timeout), 202 (minute limit), 5xx, 429, timeouts,
  dropped connections, HTML pages and truncated or malformed JSON -> `RetriableAPIError`.
- 122 (daily limit) -> `BudgetExhaustedError`: never hot-retried, the pipeline pauses Pardot.
- 184 (or any other 401) -> the token is renewed once per call (`tokens.refresh(stale)`, the
  shared `http.TokenRenewal` auth flow) and the call is sent again; a second refusal ->
  `AuthError` naming what to check.
- 49 / 181 / 182 / 201 -> `AuthError` naming the setting to fix (`pardot.business_unit_id`,
  `pardot.base_url`, the user's Account Engagement access).
- Any other 4xx -> `PermanentAPIError` with the API's code and message kept whole (the error
  queue shows them): 51 (an unknown name in `fields`: `Invalid parameter: fields. It contains
  an invalid or unknown field: X.`), 154 (an unknown property in a write body: `Invalid property
  in request: X`), 180 (invalid fields for create/update; a read-only property in a write body
  is refused as 154 or 180, UNCONFIRMED which), 219 (deleted record), 4 (invalid email), ...
- Not found: 404 code 109 `The requested record was not found.` (the v5 answer) and code 192
  (older texts: object does not exist) both mean "not found" (wire-formats C.3a):
  `get_prospect` returns None, `delete_prospect` counts it as done.

Retries and idempotency (the one `http.CallChain` of both clients): reads, updates, upserts and
deletes are retried under the `RetryPolicy`. `create_prospect` is not idempotent (a POST whose
answer was lost may have created the prospect), so it is retried only when the error proves the
request was not processed (code 66, 429, no connection made); otherwise the error is raised at
once and the caller re-matches by email. Every HTTP exchange is reported to `call_hooks`.

Records are returned as Pardot sends them: only the requested fields, datetimes as ISO 8601
strings with the account's offset (`parse_datetime` turns them into aware datetimes). The feeds:

- `iter_prospects` reads `orderBy=updatedAt ASC` from `updatedAtAfterOrEqualTo` and follows
  `nextPageToken`. When a token chain ends early (the 100,000-record cap, `Pardot-Warning: 203`,
  or an expired token, code 210) it starts a new chain from the last `updatedAt` it yielded and
  skips the ids it already yielded at that instant. When a chain began and ended at the same
  instant (more records share it than one chain holds, as after a bulk load), it reads the rest
  of that instant by id (`updatedAt` pinned, `idGreaterThan`) and then goes on after it. It does
  not start again at that instant: each such chain would re-read every record already yielded
  there and yield only the few that syncd's own writes moved out of the instant meanwhile (a
  500,000-prospect first read crawled this way for minutes). A record changed while the feed
  runs may be yielded twice (with newer data): consumers coalesce by id. A repeated page token
  raises `PagingLoopError`.
- `iter_emails` reads `orderBy=id` with `idGreaterThan` (ids only grow and are unique, so the last
  id is an exact cursor); `sent_since` (`sentAtAfterOrEqualTo`) bounds the first read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import httpx

from syncd import errors, logs
from syncd.clients import http

log = logs.get(__name__)

SYSTEM = "pardot"
PROSPECTS = "/api/v5/objects/prospects"
USERS = "/api/v5/objects/users"
EMAILS = "/api/v5/objects/emails"
MAX_PAGE_SIZE = 1000
CONCURRENCY_RETRY_S = 1.0  # Pardot sends no Retry-After with code 66: a short pause, then retry
MINUTE_LIMIT_RETRY_S = 30.0
DEFAULT_USER_FIELDS = (
    "id",
    "email",
    "username",
    "firstName",
    "lastName",
    "salesforceId",
    "isDeleted",
)

T = TypeVar("T")
_Signal = http.Signal

_RETRIABLE_CODES = frozenset({66, 183, 202, 214})
_CONFIG_CODES = frozenset({49, 181, 182, 201})
_GONE_CODES = frozenset({"109", "192"})  # both "not found" (wire-formats C.3a)
_EXPIRED_TOKEN_CODE = "210"
_NUMERIC_SEGMENT = re.compile(r"/\d+(?=/|$)")


def parse_datetime(value: str) -> datetime:
    """A Pardot datetime (`2024-05-01T10:22:33-04:00`, or with `Z`) as an aware datetime.

    ValueError if it is not ISO 8601 or has no offset.
    """
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"datetime {value!r} has no UTC offset")
    return dt


def format_datetime(dt: datetime) -> str:
    """`dt` as a v5 filter value (whole seconds, with offset); naive datetimes are refused.

    Dropping the fraction moves an inclusive lower bound earlier, never later, so nothing is missed.
    """
    if dt.tzinfo is None:
        raise ValueError("Pardot filters need an aware datetime (with a UTC offset)")
    return dt.replace(microsecond=0).isoformat()


@dataclass
class _Page:
    values: list[dict[str, Any]]
    token: str | None
    warning: str | None


@dataclass
class _Chain:
    """How a token chain ended: `cut` when it stopped before the end of the result."""

    cut: bool = False
    reason: str = ""


@dataclass
class _Seen:
    """The last `updatedAt` yielded and the ids yielded at that instant (restart dedupe)."""

    last: datetime | None = None
    ids: set[int] = field(default_factory=set)
    yielded: int = 0

    def accept(self, row: dict[str, Any], when: datetime) -> bool:
        row_id = int(row["id"])
        if self.last is not None and when == self.last:
            if row_id in self.ids:
                return False
        elif self.last is None or when > self.last:
            self.last = when
            self.ids = set()
        self.ids.add(row_id)
        self.yielded += 1
        return True


@dataclass(frozen=True, slots=True)
class RawBody:
    """A request body sent as is, not as JSON (the Import API's multipart CSV batches)."""

    content: bytes
    content_type: str


class PardotClient:
    """Pardot API v5 calls for syncd; see the module docstring for errors and paging."""

    def __init__(
        self,
        *,
        base_url: str,
        business_unit_id: str,
        tokens: http.TokenSource,
        transport: httpx.AsyncBaseTransport | None = None,
        max_concurrency: int = 5,
        retry: http.RetryPolicy = http.RetryPolicy(),  # noqa: B008 - frozen, immutable
        timeout_s: float = 60.0,
        verify: bool = True,
        on_call: http.CallHook | None = None,
        call_hooks: Sequence[http.CallHook] = (),
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._http = http.build_http_client(
            base_url.rstrip("/"),
            transport=transport,
            timeout_s=timeout_s,
            verify=verify,
            max_connections=max_concurrency,
        )
        self._business_unit_id = business_unit_id
        self._chain = http.CallChain(
            system=SYSTEM,
            client=self._http,
            tokens=tokens,
            is_stale=_is_stale,
            classify=_classify_call,
            retry=retry,
            route=_route,
            hooks=[http.log_call, *call_hooks, *([on_call] if on_call else [])],
            slots=max_concurrency,
        )

    @property
    def call_hooks(self) -> list[http.CallHook]:
        """Called with a `CallRecord` for every HTTP exchange; append to add an observer."""
        return self._chain.hooks

    @property
    def calls_made(self) -> int:
        """HTTP exchanges made so far (token renewals' resends and failed ones included)."""
        return self._chain.calls_made

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> PardotClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- prospects -------------------------------------------------------------------------

    async def iter_prospects(
        self,
        fields: Sequence[str],
        *,
        updated_since: datetime | None = None,
        deleted: Literal["all", "true", "false"] | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """Prospects with `updatedAt >= updated_since`, oldest change first (see module doc).

        `id` and `updatedAt` are always requested (the feed needs them).
        """
        wanted = _with_fields(fields, "id", "updatedAt")
        base: dict[str, Any] = {"fields": wanted, "limit": _page_size(page_size)}
        if deleted is not None:
            base["deleted"] = deleted
        seen = _Seen()
        lower: tuple[datetime, bool] | None = (updated_since, True) if updated_since else None
        while True:
            params = {**base, "orderBy": "updatedAt ASC"}
            if lower is not None:
                key = "updatedAtAfterOrEqualTo" if lower[1] else "updatedAtAfter"
                params[key] = format_datetime(lower[0])
            chain = _Chain()
            before = seen.yielded
            async for row in self._follow(PROSPECTS, params, chain):
                if seen.accept(row, _row_time(row, "updatedAt")):
                    yield row
            if not chain.cut:
                return
            if seen.last is None:
                raise errors.PagingLoopError(
                    system=SYSTEM,
                    status=None,
                    code="PAGING_STALLED",
                    message=f"prospect query chain ended ({chain.reason}) before any record",
                )
            log.info("pardot_feed_restarted", reason=chain.reason, updated_at=seen.last.isoformat())
            began = lower[0].replace(microsecond=0) if lower is not None else None
            if seen.yielded == before or began == seen.last:
                # The chain never left one updatedAt: more records share it than a chain holds.
                # Read the rest of it by id; another chain from it would re-read them all.
                async for row in self._same_instant(base, seen):
                    yield row
                lower = (seen.last, False)
            else:
                lower = (seen.last, True)

    async def _same_instant(
        self, base: dict[str, Any], seen: _Seen
    ) -> AsyncIterator[dict[str, Any]]:
        assert seen.last is not None
        instant = format_datetime(seen.last)
        after_id: int | None = None
        while True:
            params = {
                **base,
                "orderBy": "id ASC",
                "updatedAtAfterOrEqualTo": instant,
                "updatedAtBeforeOrEqualTo": instant,
            }
            if after_id is not None:
                params["idGreaterThan"] = after_id
            chain = _Chain()
            last_id = after_id
            async for row in self._follow(PROSPECTS, params, chain):
                last_id = int(row["id"])
                if last_id in seen.ids:
                    # Yielded by an earlier chain. Ids only grow from here, so it is not met
                    # again: forget it (the set shrinks instead of holding the whole instant).
                    seen.ids.discard(last_id)
                    continue
                seen.yielded += 1
                yield row
            if not chain.cut:
                seen.ids = set()  # the caller goes on after this instant: nothing to skip
                return
            if last_id == after_id:
                raise _stalled("prospects sharing one updatedAt", chain.reason)
            after_id = last_id

    async def find_prospects_by_email(
        self, email: str, fields: Sequence[str], *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """The live prospects with this email (several when AMPSEA is on), by id;
        `include_deleted` (`deleted=all`) adds those in the recycle bin (request `isDeleted`)."""
        wanted = _with_fields(fields, "id")
        filters: dict[str, Any] = {"email": email}
        if include_deleted:
            filters["deleted"] = "all"
        return [row async for row in self._by_id(PROSPECTS, wanted, filters)]

    async def prospects_in_id_range(
        self,
        first_id: int,
        last_id: int,
        fields: Sequence[str],
        *,
        include_deleted: bool = False,
    ) -> list[dict[str, Any]]:
        """The live prospects with `first_id <= id <= last_id`, by id (pages of 1,000).

        One request replaces up to 1,000 `get_prospect` calls when the wanted ids are close
        together (the pipeline reads a batch's prospects this way when they are dense enough).
        `include_deleted` (`deleted=all`) adds those in the recycle bin (request `isDeleted`).
        """
        wanted = _with_fields(fields, "id")
        filters: dict[str, Any] = {
            "idGreaterThanOrEqualTo": int(first_id),
            "idLessThanOrEqualTo": int(last_id),
        }
        if include_deleted:
            filters["deleted"] = "all"
        return [row async for row in self._by_id(PROSPECTS, wanted, filters)]

    async def get_prospect(
        self, prospect_id: int, fields: Sequence[str], *, include_deleted: bool = False
    ) -> dict[str, Any] | None:
        """One prospect, or None if it does not exist or is in the recycle bin.

        `include_deleted` (`deleted=all`) also reads a prospect in the recycle bin (request
        `isDeleted` to tell it apart): a recycled prospect is skipped, not "not found".
        """
        params = {"fields": _fields(fields)}
        if include_deleted:
            params["deleted"] = "all"
        try:
            return await self._call(
                "GET",
                f"{PROSPECTS}/{int(prospect_id)}",
                params=params,
                read=_reader("prospect"),
            )
        except errors.PermanentAPIError as exc:
            if exc.code in _GONE_CODES:
                return None
            raise

    async def create_prospect(
        self, data: Mapping[str, Any], fields: Sequence[str]
    ) -> dict[str, Any]:
        """Create a prospect (`email` required); its requested fields. Not retried if ambiguous."""
        return await self._call(
            "POST",
            PROSPECTS,
            params={"fields": _fields(fields)},
            body=dict(data),
            idempotent=False,
            read=_reader("created prospect"),
        )

    async def update_prospect(
        self, prospect_id: int, data: Mapping[str, Any], fields: Sequence[str] = ("id",)
    ) -> dict[str, Any]:
        """Update (PATCH) a prospect; its requested fields ({} when Pardot answers 204)."""
        params = {"fields": _fields(fields)} if fields else None
        return await self._call(
            "PATCH",
            f"{PROSPECTS}/{int(prospect_id)}",
            params=params,
            body=dict(data),
            read=_reader("updated prospect"),
        )

    async def upsert_prospect_by_email(
        self, email: str, data: Mapping[str, Any], fields: Sequence[str]
    ) -> dict[str, Any]:
        """Update the most recently updated prospect with this email, or create one (200/201)."""
        body = {"matchEmail": email, "prospect": {"email": email, **data}, "fields": list(fields)}
        return await self._call(
            "POST",
            f"{PROSPECTS}/do/upsertLatestByEmail",
            body=body,
            read=_reader("upserted prospect"),
        )

    async def delete_prospect(self, prospect_id: int) -> None:
        """Move a prospect to the recycle bin; already deleted or unknown counts as done."""
        try:
            await self._call("DELETE", f"{PROSPECTS}/{int(prospect_id)}", read=_ignore)
        except errors.PermanentAPIError as exc:
            if exc.code not in _GONE_CODES:
                raise

    async def undelete_prospect_by_email(
        self, email: str, fields: Sequence[str] = ("id", "email", "isDeleted")
    ) -> dict[str, Any] | None:
        """Restore the recycled prospect with this email and the latest activity
        (`POST prospects/do/undelete`); its requested fields, or None when none is recycled.

        UNCONFIRMED: the v5 body and answer are undocumented; this sends `{"matchEmail",
        "fields"}` like upsertLatestByEmail (the simulator models that choice). A retry after
        a lost answer finds nothing left to restore and returns None: read the prospect to know.
        """
        try:
            return await self._call(
                "POST",
                f"{PROSPECTS}/do/undelete",
                body={"matchEmail": email, "fields": list(fields)},
                read=_reader("undeleted prospect"),
            )
        except errors.PermanentAPIError as exc:
            if exc.code in _GONE_CODES:
                return None
            raise

    # ----- users and emails ------------------------------------------------------------------

    async def list_users(self, fields: Sequence[str] = DEFAULT_USER_FIELDS) -> list[dict[str, Any]]:
        """Every active Pardot user, by id."""
        return [row async for row in self._by_id(USERS, _with_fields(fields, "id"), {})]

    async def iter_emails(
        self,
        fields: Sequence[str],
        *,
        after_id: int | None = None,
        sent_since: datetime | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Sent emails with id > `after_id` (and `sentAt >= sent_since`), by id."""
        filters: dict[str, Any] = {}
        if sent_since is not None:
            filters["sentAtAfterOrEqualTo"] = format_datetime(sent_since)
        async for row in self._by_id(EMAILS, _with_fields(fields, "id"), filters, after_id):
            yield row

    # ----- paging ----------------------------------------------------------------------------

    async def _by_id(
        self,
        path: str,
        fields: str,
        filters: dict[str, Any],
        after_id: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record matching `filters` in id order; a cut chain resumes after the last id."""
        while True:
            params: dict[str, Any] = {
                "fields": fields,
                "limit": MAX_PAGE_SIZE,
                "orderBy": "id ASC",
                **filters,
            }
            if after_id is not None:
                params["idGreaterThan"] = after_id
            chain = _Chain()
            start = after_id
            async for row in self._follow(path, params, chain):
                row_id = int(row["id"])
                if after_id is not None and row_id <= after_id:
                    continue
                after_id = row_id
                yield row
            if not chain.cut:
                return
            if after_id == start:
                raise _stalled(path, chain.reason)

    async def _follow(
        self, path: str, params: dict[str, Any], chain: _Chain
    ) -> AsyncIterator[dict[str, Any]]:
        """The records of one token chain; `chain.cut` says whether it stopped early."""
        page = await self._page(path, params)
        tokens: set[str] = set()
        while True:
            for row in page.values:
                yield row
            if page.token is None:
                if page.warning is not None and page.warning.startswith("203"):
                    chain.cut, chain.reason = True, "record cap (Pardot-Warning 203)"
                    log.info("pardot_token_chain_capped", path=path)
                return
            if page.token in tokens:
                raise errors.PagingLoopError(
                    system=SYSTEM,
                    status=200,
                    code="PAGING_LOOP",
                    message=f"nextPageToken repeated while reading {path}; the read was stopped",
                )
            tokens.add(page.token)
            try:
                page = await self._page(
                    path, {"fields": params["fields"], "nextPageToken": page.token}
                )
            except errors.PermanentAPIError as exc:
                if exc.code != _EXPIRED_TOKEN_CODE:
                    raise
                chain.cut, chain.reason = True, "page token expired (210)"
                return

    async def _page(self, path: str, params: dict[str, Any]) -> _Page:
        return await self._call("GET", path, params=params, read=lambda r: _read_page(path, r))

    # ----- one call --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
        read: Callable[[httpx.Response], T],
    ) -> T:
        """One API call through the shared call chain, its answer read by `read`."""

        headers = {"Pardot-Business-Unit-Id": self._business_unit_id}
        sent: dict[str, Any] = {"json": body}
        if isinstance(body, RawBody):  # the Import API's multipart CSV batches
            sent = {"content": body.content}
            headers["Content-Type"] = body.content_type

        async def build() -> httpx.Request:
            return self._http.build_request(method, path, params=params, headers=headers, **sent)

        return await self._chain.call(
            build, read=lambda response, _: read(response), idempotent=idempotent
        )


class _StaleToken(errors.AuthError):
    """A 401 / code 184: the token may be renewed once before this becomes an `AuthError`."""


def _route(path: str) -> str:
    return _NUMERIC_SEGMENT.sub("/{id}", path)


def _is_stale(response: httpx.Response) -> bool:
    return isinstance(_classify(response), _StaleToken)


def _classify_call(response: httpx.Response) -> http.Classified:
    """The error of an answer for the call chain, and whether it proves Pardot did not act."""
    error = _classify(response)
    if isinstance(error, _StaleToken):
        # Reached only once the token was renewed (or the call's one renewal is spent).
        error = errors.AuthError(
            system=SYSTEM,
            status=error.status,
            code=error.code,
            message=f"{error.message}; a fresh Salesforce token was refused too: check "
            "that the connected app has the pardot_api scope and that the Salesforce user "
            "is synced to the Account Engagement business unit",
        )
    return error, _not_processed(error)


def _classify(response: httpx.Response) -> _Signal | None:
    """The error an answer carries (None for 2xx); never raises."""
    status = response.status_code
    if status < 300:
        return None
    try:
        payload = http.read_json(SYSTEM, response)
    except errors.RetriableAPIError as exc:
        if status == 401:
            return _StaleToken(system=SYSTEM, status=status, code="401", message=exc.message)
        return exc
    code: int | None = None
    message = f"HTTP {status}"
    if isinstance(payload, dict):
        if isinstance(payload.get("code"), int):
            code = payload["code"]
        if isinstance(payload.get("message"), str):
            message = payload["message"]
    return _error_for(status, code, message)


def _error_for(status: int, code: int | None, message: str) -> _Signal:
    kw: dict[str, Any] = {
        "system": SYSTEM,
        "status": status,
        "code": str(code) if code is not None else f"HTTP_{status}",
        "message": message,
    }
    if code == 122:
        return errors.BudgetExhaustedError(**kw)
    if code == 66:
        return errors.RetriableAPIError(**kw, retry_after_s=CONCURRENCY_RETRY_S)
    if code == 202:
        return errors.RetriableAPIError(**kw, retry_after_s=MINUTE_LIMIT_RETRY_S)
    if code in _RETRIABLE_CODES:
        return errors.RetriableAPIError(**kw)
    if code in _CONFIG_CODES:
        kw["message"] = f"{message}: {_CONFIG_HINTS[code]}"
        return errors.AuthError(**kw)
    if code == 184 or status == 401:
        return _StaleToken(**kw)
    if status >= 500 or status == 429:
        return errors.RetriableAPIError(**kw)
    return errors.PermanentAPIError(**kw)


_CONFIG_HINTS = {
    49: "the Salesforce user behind the token may not use this business unit; check "
    "pardot.business_unit_id and the user's Account Engagement access",
    181: "set pardot.business_unit_id (the 18-character id starting 0Uv)",
    182: "pardot.business_unit_id must be the 18-character id starting 0Uv",
    201: "check pardot.business_unit_id, and pardot.base_url (https://pi.pardot.com for "
    "production, https://pi.demo.pardot.com for sandboxes and developer orgs)",
}


def _not_processed(error: _Signal | None) -> bool:
    """The error proves the request was refused before Pardot acted on it."""
    if isinstance(error, errors.BudgetExhaustedError):
        return True
    return error is not None and (error.code in ("66", "HTTP_429") or error.status == 429)


def _read_page(path: str, response: httpx.Response) -> _Page:
    """A query answer as a `_Page`, or a `RetriableAPIError` BAD_RESPONSE saying what was wrong."""
    body = http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), f"GET {path}")
    values = body.get("values")
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise _bad_response(response, f"GET {path}: the answer has no 'values' list of records")
    if any("id" not in v for v in values):
        raise _bad_response(response, f"GET {path}: a record has no 'id'")
    token = body.get("nextPageToken")
    if token is not None and (not isinstance(token, str) or not token):
        raise _bad_response(response, f"GET {path}: 'nextPageToken' is not a string")
    return _Page(values, token, response.headers.get("pardot-warning"))


def _reader(what: str) -> Callable[[httpx.Response], dict[str, Any]]:
    """A reader of one-record answers: the JSON object, or {} for 204 No Content."""

    def read(response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 204:
            return {}
        return http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), what)

    return read


def _ignore(response: httpx.Response) -> None:
    return None


def _row_time(row: dict[str, Any], name: str) -> datetime:
    value = row.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError
        return parse_datetime(value)
    except ValueError:
        raise errors.RetriableAPIError(
            system=SYSTEM,
            status=200,
            code="BAD_RESPONSE",
            message=f"record {row.get('id')}: {name} is not an ISO 8601 datetime with offset",
        ) from None


def _bad_response(response: httpx.Response, message: str) -> errors.RetriableAPIError:
    return errors.RetriableAPIError(
        system=SYSTEM, status=response.status_code, code="BAD_RESPONSE", message=message
    )


def _stalled(what: str, reason: str) -> errors.PagingLoopError:
    return errors.PagingLoopError(
        system=SYSTEM,
        status=None,
        code="PAGING_STALLED",
        message=f"reading {what}: a new token chain ({reason}) brought nothing new",
    )


def _fields(fields: Sequence[str]) -> str:
    if isinstance(fields, str):
        raise TypeError("fields must be a sequence of field names, not one string")
    return ",".join(fields)


def _with_fields(fields: Sequence[str], *required: str) -> str:
    names = list(_fields(fields).split(",")) if fields else []
    names = [n for n in names if n]
    for name in required:
        if name not in names:
            names.append(name)
    return ",".join(names)


def _page_size(page_size: int) -> int:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
    return page_size
