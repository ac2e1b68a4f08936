"""A faithful in-memory Pardot (Account Engagement) API v5 server: prospects, users and sent emails.

`PardotSimulator(seed).app` is an ASGI app that tests drive through `httpx.ASGITransport` and that
`syncd simulate` / `syncd demo` serve over real HTTP. It follows `reference/wire-formats.md`
section C; where the public documentation is silent, the choice made here is written down below
(each one marked CHOICE) so a reader can tell a documented behaviour from a modelled one.

Requests and headers
    * Every `/api/v5` call needs `Authorization: Bearer <token>` (a token issued by the
      Salesforce simulator into the shared `TokenRegistry`) and `Pardot-Business-Unit-Id`.
    * No Authorization header (or not a Bearer one): 401 code 49 "Access Denied" (measured on the
      real API for an unauthenticated call). Unknown or expired token: 401 code 184.
    * Missing business unit header: 400 code 181. A value that is not an 18-character `0Uv...` id:
      400 code 182. A well-formed id of another business unit: 401 code 201 (CHOICE: the status is
      undocumented; 201 replaced the 401 "Access Denied" answer for this case, so 401 was kept).
    * Error bodies are `{"code": int, "message": str}`. Unknown routes: 404 code 198; a wrong verb:
      405 code 60; a body that is not JSON: 400 code 150; an empty body: 400 code 152.

Queries (`GET /api/v5/objects/{prospects|users|emails}`)
    * `fields` is required (400 code 13 when missing, CHOICE of code). An unknown name in
      `fields` (queries, reads and writes alike): 400 code 51 `Invalid parameter: fields. It
      contains an invalid or unknown field: X.` (wire-formats C.3a, recorded in
      pardot/api-docs#235). An unknown name in `orderBy`: 400 code 5 (CHOICE of code).
    * `limit` default 200, at most 1000 (else 400 code 23). `orderBy` is one of the collection's
      sortable fields with an optional `ASC`/`DESC` (default `id ASC`); ties break by id in the
      same direction. `deleted=all|true|false` (default false; anything else: 400 code 27).
    * Typed filters: `<field>GreaterThan[OrEqualTo]`, `<field>LessThan[OrEqualTo]` (numbers),
      `<field>After[OrEqualTo]`, `<field>Before[OrEqualTo]` (datetimes) and `<field>=v` (equality).
      At most 3 distinct filtered fields (400 code 209); `deleted` is not counted (CHOICE).
      Unknown parameters: 400 code 5, so a client's typo never silently widens a query.
    * Datetime parameters must carry an offset or `Z` (CHOICE: naive values are refused with 400
      code 7 rather than guessed; the real API reads them in the account's time zone). A `+` that
      was not URL-encoded arrives as a space and is refused the same way, as on the real API.
    * Answer: `{"values": [...requested fields only...], "nextPageToken", "nextPageUrl"}`; both
      null on the last page. `nextPageUrl` carries `fields` and `nextPageToken`, so it can be
      fetched as-is. A follow-up page sends `nextPageToken` with only `fields` beside it (anything
      else: 400 code 5). Tokens expire 4 h after issue (400 code 210); unknown tokens: 400 code 211.
    * The chain of one query stops after `page_token_record_cap` records (100,000; seed key of
      the same name): that page has no token and the header
      `Pardot-Warning: 203;Record count for nextPageToken sequence has been exceeded. No page token
      returned.`
    * CHOICE: a token resumes *after the last row served* in the query's order (keyset), and rows
      are read as of each page request. A row changed between pages moves (its `updatedAt` grows),
      so it may be served again later in the same chain; it is never skipped when ordering by
      `updatedAt ASC`. Reads are not served from a lagging cache (the real API may lag 60 s).

Prospect writes
    * `POST /prospects?fields=` creates (201, `Location`, the requested fields; CHOICE: without
      `fields` the body is `{"id": n}`). `email` is required (400 code 153) and must be a valid
      address (400 code 4). With the seed key `ampsea: false`, a second prospect with the same
      email is refused (400 code 54); by default (AMPSEA on) duplicates are allowed.
    * `PATCH /prospects/{id}?fields=` updates: 200 with the requested fields, 204 without `fields`.
    * `POST /prospects/do/upsertLatestByEmail` with `{"matchEmail", "prospect", "fields",
      "secondaryDeletedSearch"?}` updates the most recently updated live prospect with that email
      (200) or creates one (201 with `Location`). CHOICE: the statuses are UNCONFIRMED upstream
      (Segment's tests assume 201); clients must accept both.
    * `DELETE /prospects/{id}` moves it to the recycle bin (204). Reading a deleted prospect: 404
      code 192 with `Pardot-Warning: 201;Record In Recycle Bin`, unless `deleted=true|all` is
      sent; updating it: 400 code 219; deleting it again: 404 code 192.
    * An id that names no record (read, update or delete, any collection): 404 code 109 `The
      requested record was not found.` (wire-formats C.3a: recorded on DELETE; on GET and PATCH
      UNCONFIRMED, CHOICE: the same answer). Older texts use 192 for a missing object; this
      simulator keeps 192 for a record in the recycle bin (CHOICE), so clients meet both codes
      and must treat both as "not found".
    * A write body is checked as a whole before anything is written; one bad property refuses
      the whole write:
      - an unknown property: 400 code 154 `Invalid property in request: X` (wire-formats C.3a,
        recorded in pardot/api-docs#235). It applies to create, PATCH, the upsert's top-level
        properties and its `prospect` object.
      - a read-only property (`PROSPECT_READ_ONLY`, the list of wire-formats C.3a: the fields
        Salesforce's own connector sets, `salesforceId` included, the computed `grade` and the
        system fields): 400 code 180 `One or more of the specified fields are invalid: X is
        read-only` naming every read-only property sent. UNCONFIRMED: the real code for this case
        is undocumented (154 or 180 are the likely ones); CHOICE: 180, "invalid fields for
        create/update" in the official code list (C.6).
      - `userId` together with `salesforceOwnerId` (C.3: "send either, not both"): 400 code 125
        `Cannot accept both userId and salesforceOwnerId.` UNCONFIRMED: the v5 code; CHOICE:
        125, the v3/v4 code for `user_id` + `crm_owner_fid`.
      - an unknown `userId`: 400 code 10.
    * Every write attempt is counted per field name (`written()`, `GET /__sim__/written`,
      refused ones included), and an attempt carrying a read-only field is reported to
      `syncd.simulators.written` (the test suite fails the run on one; see that module).
    * `salesforceOwnerId` (a Salesforce 005 User id) assigns the prospect to the Pardot user whose
      `salesforceId` matches; CHOICE, following RULES section 6: when no Pardot user matches, the
      value is stored and the prospect stays assigned to its current user.
    * CHOICE: every accepted write bumps `updatedAt` (and `updatedById` to the token's user when it
      maps to a Pardot user), even when no value changed. This is the pessimistic model: a client
      sees its own writes come back in the change feed and must recognise them.
    * Timestamps have whole-second precision, so many rows share one `updatedAt` (as on the real
      API); they render in the account time zone with its offset (seed `timezone`, default -04:00).

Users, emails, limits
    * `GET /users` and `/users/{id}` (sortable by id, createdAt, updatedAt; filter `email`, ids,
      dates). `GET /emails` and `/emails/{id}`: one record per email sent to a prospect (sortable
      by id and sentAt; filters ids, `sentAt*`, `prospectId`, `listEmailId`). `prospectId` may
      be null (wire-formats C.3a; seeds may hold such rows) and `updatedAt` is readable (C.3a;
      it defaults to `sentAt`; filtering by it is UNCONFIRMED, so refused). For an incremental
      email feed use `orderBy=id` with `idGreaterThan=<last id>` (ids only grow, and no two emails
      share one; `sentAtAfterOrEqualTo` bounds the first read).
    * At most `max_concurrency` (5) requests in flight; the next one is answered code 66 "You have
      exceeded your concurrent request limit. Please wait, before trying again" with HTTP
      `rate_limit_status` (seed; 429 by default, 400 allowed). The daily limit (`daily_api_limit`,
      25,000) counts every authenticated call and resets at midnight in the account time zone;
      past it, code 122 "Daily API rate limit met" with the same status. No `Retry-After`.
      `X-Return-Api-Usage: 1` adds the header `x-api-usage: <calls today>` (its real format is
      undocumented).
    * Injected faults (`SimulatorMiddleware`): 500 answers the JSON body of code 183; 503 answers an
      HTML "Service Unavailable" page, as a load balancer in front of the API would (CHOICE).
    * Control routes (not counted, not faulted): `GET /__sim__/counters`, `POST
      /__sim__/reset-counters`, `GET|POST /__sim__/faults` (read or change the injected faults),
      `GET /__sim__/written` (per object, the count of write attempts that carried each field;
      reset-counters leaves it alone, so it covers the simulator's whole life).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.requests import Request

from syncd.simulators import written
from syncd.simulators._base import (
    SIM_PREFIX,
    ASGIApp,
    CannedResponse,
    Clock,
    Counters,
    FaultBodies,
    Faults,
    Receive,
    Scope,
    Send,
    SimulatorMiddleware,
    TokenRegistry,
    json_bytes,
    route_of,
    update_faults,
    wall_clock,
)

Kind = Literal["int", "str", "bool", "datetime", "float"]

API_PREFIX = "/api/v5/objects/"
DEFAULT_BUSINESS_UNIT_ID = "0Uv000000000001AAA"
DEFAULT_PAGE_TOKEN_RECORD_CAP = 100_000
PAGE_TOKEN_TTL = timedelta(hours=4)
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MAX_FILTERED_FIELDS = 3

MSG_CONCURRENT = "You have exceeded your concurrent request limit. Please wait, before trying again"
MSG_DAILY = "Daily API rate limit met"
WARNING_CHAIN_CAP = (
    "203;Record count for nextPageToken sequence has been exceeded. No page token returned."
)
WARNING_RECYCLE_BIN = "201;Record In Recycle Bin"
MSG_NOT_FOUND = "The requested record was not found."
UPSERT_PROPERTIES = frozenset({"matchEmail", "prospect", "fields", "secondaryDeletedSearch"})

_BU_ID = re.compile(r"^0Uv[a-zA-Z0-9]{12}(?:[a-zA-Z0-9]{3})?$")
_EMAIL = re.compile(
    r"^[^@\s,;<>()\[\]\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
_CUSTOM_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")

PROSPECT_FIELDS: dict[str, Kind] = {
    "id": "int",
    "email": "str",
    "firstName": "str",
    "lastName": "str",
    "salutation": "str",
    "jobTitle": "str",
    "company": "str",
    "website": "str",
    "phone": "str",
    "fax": "str",
    "addressOne": "str",
    "addressTwo": "str",
    "city": "str",
    "state": "str",
    "zip": "str",
    "country": "str",
    "territory": "str",
    "score": "int",
    "grade": "str",
    "campaignId": "int",
    "salesforceCampaignId": "str",
    "prospectAccountId": "int",
    "profileId": "int",
    "lifecycleStageId": "int",
    "recentInteraction": "str",
    "convertedAt": "datetime",
    "convertedFromObjectName": "str",
    "convertedFromObjectType": "str",
    "emailBouncedAt": "datetime",
    "password": "str",
    "campaignParameter": "str",
    "contentParameter": "str",
    "mediumParameter": "str",
    "sourceParameter": "str",
    "termParameter": "str",
    "userId": "int",
    "assignedToId": "int",
    "salesforceId": "str",
    "salesforceLeadId": "str",
    "salesforceContactId": "str",
    "salesforceAccountId": "str",
    "salesforceOwnerId": "str",
    "salesforceUrl": "str",
    "salesforceLastSync": "datetime",
    "isDoNotEmail": "bool",
    "optedOut": "bool",
    "isDoNotCall": "bool",
    "isEmailHardBounced": "bool",
    "isReviewed": "bool",
    "isStarred": "bool",
    "doNotSell": "bool",
    "isDeleted": "bool",
    "lastActivityAt": "datetime",
    "firstActivityAt": "datetime",
    "firstAssignedAt": "datetime",
    "comments": "str",
    "notes": "str",
    "source": "str",
    "createdAt": "datetime",
    "updatedAt": "datetime",
    "createdById": "int",
    "updatedById": "int",
}
# Read-only prospect fields (wire-formats C.3a, from the `#read-only-fields` tables of the v5
# prospect reference): a write carrying one is refused whole. `salesforceId` is absent from that
# table (UNCONFIRMED; one third-party destination writes it), but it is the native connector's
# link, so this simulator refuses it like the other connector-owned fields (CHOICE).
PROSPECT_READ_ONLY = frozenset(
    {
        # set by Salesforce's own connector
        "salesforceId",
        "salesforceLeadId",
        "salesforceContactId",
        "salesforceAccountId",
        "salesforceUrl",
        "salesforceLastSync",
        "salesforceCampaignId",
        # computed
        "grade",
        "doNotSell",
        "lifecycleStageId",
        "recentInteraction",
        "convertedAt",
        "emailBouncedAt",
        "password",
        "campaignParameter",
        "contentParameter",
        "mediumParameter",
        "sourceParameter",
        "termParameter",
        # system
        "id",
        "createdAt",
        "updatedAt",
        "createdById",
        "updatedById",
        "isDeleted",
        "assignedToId",
        "lastActivityAt",
        "firstActivityAt",
        "firstAssignedAt",
        "isEmailHardBounced",
    }
)
USER_FIELDS: dict[str, Kind] = {
    "id": "int",
    "email": "str",
    "firstName": "str",
    "lastName": "str",
    "username": "str",
    "jobTitle": "str",
    "role": "str",
    "roleName": "str",
    "salesforceId": "str",
    "isDeleted": "bool",
    "createdAt": "datetime",
    "updatedAt": "datetime",
    "createdById": "int",
    "updatedById": "int",
}
EMAIL_FIELDS: dict[str, Kind] = {
    "id": "int",
    "prospectId": "int",
    "name": "str",
    "subject": "str",
    "type": "str",
    "sentAt": "datetime",
    "listId": "int",
    "listEmailId": "int",
    "emailTemplateId": "int",
    "campaignId": "int",
    "isOperational": "bool",
    "clientType": "str",
    "createdById": "int",
    "updatedAt": "datetime",
}


@dataclass(frozen=True)
class _Spec:
    """What one collection accepts: fields, sortable fields, filterable fields."""

    name: str
    fields: dict[str, Kind]
    sortable: tuple[str, ...]
    filterable: frozenset[str]
    has_deleted: bool
    custom_fields: bool = False

    @cached_property
    def blank(self) -> dict[str, Any]:
        return {name: (False if kind == "bool" else None) for name, kind in self.fields.items()}

    @cached_property
    def booleans(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.fields.items() if kind == "bool")

    def kind(self, name: str) -> Kind | None:
        kind = self.fields.get(name)
        if kind is not None:
            return kind
        if self.custom_fields and _CUSTOM_FIELD.match(name):
            return "str"
        return None


PROSPECTS = _Spec(
    "prospects",
    PROSPECT_FIELDS,
    ("id", "createdAt", "updatedAt"),
    frozenset(
        {"id", "createdAt", "updatedAt", "lastActivityAt", "email", "userId", "assignedToId"}
    ),
    has_deleted=True,
    custom_fields=True,
)
USERS = _Spec(
    "users",
    USER_FIELDS,
    ("id", "createdAt", "updatedAt"),
    frozenset({"id", "createdAt", "updatedAt", "email"}),
    has_deleted=True,
)
EMAILS = _Spec(
    "emails",
    EMAIL_FIELDS,
    ("id", "sentAt"),
    frozenset({"id", "sentAt", "prospectId", "listEmailId"}),
    has_deleted=False,
)

# Filter parameter suffix -> comparison (longest suffixes first).
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("GreaterThanOrEqualTo", "ge"),
    ("LessThanOrEqualTo", "le"),
    ("AfterOrEqualTo", "ge"),
    ("BeforeOrEqualTo", "le"),
    ("GreaterThan", "gt"),
    ("LessThan", "lt"),
    ("After", "gt"),
    ("Before", "lt"),
)
_RESERVED_PARAMS = frozenset({"fields", "limit", "orderBy", "deleted", "nextPageToken"})


class ApiError(Exception):
    """An answer in the Pardot v5 error shape (raised inside handlers, rendered by the app)."""

    def __init__(
        self, status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


@dataclass
class _Answer:
    status: int
    body: Any = None  # JSON value; None: no body
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Filter:
    field: str
    op: str  # eq gt ge lt le
    value: Any


@dataclass(frozen=True)
class _Query:
    spec: _Spec
    order_field: str
    desc: bool
    filters: tuple[_Filter, ...]
    deleted: str
    limit: int


@dataclass
class _PageToken:
    query: _Query
    last_key: tuple[Any, int]
    issued_at: datetime
    served: int  # records served so far in this chain


class _Table:
    """Rows by id, with a sorted (value, id) index per sortable field, and an email index."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.rows: dict[int, dict[str, Any]] = {}
        self.index: dict[str, list[tuple[Any, int]]] = {f: [] for f in spec.sortable}
        self.by_email: dict[str, set[int]] = {}
        self.next_id = 1

    def load(self, rows: Iterable[dict[str, Any]]) -> None:
        """Bulk insert (seed): one sort per index instead of one insertion each."""
        for row in rows:
            self.rows[row["id"]] = row
            self._index_email(row)
            self.next_id = max(self.next_id, row["id"] + 1)
        for name in self.spec.sortable:
            self.index[name] = sorted((r[name], r["id"]) for r in self.rows.values())

    def insert(self, row: dict[str, Any]) -> None:
        self.rows[row["id"]] = row
        self._index_email(row)
        self.next_id = max(self.next_id, row["id"] + 1)
        for name in self.spec.sortable:
            insort(self.index[name], (row[name], row["id"]))

    def update(self, row_id: int, changes: dict[str, Any]) -> None:
        row = self.rows[row_id]
        for name in self.spec.sortable:
            if name in changes and changes[name] != row[name]:
                keys = self.index[name]
                del keys[bisect_left(keys, (row[name], row_id))]
                insort(keys, (changes[name], row_id))
        if "email" in changes and changes["email"] != row.get("email"):
            self._unindex_email(row)
            row.update(changes)
            self._index_email(row)
        else:
            row.update(changes)

    def _index_email(self, row: dict[str, Any]) -> None:
        if row.get("email"):
            self.by_email.setdefault(row["email"].lower(), set()).add(row["id"])

    def _unindex_email(self, row: dict[str, Any]) -> None:
        if row.get("email"):
            ids = self.by_email.get(row["email"].lower())
            if ids is not None:
                ids.discard(row["id"])
                if not ids:
                    del self.by_email[row["email"].lower()]

    def scan(
        self, query: _Query, after: tuple[Any, int] | None, count: int
    ) -> list[dict[str, Any]]:
        """Up to `count` rows matching `query`, in its order, strictly after the key `after`."""
        rest = [f for f in query.filters if not (f.field == "email" and f.op == "eq")]
        out: list[dict[str, Any]] = []
        for _key, row_id in self._candidates(query, after):
            row = self.rows[row_id]
            if _deleted_ok(row, query.deleted) and all(_match(row, f) for f in rest):
                out.append(row)
                if len(out) >= count:
                    break
        return out

    def _candidates(
        self, query: _Query, after: tuple[Any, int] | None
    ) -> Iterator[tuple[Any, int]]:
        order = query.order_field
        emails = [f.value for f in query.filters if f.field == "email" and f.op == "eq"]
        if emails:
            ids = set.intersection(*(self.by_email.get(e.lower(), set()) for e in emails))
            keys = sorted(((self.rows[i][order], i) for i in ids), reverse=query.desc)
            for key in keys:
                if after is None or (key < after if query.desc else key > after):
                    yield key
            return
        keys = self.index[order]
        lo, hi = 0, len(keys)
        for f in query.filters:
            if f.field != order:
                continue
            if f.op in ("gt", "ge", "eq"):
                lo = max(lo, _lower(keys, f.value, inclusive=f.op != "gt"))
            if f.op in ("lt", "le", "eq"):
                hi = min(hi, _upper(keys, f.value, inclusive=f.op != "lt"))
        if query.desc:
            if after is not None:
                hi = min(hi, bisect_left(keys, after))
            for i in range(hi - 1, lo - 1, -1):
                yield keys[i]
        else:
            if after is not None:
                lo = max(lo, bisect_right(keys, after))
            for i in range(lo, hi):
                yield keys[i]


