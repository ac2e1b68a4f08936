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
      email is refused (400 code 54); by default (AMPSEA on) duplicates are allowed. A create
      (or an upsert that would create) whose email only prospects in the recycle bin hold is
      refused, AMPSEA or not: 400 code 54 naming them (UNCONFIRMED, CHOICE: strict; the real
      API keeps deleted prospects behind `do/undelete` and `secondaryDeletedSearch`, and what a
      plain create does beside one is undocumented).
    * `PATCH /prospects/{id}?fields=` updates: 200 with the requested fields, 204 without `fields`.
    * `POST /prospects/do/upsertLatestByEmail` with `{"matchEmail", "prospect", "fields",
      "secondaryDeletedSearch"?}` updates the most recently updated live prospect with that email
      (200) or creates one (201 with `Location`). CHOICE: the statuses are UNCONFIRMED upstream
      (Segment's tests assume 201); clients must accept both.
    * `POST /prospects/do/undelete` with `{"matchEmail", "fields"?}` restores the deleted
      prospect with the latest `lastActivityAt` for that email: 200 with the requested fields;
      none: 404 code 109 (UNCONFIRMED body and answer: CHOICE, shaped like the upsert).
      The direct state methods `recycle_prospect` / `restore_prospect` do what a Pardot user
      does in the recycle bin (both move `updatedAt`: CHOICE). A seed prospect may carry
      `"isDeleted": true` (it starts in the recycle bin).
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
    * Custom fields (`xxx__c`) are readable (wire-formats C.3a, recorded) and writable here.
      UNCONFIRMED: whether v5 writes them (pardot/api-docs#235 saw a create refused with code
      154); CHOICE: accepted, so a configured custom-field mapping can be exercised.
    * `salesforceOwnerId` (a Salesforce 005 User id) assigns the prospect to the Pardot user whose
      `salesforceId` matches; CHOICE, following RULES section 6: when no Pardot user matches, the
      value is stored and the prospect stays assigned to its current user.
    * CHOICE: every accepted write bumps `updatedAt` (and `updatedById` to the token's user when it
      maps to a Pardot user), even when no value changed. This is the pessimistic model: a client
      sees its own writes come back in the change feed and must recognise them.
    * Timestamps have whole-second precision, so many rows share one `updatedAt` (as on the real
      API); they render in the account time zone with its offset (seed `timezone`, default -04:00).

Imports
    * The Import API (`/api/v5/imports`: create, CSV batches, submit, status, error CSV), with
      its limits and a deterministic asynchronous processing model: see
      `syncd.simulators.pardot.imports`. `POST /__sim__/imports` sets its fault knob.

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

from syncd.simulators.pardot.schema import (
    API_PREFIX,
    DEFAULT_BUSINESS_UNIT_ID,
    EMAIL_FIELDS,
    MSG_CONCURRENT,
    MSG_DAILY,
    MSG_NOT_FOUND,
    PROSPECT_FIELDS,
    PROSPECT_READ_ONLY,
    USER_FIELDS,
    WARNING_CHAIN_CAP,
    WARNING_RECYCLE_BIN,
)
from syncd.simulators.pardot.simulator import PardotSimulator
from syncd.simulators.pardot.wire import ApiError

__all__ = [
    "API_PREFIX",
    "DEFAULT_BUSINESS_UNIT_ID",
    "EMAIL_FIELDS",
    "MSG_CONCURRENT",
    "MSG_DAILY",
    "MSG_NOT_FOUND",
    "PROSPECT_FIELDS",
    "PROSPECT_READ_ONLY",
    "USER_FIELDS",
    "WARNING_CHAIN_CAP",
    "WARNING_RECYCLE_BIN",
    "ApiError",
    "PardotSimulator",
]