def _lower(keys: list[tuple[Any, int]], value: Any, *, inclusive: bool) -> int:
    return bisect_left(keys, (value, -1)) if inclusive else bisect_right(keys, (value, 1 << 62))


def _upper(keys: list[tuple[Any, int]], value: Any, *, inclusive: bool) -> int:
    return bisect_right(keys, (value, 1 << 62)) if inclusive else bisect_left(keys, (value, -1))


def _deleted_ok(row: dict[str, Any], mode: str) -> bool:
    if mode == "all" or "isDeleted" not in row:
        return True
    return bool(row["isDeleted"]) == (mode == "true")


def _match(row: dict[str, Any], f: _Filter) -> bool:
    value = row.get(f.field)
    if f.op == "eq":
        if isinstance(value, str) and isinstance(f.value, str):
            return value.lower() == f.value.lower()
        return bool(value == f.value)
    if value is None:
        return False
    if f.op == "gt":
        return bool(value > f.value)
    if f.op == "ge":
        return bool(value >= f.value)
    if f.op == "lt":
        return bool(value < f.value)
    return bool(value <= f.value)


def _parse_offset(text: str) -> timezone:
    m = re.fullmatch(r"([+-])(\d{2}):(\d{2})", text)
    if not m:
        raise ValueError(f"pardot seed: timezone {text!r} is not an offset like '-04:00'")
    sign = -1 if m.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


class PardotSimulator:
    """The Pardot v5 simulator: seeded state, the ASGI `app`, counters, limits and faults."""

    def __init__(
        self,
        seed: dict[str, Any] | None = None,
        *,
        tokens: TokenRegistry | None = None,
        faults: Faults | None = None,
        clock: Clock = wall_clock,
        base_url: str = "http://127.0.0.1:8402",
    ) -> None:
        seed = dict(seed or {})
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens if tokens is not None else TokenRegistry(clock)
        self.counters = Counters()
        self._written = written.WrittenCounter()
        self.business_unit_id: str = str(seed.get("business_unit_id") or DEFAULT_BUSINESS_UNIT_ID)
        self.daily_api_limit: int = int(seed.get("daily_api_limit", 25_000))
        self.max_concurrency: int = int(seed.get("max_concurrency", 5))
        self.rate_limit_status: int = int(seed.get("rate_limit_status", 429))
        if self.rate_limit_status not in (400, 429):
            raise ValueError("pardot seed: rate_limit_status must be 429 or 400")
        self.page_token_record_cap: int = int(
            seed.get("page_token_record_cap", DEFAULT_PAGE_TOKEN_RECORD_CAP)
        )
        self.ampsea: bool = bool(seed.get("ampsea", True))
        self.tz = _parse_offset(str(seed.get("timezone", "-04:00")))
        self.api_usage: int = 0
        self._usage_day = self._today()
        self.in_flight = 0
        self._lock = threading.RLock()
        self._page_tokens: dict[str, _PageToken] = {}
        self.users_table = _Table(USERS)
        self.prospects_table = _Table(PROSPECTS)
        self.emails_table = _Table(EMAILS)
        self._load_seed(seed)
        self.faults = faults if faults is not None else Faults.from_seed(seed.get("faults"))
        inner = SimulatorMiddleware(
            self._asgi,
            counters=self.counters,
            faults=self.faults,
            bodies=FaultBodies(server_error=_server_error, rate_limited=self._rate_limited),
        )
        self.app: ASGIApp = _ConcurrencyGate(self, inner)

    # ----- seed -----------------------------------------------------------------------------

    def _load_seed(self, seed: dict[str, Any]) -> None:
        now = _epoch(self.clock())
        users = [self._seed_row(USERS, u, i, now) for i, u in enumerate(seed.get("users") or [])]
        self.users_table.load(_unique(users, "user"))
        prospects = []
        for i, raw in enumerate(seed.get("prospects") or []):
            row = self._seed_row(PROSPECTS, raw, i, now)
            if not row.get("email"):
                raise ValueError(f"pardot seed: prospect #{i} (id {row['id']}) has no email")
            if row.get("userId") is not None and row["userId"] not in self.users_table.rows:
                raise ValueError(
                    f"pardot seed: prospect #{i} (id {row['id']}): userId {row['userId']} "
                    "is not a seeded user"
                )
            row["assignedToId"] = row.get("userId")
            prospects.append(row)
        self.prospects_table.load(_unique(prospects, "prospect"))
        emails = []
        for i, raw in enumerate(seed.get("emails") or []):
            row = self._seed_row(EMAILS, raw, i, now)
            pid = row.get("prospectId")
            if pid is not None and pid not in self.prospects_table.rows:
                raise ValueError(
                    f"pardot seed: email #{i} (id {row['id']}): prospectId "
                    f"{pid} is not a seeded prospect (null is allowed: a send with no prospect)"
                )
            if row.get("sentAt") is None:
                row["sentAt"] = now
            row["updatedAt"] = row.get("updatedAt") or row["sentAt"]
            emails.append(row)
        self.emails_table.load(_unique(emails, "email"))

    def _seed_row(self, spec: _Spec, raw: Any, i: int, now: int) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ValueError(f"pardot seed: {spec.name[:-1]} #{i} is not an object")
        row = _blank(spec)
        for name, value in raw.items():
            kind = spec.kind(name)
            if kind is None:
                raise ValueError(f"pardot seed: {spec.name[:-1]} #{i}: unknown field {name!r}")
            try:
                row[name] = self._coerce(kind, value)
            except (TypeError, ValueError) as exc:
                what = f"pardot seed: {spec.name[:-1]} #{i}"
                raise ValueError(f"{what}: field {name!r}: {exc}") from None
        if row.get("id") is None:
            row["id"] = 0  # numbered by _unique
        if "createdAt" in spec.fields:
            row["createdAt"] = row["createdAt"] or now
            row["updatedAt"] = row["updatedAt"] or row["createdAt"]
        for name in spec.booleans:
            if row[name] is None:
                row[name] = False
        return row

    def _coerce(self, kind: Kind, value: Any) -> Any:
        """A seed/user value in internal form (datetimes as epoch seconds)."""
        if value is None:
            return None
        if kind == "datetime":
            dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=self.tz)
            return _epoch(dt)
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"expected an integer, got {value!r}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"expected true or false, got {value!r}")
            return value
        if kind == "float":
            return float(value)
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value

    # ----- rendering ------------------------------------------------------------------------

    def render_time(self, epoch_s: int | None) -> str | None:
        if epoch_s is None:
            return None
        return datetime.fromtimestamp(epoch_s, self.tz).isoformat()

    def _render(self, spec: _Spec, row: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in fields:
            value = row.get(name)
            out[name] = self.render_time(value) if spec.kind(name) == "datetime" else value
        return out

    def _all_fields(self, spec: _Spec, row: dict[str, Any]) -> list[str]:
        return list(spec.fields) + sorted(k for k in row if k not in spec.fields)

    # ----- direct state access (a Pardot user's actions; not API calls) -----------------------

    def prospects(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every prospect (rendered as the API would, all fields), by id."""
        with self._lock:
            rows = sorted(self.prospects_table.rows.values(), key=lambda r: r["id"])
            return [
                self._render(PROSPECTS, r, self._all_fields(PROSPECTS, r))
                for r in rows
                if include_deleted or not r["isDeleted"]
            ]

    def get_prospect(self, prospect_id: int) -> dict[str, Any] | None:
        """One prospect (deleted ones too, with isDeleted true), or None."""
        with self._lock:
            row = self.prospects_table.rows.get(prospect_id)
            return (
                None
                if row is None
                else self._render(PROSPECTS, row, self._all_fields(PROSPECTS, row))
            )

    def add_prospect(self, fields: dict[str, Any]) -> int:
        """Create a prospect as a Pardot user would (any field; createdAt/updatedAt set now)."""
        with self._lock:
            now = _epoch(self.clock())
            row = self._seed_row(PROSPECTS, fields, len(self.prospects_table.rows), now)
            if not fields.get("createdAt"):
                row["createdAt"] = now
            if not fields.get("updatedAt"):
                row["updatedAt"] = now
            if row["id"] == 0:
                row["id"] = self.prospects_table.next_id
            elif row["id"] in self.prospects_table.rows:
                raise ValueError(f"prospect id {row['id']} already exists")
            row["assignedToId"] = row.get("userId")
            self.prospects_table.insert(row)
            return int(row["id"])

    def edit_prospect(self, prospect_id: int, fields: dict[str, Any]) -> None:
        """Change a prospect as a Pardot user would; bumps updatedAt (KeyError if unknown)."""
        with self._lock:
            if prospect_id not in self.prospects_table.rows:
                raise KeyError(f"no prospect {prospect_id}")
            changes: dict[str, Any] = {}
            for name, value in fields.items():
                kind = PROSPECTS.kind(name)
                if kind is None:
                    raise ValueError(f"unknown prospect field {name!r}")
                changes[name] = self._coerce(kind, value)
            if "userId" in changes:
                changes["assignedToId"] = changes["userId"]
            changes.setdefault("updatedAt", _epoch(self.clock()))
            self.prospects_table.update(prospect_id, changes)

    def add_email(self, fields: dict[str, Any]) -> int:
        """Record a sent email (prospectId, None allowed; subject; sentAt, default now)."""
        with self._lock:
            now = _epoch(self.clock())
            row = self._seed_row(EMAILS, fields, len(self.emails_table.rows), now)
            pid = row.get("prospectId")
            if pid is not None and pid not in self.prospects_table.rows:
                raise ValueError(f"email: prospectId {pid} is not a prospect")
            if row.get("sentAt") is None:
                row["sentAt"] = now
            row["updatedAt"] = row.get("updatedAt") or row["sentAt"]
            if row["id"] == 0:
                row["id"] = self.emails_table.next_id
            self.emails_table.insert(row)
            return int(row["id"])

    def users(self) -> list[dict[str, Any]]:
        """Every Pardot user, rendered as the API would."""
        with self._lock:
            rows = sorted(self.users_table.rows.values(), key=lambda r: r["id"])
            return [self._render(USERS, r, list(USER_FIELDS)) for r in rows]

    # ----- limits ---------------------------------------------------------------------------

    def _today(self) -> date:
        return self.clock().astimezone(self.tz).date()

    def _rate_limited(self) -> CannedResponse:
        return CannedResponse(
            self.rate_limit_status, json_bytes({"code": 66, "message": MSG_CONCURRENT})
        )

    def _charge_call(self) -> None:
        today = self._today()
        if today != self._usage_day:
            self._usage_day = today
            self.api_usage = 0
        if self.api_usage >= self.daily_api_limit:
            raise ApiError(self.rate_limit_status, 122, MSG_DAILY)
        self.api_usage += 1

    # ----- ASGI -----------------------------------------------------------------------------

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            if scope["path"].startswith(SIM_PREFIX):
                answer = self._control(request, await request.body())
            else:
                body = await request.body()
                with self._lock:
                    answer = self._handle(request, body)
        except ApiError as exc:
            answer = _Answer(
                exc.status, {"code": exc.code, "message": exc.message}, list(exc.headers)
            )
        await _send_answer(send, answer)

    def _control(self, request: Request, body: bytes = b"") -> _Answer:
        path = request.url.path
        if path == f"{SIM_PREFIX}/faults" and request.method in ("GET", "POST"):
            try:
                now = update_faults(self.faults, body if request.method == "POST" else b"{}")
            except ValueError as exc:
                raise ApiError(400, 1, str(exc)) from None
            return _Answer(200, now)
        if path == f"{SIM_PREFIX}/counters" and request.method == "GET":
            snap = self.counters.snapshot()
            snap["api_usage"] = self.api_usage
            snap["daily_api_limit"] = self.daily_api_limit
            return _Answer(200, snap)
        if path == f"{SIM_PREFIX}/reset-counters" and request.method == "POST":
            self.counters.reset()
            return _Answer(200, {"ok": True})
        if path == f"{SIM_PREFIX}/written" and request.method == "GET":
            return _Answer(200, self.written())
        raise ApiError(404, 198, "Endpoint not found")

    def _authenticate(self, request: Request) -> int | None:
        """The Pardot user id behind the request's token (None if it maps to none), or ApiError."""
        auth = request.headers.get("authorization")
        if not auth or not auth.lower().startswith("bearer "):
            raise ApiError(401, 49, "Access Denied")
        issued = self.tokens.validate(auth[7:].strip())
        if issued is None:
            raise ApiError(
                401, 184, "access_token is invalid, unknown, or malformed: Inactive token"
            )
        bu = request.headers.get("pardot-business-unit-id")
        if bu is None or not bu.strip():
            raise ApiError(400, 181, "A required header is missing: Pardot-Business-Unit-Id")
        if not _BU_ID.match(bu.strip()):
            raise ApiError(400, 182, "Invalid header value: Pardot-Business-Unit-Id")
        if bu.strip() != self.business_unit_id:
            raise ApiError(
                401,
                201,
                "Business Unit specified in Pardot-Business-Unit-Id header not found or inactive.",
            )
        for user in self.users_table.rows.values():
            if user.get("salesforceId") and user["salesforceId"] == issued.user_id:
                return int(user["id"])
        return None

    def _handle(self, request: Request, body: bytes) -> _Answer:
        path = request.url.path
        if not path.startswith(API_PREFIX):
            raise ApiError(404, 198, "Endpoint not found")
        self._note_write(request.method, path, body)
        actor = self._authenticate(request)
        self._charge_call()
        parts = path[len(API_PREFIX) :].strip("/").split("/")
        answer = self._route(request, parts, body, actor)
        if request.headers.get("x-return-api-usage") == "1":
            answer.headers.append(("x-api-usage", str(self.api_usage)))
        return answer

    def written(self) -> dict[str, dict[str, int]]:
        """Per object, how many write attempts carried each field (refused ones included)."""
        return self._written.snapshot()

    def _note_write(self, method: str, path: str, body: bytes) -> None:
        """Count the prospect fields a write carried, before any check (refused writes count)."""
        parts = path[len(API_PREFIX) :].strip("/").split("/")
        if parts[0] != "prospects" or method not in ("POST", "PATCH"):
            return
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if parts[1:] == ["do", "upsertLatestByEmail"]:
            data = data.get("prospect")
            if not isinstance(data, dict):
                return
        elif not (len(parts) == 1 and method == "POST") and not (
            len(parts) == 2 and method == "PATCH"
        ):
            return
        self._written.note("Prospect", data)
        read_only = [name for name in data if name in PROSPECT_READ_ONLY]
        if read_only:
            written.report_read_only("pardot", "Prospect", read_only, f"{method} {route_of(path)}")

    def _route(self, request: Request, parts: list[str], body: bytes, actor: int | None) -> _Answer:
        method = request.method
        tables = {
            "prospects": self.prospects_table,
            "users": self.users_table,
            "emails": self.emails_table,
        }
        table = tables.get(parts[0])
        if table is None:
            raise ApiError(404, 198, "Endpoint not found")
        if len(parts) == 1:
            if method == "GET":
                return self._query(request, table)
            if method == "POST" and table is self.prospects_table:
                return self._create(request, _json_object(body), actor)
            raise ApiError(405, 60, "Invalid HTTP request method")
        if parts[1:] == ["do", "upsertLatestByEmail"] and table is self.prospects_table:
            if method != "POST":
                raise ApiError(405, 60, "Invalid HTTP request method")
            return self._upsert(request, _json_object(body), actor)
        if len(parts) != 2 or not parts[1].isdigit():
            raise ApiError(404, 198, "Endpoint not found")
        row_id = int(parts[1])
        if method == "GET":
            return self._read(request, table, row_id)
        if table is not self.prospects_table or method not in ("PATCH", "DELETE"):
            raise ApiError(405, 60, "Invalid HTTP request method")
        if method == "PATCH":
            return self._update(request, row_id, _json_object(body), actor)
        return self._delete(row_id, actor)

    # ----- reads ----------------------------------------------------------------------------

    def _fields(self, spec: _Spec, raw: str | None, *, required: bool = True) -> list[str]:
        if raw is None or not raw.strip():
            if required:
                raise ApiError(400, 13, "One or more required parameters are missing: fields")
            return []
        names = [n.strip() for n in raw.split(",") if n.strip()]
        for name in names:
            if spec.kind(name) is None:
                raise ApiError(
                    400,
                    51,
                    f"Invalid parameter: fields. It contains an invalid or unknown field: {name}.",
                )
        return names

    def _query(self, request: Request, table: _Table) -> _Answer:
        params = dict(request.query_params)
        spec = table.spec
        fields = self._fields(spec, params.get("fields"))
        token = params.get("nextPageToken")
        if token is not None:
            extra = sorted(set(params) - {"fields", "nextPageToken"})
            if extra:
                raise ApiError(
                    400,
                    5,
                    "Invalid query parameters: only fields may be sent with nextPageToken "
                    f"(got {', '.join(extra)})",
                )
            state = self._page_tokens.get(token)
            if state is None or state.query.spec is not spec:
                raise ApiError(400, 211, "Page token is invalid.")
            if self.clock() - state.issued_at >= PAGE_TOKEN_TTL:
                self._page_tokens.pop(token, None)
                raise ApiError(400, 210, "Page token has expired.")
            return self._page(table, state.query, fields, state.last_key, state.served)
        return self._page(table, self._parse_query(spec, params), fields, None, 0)

    def _parse_query(self, spec: _Spec, params: dict[str, str]) -> _Query:
        limit = DEFAULT_LIMIT
        if "limit" in params:
            try:
                limit = int(params["limit"])
            except ValueError:
                limit = -1
            if not 1 <= limit <= MAX_LIMIT:
                raise ApiError(
                    400, 23, f"Invalid value specified for limit: must be 1 to {MAX_LIMIT}"
                )
        order_field, desc = self._order_by(spec, params.get("orderBy"))
        deleted = params.get("deleted", "false").lower()
        if deleted not in ("all", "true", "false"):
            raise ApiError(400, 27, "Parameter deleted must be all, true or false")
        filters = []
        for name, raw in params.items():
            if name in _RESERVED_PARAMS:
                continue
            filters.append(self._filter(spec, name, raw))
        distinct = {f.field for f in filters}
        if len(distinct) > MAX_FILTERED_FIELDS:
            raise ApiError(
                400,
                209,
                "Too many fields have filters: The max number of 3 distinct fields with filters "
                "was exceeded for this query.",
            )
        return _Query(spec, order_field, desc, tuple(filters), deleted, limit)

    def _order_by(self, spec: _Spec, raw: str | None) -> tuple[str, bool]:
        if raw is None or not raw.strip():
            return "id", False
        words = raw.split()
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if len(words) > 2 or direction not in ("ASC", "DESC") or words[0] not in spec.sortable:
            raise ApiError(
                400,
                5,
                f"Invalid query parameters: unknown field name or direction in orderBy {raw!r}; "
                f"sortable: {', '.join(spec.sortable)}",
            )
        return words[0], direction == "DESC"

    def _filter(self, spec: _Spec, name: str, raw: str) -> _Filter:
        field_name, op = name, "eq"
        for suffix, suffix_op in _SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                field_name, op = name[: -len(suffix)], suffix_op
                break
        kind = spec.kind(field_name)
        if kind is None or field_name not in spec.filterable:
            raise ApiError(
                400, 5, f"Invalid query parameters: {name!r} is not a filter of {spec.name}"
            )
        is_time = op != "eq" and name[len(field_name) :].startswith(("After", "Before"))
        if op != "eq" and (kind == "datetime") != is_time:
            raise ApiError(
                400, 5, f"Invalid query parameters: {name!r} is not a filter of {spec.name}"
            )
        return _Filter(field_name, op, self._param_value(kind, name, raw))

    def _param_value(self, kind: Kind, name: str, raw: str) -> Any:
        if kind == "datetime":
            try:
                dt = datetime.fromisoformat(raw.strip())
            except ValueError:
                dt = None
            if dt is None or dt.tzinfo is None:
                raise ApiError(
                    400,
                    7,
                    f"Invalid timestamp for {name}: {raw!r}; use ISO 8601 with an offset "
                    "(URL-encode '+' as %2B)",
                )
            return dt.timestamp()
        if kind == "int":
            try:
                return int(raw)
            except ValueError:
                raise ApiError(400, 16, f"Invalid ID: {name} must be an integer") from None
        if kind == "bool":
            if raw not in ("true", "false"):
                raise ApiError(400, 50, f"Invalid boolean for {name}")
            return raw == "true"
        return raw

    def _page(
        self,
        table: _Table,
        query: _Query,
        fields: list[str],
        after: tuple[Any, int] | None,
        served: int,
    ) -> _Answer:
        rows = table.scan(query, after, query.limit + 1)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        served += len(rows)
        headers: list[tuple[str, str]] = []
        token: str | None = None
        if more and served >= self.page_token_record_cap:
            headers.append(("Pardot-Warning", WARNING_CHAIN_CAP))
        elif more:
            last = rows[-1]
            token = secrets.token_urlsafe(32)
            self._prune_tokens()
            self._page_tokens[token] = _PageToken(
                query, (last[query.order_field], last["id"]), self.clock(), served
            )
        next_url = None
        if token is not None:
            qs = urlencode({"fields": ",".join(fields), "nextPageToken": token})
            next_url = f"{self.base_url}{API_PREFIX}{table.spec.name}?{qs}"
        values = [self._render(table.spec, r, fields) for r in rows]
        return _Answer(
            200, {"values": values, "nextPageToken": token, "nextPageUrl": next_url}, headers
        )

    def _prune_tokens(self) -> None:
        if len(self._page_tokens) < 10_000:
            return
        now = self.clock()
        for key in [k for k, t in self._page_tokens.items() if now - t.issued_at >= PAGE_TOKEN_TTL]:
            del self._page_tokens[key]

    def _read(self, request: Request, table: _Table, row_id: int) -> _Answer:
        spec = table.spec
        fields = self._fields(spec, request.query_params.get("fields"))
        deleted = request.query_params.get("deleted", "false").lower()
        row = table.rows.get(row_id)
        if row is None:
            raise ApiError(404, 109, MSG_NOT_FOUND)
        if spec.has_deleted and row["isDeleted"] and deleted not in ("true", "all"):
            raise ApiError(
                404,
                192,
                "Object specified does not exist",
                (("Pardot-Warning", WARNING_RECYCLE_BIN),),
            )
        return _Answer(200, self._render(spec, row, fields))

    # ----- writes ---------------------------------------------------------------------------

    def _write_values(self, data: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """Validated internal values for a prospect create/update body (or ApiError)."""
        unknown = next((k for k in data if PROSPECTS.kind(k) is None), None)
        if unknown is not None:
            raise ApiError(400, 154, f"Invalid property in request: {unknown}")
        read_only = sorted(k for k in data if k in PROSPECT_READ_ONLY)
        if read_only:
            # UNCONFIRMED code (see the module docstring): 180.
            raise ApiError(
                400,
                180,
                "One or more of the specified fields are invalid: "
                + ", ".join(read_only)
                + (" is" if len(read_only) == 1 else " are")
                + " read-only",
            )
        if "userId" in data and "salesforceOwnerId" in data:
            raise ApiError(400, 125, "Cannot accept both userId and salesforceOwnerId.")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = PROSPECTS.kind(name)
            assert kind is not None
            try:
                values[name] = self._coerce(kind, value)
            except (TypeError, ValueError):
                code = {"int": 56, "bool": 50, "datetime": 57}.get(kind, 154)
                raise ApiError(400, code, f"Invalid value for field {name}") from None
        if "email" in values and (not values["email"] or not _EMAIL.match(values["email"])):
            raise ApiError(400, 4, "Invalid prospect email address")
        if values.get("userId") is not None:
            user = self.users_table.rows.get(values["userId"])
            if user is None or user["isDeleted"]:
                raise ApiError(400, 10, "Invalid user ID")
        if "userId" in values:
            values["assignedToId"] = values["userId"]
        owner = values.get("salesforceOwnerId")
        if owner:
            for user in self.users_table.rows.values():
                if user.get("salesforceId") == owner and not user["isDeleted"]:
                    values["userId"] = values["assignedToId"] = user["id"]
                    break
        if not self.ampsea and "email" in values:
            others = self.prospects_table.by_email.get(values["email"].lower(), set())
            if any(
                i != (current or {}).get("id") and not self.prospects_table.rows[i]["isDeleted"]
                for i in others
            ):
                raise ApiError(400, 54, "Email address is already in use")
        return values

    def _new_prospect(self, values: dict[str, Any], actor: int | None) -> dict[str, Any]:
        now = _epoch(self.clock())
        row = _blank(PROSPECTS)
        row.update(values)
        row.update(
            id=self.prospects_table.next_id,
            createdAt=now,
            updatedAt=now,
            createdById=actor,
            updatedById=actor,
            isDeleted=False,
        )
        row["assignedToId"] = row.get("userId")
        self.prospects_table.insert(row)
        return row

    def _create(self, request: Request, data: dict[str, Any], actor: int | None) -> _Answer:
        fields = self._fields(PROSPECTS, request.query_params.get("fields"), required=False)
        if not data.get("email"):
            raise ApiError(400, 153, "Missing required property in request: email")
        row = self._new_prospect(self._write_values(data, None), actor)
        return self._created(row, fields)

    def _created(self, row: dict[str, Any], fields: list[str]) -> _Answer:
        location = f"{self.base_url}{API_PREFIX}prospects/{row['id']}"
        body = self._render(PROSPECTS, row, fields) if fields else {"id": row["id"]}
        return _Answer(201, body, [("Location", location)])

    def _apply_update(self, row: dict[str, Any], values: dict[str, Any], actor: int | None) -> None:
        values = dict(values)
        values["updatedAt"] = max(_epoch(self.clock()), row["updatedAt"])
        if actor is not None:
            values["updatedById"] = actor
        self.prospects_table.update(row["id"], values)

    def _update(
        self, request: Request, row_id: int, data: dict[str, Any], actor: int | None
    ) -> _Answer:
        fields = self._fields(PROSPECTS, request.query_params.get("fields"), required=False)
        row = self.prospects_table.rows.get(row_id)
        if row is None:
            raise ApiError(404, 109, MSG_NOT_FOUND)
        if row["isDeleted"]:
            raise ApiError(
                400, 219, "Deleted records can't be updated. Please undelete before updating."
            )
        self._apply_update(row, self._write_values(data, row), actor)
        if not fields:
            return _Answer(204)
        return _Answer(200, self._render(PROSPECTS, row, fields))

    def _delete(self, row_id: int, actor: int | None) -> _Answer:
        row = self.prospects_table.rows.get(row_id)
        if row is None:
            raise ApiError(404, 109, MSG_NOT_FOUND)
        if row["isDeleted"]:
            raise ApiError(404, 192, "Object specified does not exist")
        self._apply_update(row, {"isDeleted": True}, actor)
        return _Answer(204)

    def _upsert(self, request: Request, data: dict[str, Any], actor: int | None) -> _Answer:
        unknown = next((k for k in data if k not in UPSERT_PROPERTIES), None)
        if unknown is not None:
            raise ApiError(400, 154, f"Invalid property in request: {unknown}")
        match_email = data.get("matchEmail")
        prospect = data.get("prospect")
        if not isinstance(match_email, str) or not match_email:
            raise ApiError(400, 153, "Missing required property in request: matchEmail")
        if not isinstance(prospect, dict):
            raise ApiError(400, 153, "Missing required property in request: prospect")
        raw_fields = data.get("fields", request.query_params.get("fields"))
        if isinstance(raw_fields, list):
            raw_fields = ",".join(str(f) for f in raw_fields)
        fields = self._fields(PROSPECTS, raw_fields, required=False)
        if not _EMAIL.match(match_email):
            raise ApiError(400, 4, "Invalid prospect email address")
        table = self.prospects_table
        ids = table.by_email.get(match_email.lower(), set())
        live = [table.rows[i] for i in ids if not table.rows[i]["isDeleted"]]
        if not live and data.get("secondaryDeletedSearch"):
            live = [table.rows[i] for i in ids]
        if live:
            row = max(live, key=lambda r: (r["updatedAt"], r["id"]))
            values = self._write_values(prospect, row)
            if row["isDeleted"]:
                values["isDeleted"] = False
            self._apply_update(row, values, actor)
            body = self._render(PROSPECTS, row, fields) if fields else {"id": row["id"]}
            return _Answer(200, body)
        created = self._new_prospect(
            self._write_values({"email": match_email, **prospect}, None), actor
        )
        return self._created(created, fields)


def _blank(spec: _Spec) -> dict[str, Any]:
    """A row with every field null, except booleans, which the API answers as false."""
    return dict(spec.blank)


def _unique(rows: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    """Rows with their given ids kept (duplicates refused) and missing ids numbered after them."""
    seen: set[int] = set()
    for i, row in enumerate(rows):
        if row["id"]:
            if row["id"] in seen:
                raise ValueError(f"pardot seed: {what} #{i}: duplicate id {row['id']}")
            seen.add(row["id"])
    next_id = max(seen, default=0) + 1
    for row in rows:
        if not row["id"]:
            row["id"] = next_id
            next_id += 1
    return rows


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ApiError(400, 152, "Request body can't be empty")
    try:
        value = json.loads(body)
    except ValueError:
        raise ApiError(400, 150, "Input needs to be valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, 150, "Input needs to be valid JSON: expected an object")
    return value


SERVICE_UNAVAILABLE_HTML = (
    b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>Service Unavailable</h1><p>The server is temporarily unable to service your request."
    b" Please try again later.</p></body></html>"
)


def _server_error(status: int) -> CannedResponse:
    if status == 503:
        return CannedResponse(503, SERVICE_UNAVAILABLE_HTML, "text/html; charset=utf-8")
    body = {"code": 183, "message": "An internal error occurred, please try your request again"}
    return CannedResponse(status, json_bytes(body))


async def _send_answer(send: Send, answer: _Answer) -> None:
    body = b"" if answer.body is None else json_bytes(answer.body)
    headers = [(k.lower().encode(), v.encode()) for k, v in answer.headers]
    if answer.body is not None:
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _ConcurrencyGate:
    """Outermost layer: answers code 66 when more than `max_concurrency` calls are in flight.

    It sits outside `SimulatorMiddleware` so that injected latency counts as time in flight, as a
    slow answer does on the real API.
    """

    def __init__(self, sim: PardotSimulator, app: ASGIApp) -> None:
        self.sim = sim
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SIM_PREFIX):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        if sim.in_flight >= sim.max_concurrency:
            sim.counters.record(scope["method"], scope["path"])
            sim.counters.faults["concurrent_limit"] += 1
            await _send_answer(
                send, _Answer(sim.rate_limit_status, {"code": 66, "message": MSG_CONCURRENT})
            )
            return
        sim.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            sim.in_flight -= 1
