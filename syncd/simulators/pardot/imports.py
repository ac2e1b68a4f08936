"""The Import API (v5): prospect upserts from CSV batches, processed asynchronously.

Sources: [DOC] developer.salesforce.com `pardot/guide/import-v5.html` (v5 matching rules),
[DOC4] `pardot/api-docs` `docs/kb/api-version-4/import.md` (flow, states, limits, expiry, part
names), [BLOG] developer.salesforce.com/blogs/2019/08/introducing-pardots-import-api (batch and
header rules), [SEC] a public v5 connector manifest that reads `GET /api/v5/imports` with the
fields of `IMPORT_FIELDS` (beside `/api/v5/bulk-actions` and `/api/v5/exports`), and
wire-formats.md C.3a. Each fact below names its source; CHOICE marks what no source settles.
The values (limits, the import record, CSV and multipart parsing) are in `import_values`.

Flow
    * `POST /api/v5/imports` creates an import. UNCONFIRMED path: `/api/v5/imports` (not under
      `/objects/`), CHOICE following [SEC], where every v5 job resource (imports, exports,
      bulk actions) sits beside `/objects`. `/api/v5/objects/imports` answers 404 code 198.
      - JSON body (`application/json`): `{"operation": "Upsert", "object": "Prospect",
        "restoreDeleted"?: bool, "createOnNoMatch"?: bool}` [DOC4; createOnNoMatch from DOC via
        wire-formats C.3a]. Only Upsert and Prospect exist (400 code 154 otherwise, CHOICE of
        code); an unknown property: 400 code 154 `Invalid property in request: X`.
      - or multipart/form-data with a part `importInput` (that JSON, plus `"status": "Ready"`
        to submit at once) and a part `importFile` (the first CSV) [DOC4 part names; UNCONFIRMED
        for v5, CHOICE: the v4 names, which the one public v5 client seen also sends].
      - Answer 200 [DOC4] with the import (`IMPORT_FIELDS`): `status` "Open" (or "Waiting" when
        submitted at once), `batchesRef` while Open.
    * `POST /api/v5/imports/{id}/batches`: multipart/form-data, one part `importFile` with a CSV
      whose first line is the header [DOC4]; 204 with no body [DOC4]. Only while Open.
    * `PATCH /api/v5/imports/{id}` `{"status": "Ready"}` submits (200, status "Waiting") [DOC4,
      where the property was `state`; v5 names it `status`, as [SEC] reads it]. An import with
      no batch cannot be submitted (400, CHOICE). Submitting one that is not Open: 400 code 60
      (CHOICE), so a client that lost the first answer must read the status, not resubmit.
    * `GET /api/v5/imports/{id}?fields=...` reads it; `fields` is required (400 code 13, as
      every v5 read; CHOICE: [SEC] always sends it). While Open: `batchesRef`; when Complete:
      `createdCount`, `updatedCount`, `errorCount`, and `errorsRef` when there are errors
      [DOC4]. UNCONFIRMED name: [SEC] lists `errorRef`, [DOC4] `errorsRef`; CHOICE `errorsRef`.
    * `GET /api/v5/imports/{id}/errors`: a CSV (`text/csv`) of the failed rows: the import's
      header plus a last column `error` holding the reason (CHOICE: the real layout is not
      documented; [DOC4]: "the log includes only records not inserted or updated").

CSV and matching
    * Header names are prospect field names (`PROSPECT_FIELDS`, custom `xxx__c`) or the match
      columns `matchId`, `matchSalesforceId`, `matchEmail` [DOC]. A name that is neither rejects
      the whole CSV [DOC: "validation fails and the CSV is rejected"]: 400 code 154 (CHOICE).
    * A read-only prospect field (`PROSPECT_READ_ONLY`, wire-formats C.3a) as a column rejects
      the CSV like a PATCH carrying it: 400 code 180 naming the fields (the PATCH rule, same
      UNCONFIRMED code). Every batch is counted in `written()` (each row one write attempt
      carrying its columns, refused batches included) and read-only columns are reported to
      `syncd.simulators.written`, as for any write.
    * Every batch of an import has the same header in the same order [BLOG]; another header:
      400 code 154 (CHOICE). Values follow RFC 4180 quoting [BLOG: "wrap the value in quotes"].
    * Per row, at most one match value may be set [DOC: "only one match value can be set per
      record. Otherwise, the record returns an error"]. No match value: the row creates a
      prospect (needs `email`) [DOC]. A match value naming no live prospect: created when
      `createOnNoMatch` (default true, CHOICE following [DOC4] "a new prospect is created when
      a matching prospect isn't found"), else an error row; a prospect in the recycle bin is
      restored only with `restoreDeleted`, else an error row [DOC4]. `matchEmail` matches the
      most recently updated live prospect with that email (as upsertLatestByEmail, CHOICE).
    * Un-assigning is refused [DOC: "Un-assigning prospects is NOT supported through Import"]:
      a row with a blank `userId` or `salesforceOwnerId` is an error row (CHOICE: refused rather
      than ignored, the strict reading; the real answer is undocumented, UNCONFIRMED).
    * An empty value sets the field to null [DOC4: "including blank (null) values, overwrite
      existing values"]. Numbers are decimal integers; booleans `true`/`false`/`1`/`0` (CHOICE).
      A row whose values the prospect write rules refuse (invalid email, unknown userId, both
      userId and salesforceOwnerId...) is an error row with the same message as the PATCH
      answer; the other rows of the import are not affected [DOC4].
    * Rows are applied in batch order, each like a PATCH (`updatedAt` moves, even if nothing
      changed, as in `writes.py`). [DOC4] does not guarantee the order; nothing here depends
      on it. Upserting the same values by `matchId` twice changes no field value.

Processing (asynchronous, modelled deterministically)
    * After submission an import answers "Waiting" to the PATCH, then "Processing" to the first
      `import_processing_polls` status reads (seed key, default 1), and the next read applies
      its rows and answers "Complete" (or "Failed"). No wall clock is involved.
    * Fault knob `import_fault` (seed key, or `POST /__sim__/imports {"fault": ...}`):
      "stall" keeps every submitted import Processing forever; "fail" ends it "Failed" with no
      row applied; null (default) processes normally. `POST /__sim__/imports` also takes
      `processing_polls`, and `{"process": true}` completes every submitted import at once.

Limits (v4 figures [DOC4, BLOG]; v5 UNCONFIRMED, enforced as stated)
    * At most 10 batches an import (the 11th: 400 code 188, CHOICE of code); each batch under
      10 MB (`import_max_batch_bytes`; 400 code 188); `import_daily_batch_cap` (1,000) batches
      and 10 GB a day for the business unit, reset with the daily API limit (400 code 188).
    * An Open import expires 24 h after creation (simulator clock): `isExpired` true, no more
      batches or submission (400 code 189, CHOICE). A completed import expires 7 days after
      completion; then its errors can no longer be read (400 code 189).
    * Every import call counts against the daily API limit and the concurrency limit, as any
      call [DOC4: "The daily Pardot API call limit and the concurrent Pardot API call limit
      apply to Import API calls"].
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from starlette.requests import Request

from syncd.simulators import written
from syncd.simulators.pardot.import_values import (
    CODE_EXPIRED,
    CODE_LIMIT,
    CREATE_PROPERTIES,
    DAILY_BATCH_CAP,
    DAILY_BYTES_CAP,
    IMPORT_FAULTS,
    IMPORT_FIELDS,
    IMPORTS,
    IMPORTS_PREFIX,
    MATCH_COLUMNS,
    MAX_BATCH_BYTES,
    MAX_BATCHES,
    OPEN_TTL,
    RESULT_TTL,
    _Import,
    _multipart,
    _parse_csv,
    errors_csv,
)
from syncd.simulators.pardot.schema import _EMAIL, PROSPECT_READ_ONLY, PROSPECTS
from syncd.simulators.pardot.table import _epoch
from syncd.simulators.pardot.wire import ApiError, _Answer, _json_object
from syncd.simulators.pardot.writes import WriteApi


class ImportApi(WriteApi):
    """The Import API routes on top of the prospect writes (see the module docstring)."""

    _imports: dict[int, _Import]
    _next_import_id: int
    import_processing_polls: int
    import_fault: str | None
    import_max_batch_bytes: int
    import_daily_batch_cap: int
    _import_day: date
    _import_batches_today: int
    _import_bytes_today: int

    def _init_imports(self, seed: dict[str, Any]) -> None:
        self._imports = {}
        self._next_import_id = 1
        self.import_processing_polls = int(seed.get("import_processing_polls", 1))
        fault = seed.get("import_fault")
        if fault not in IMPORT_FAULTS:
            raise ValueError("pardot seed: import_fault must be null, 'stall' or 'fail'")
        self.import_fault = fault
        self.import_max_batch_bytes = int(seed.get("import_max_batch_bytes", MAX_BATCH_BYTES))
        self.import_daily_batch_cap = int(seed.get("import_daily_batch_cap", DAILY_BATCH_CAP))
        self._import_day = self._today()
        self._import_batches_today = 0
        self._import_bytes_today = 0

    # ----- simulator-only controls ---------------------------------------------------------

    def imports_control(self, body: bytes) -> dict[str, Any]:
        """`POST /__sim__/imports`: set `fault` / `processing_polls`, or `process` all now."""
        update = json.loads(body or b"{}")
        if not isinstance(update, dict) or set(update) - {"fault", "processing_polls", "process"}:
            raise ValueError("imports control takes fault, processing_polls and process")
        if "fault" in update:
            if update["fault"] not in IMPORT_FAULTS:
                raise ValueError("fault must be null, 'stall' or 'fail'")
            self.import_fault = update["fault"]
        if "processing_polls" in update:
            polls = update["processing_polls"]
            if not isinstance(polls, int) or isinstance(polls, bool) or polls < 0:
                raise ValueError("processing_polls must be an integer >= 0")
            self.import_processing_polls = polls
        if update.get("process"):
            for imp in self._imports.values():
                if imp.status in ("Waiting", "Processing"):
                    self._finish(imp)
        return {
            "fault": self.import_fault,
            "processing_polls": self.import_processing_polls,
            "imports": {str(i.id): i.status for i in self._imports.values()},
        }

    # ----- routes --------------------------------------------------------------------------

    def _route_imports(
        self, request: Request, parts: list[str], body: bytes, actor: int | None
    ) -> _Answer:
        """`parts`: the path after `/api/v5/imports`, split on '/' (empty list for the root)."""
        method = request.method
        if not parts:
            if method != "POST":
                raise ApiError(405, 60, "Invalid HTTP request method")
            return self._create_import(request, body, actor)
        if not parts[0].isdigit():
            raise ApiError(404, 198, "Endpoint not found")
        imp = self._imports.get(int(parts[0]))
        if len(parts) == 1:
            if method not in ("GET", "PATCH"):
                raise ApiError(405, 60, "Invalid HTTP request method")
            if imp is None:
                raise ApiError(404, 109, "The requested record was not found.")
            if method == "GET":
                fields = self._fields(IMPORTS, request.query_params.get("fields"))
                self._poll(imp)
                return _Answer(200, self._render_import(imp, fields))
            return self._submit(imp, _json_object(body), actor)
        if len(parts) == 2 and parts[1] in ("batches", "errors"):
            if imp is None:
                raise ApiError(404, 109, "The requested record was not found.")
            if parts[1] == "batches":
                if method != "POST":
                    raise ApiError(405, 60, "Invalid HTTP request method")
                self._add_batch(imp, self._multipart_file(request, body, required=True), actor)
                return _Answer(204)
            if method != "GET":
                raise ApiError(405, 60, "Invalid HTTP request method")
            return self._errors_csv(imp)
        raise ApiError(404, 198, "Endpoint not found")

    def _create_import(self, request: Request, body: bytes, actor: int | None) -> _Answer:
        ctype = request.headers.get("content-type", "")
        csv_bytes: bytes | None = None
        if ctype.startswith("multipart/form-data"):
            parts = _multipart(ctype, body)
            raw = parts.get("importInput")
            if raw is None:
                raise ApiError(400, 153, "Missing required property in request: importInput")
            data = _json_object(raw)
            csv_bytes = parts.get("importFile")
        else:
            data = _json_object(body)
        unknown = next((k for k in data if k not in CREATE_PROPERTIES), None)
        if unknown is not None:
            raise ApiError(400, 154, f"Invalid property in request: {unknown}")
        if data.get("operation") != "Upsert":
            raise ApiError(400, 154, "Invalid value for operation: only Upsert is supported")
        if data.get("object") != "Prospect":
            raise ApiError(400, 154, "Invalid value for object: only Prospect is supported")
        for flag in ("restoreDeleted", "createOnNoMatch"):
            if flag in data and not isinstance(data[flag], bool):
                raise ApiError(400, 50, f"Invalid value for {flag}: expected true or false")
        submit = data.get("status")
        if submit not in (None, "Ready"):
            raise ApiError(400, 154, "Invalid value for status: only Ready may be set")
        if submit == "Ready" and csv_bytes is None:
            raise ApiError(400, 153, "Missing required property in request: importFile")
        now = _epoch(self.clock())
        imp = _Import(
            id=self._next_import_id,
            created_at=now,
            updated_at=now,
            created_by=actor,
            restore_deleted=bool(data.get("restoreDeleted", False)),
            create_on_no_match=bool(data.get("createOnNoMatch", True)),
        )
        if csv_bytes is not None:
            self._add_batch(imp, csv_bytes, actor)  # refused: no import is created
        self._next_import_id += 1
        self._imports[imp.id] = imp
        if submit == "Ready":
            imp.status = "Waiting"
        return _Answer(200, self._render_import(imp, list(IMPORT_FIELDS)))

    def _multipart_file(self, request: Request, body: bytes, *, required: bool) -> bytes:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(
                400, 150, "A batch is sent as multipart/form-data with an importFile part"
            )
        data = _multipart(ctype, body).get("importFile")
        if data is None:
            raise ApiError(400, 153, "Missing required property in request: importFile")
        return data

    # ----- batches -------------------------------------------------------------------------

    def _add_batch(self, imp: _Import, data: bytes, actor: int | None) -> None:
        self._expire(imp)
        if self._is_expired(imp):
            raise ApiError(400, CODE_EXPIRED, "Cannot add a batch: the import has expired")
        if imp.status != "Open":
            raise ApiError(
                400, 60, f"Cannot add a batch: the import is {imp.status}; add batches while Open"
            )
        header, rows = _parse_csv(data)
        names = [h for h in header if h not in MATCH_COLUMNS]
        for _ in rows:  # each row is one write attempt carrying its columns
            self._written.note("Prospect", names)
        read_only = sorted(n for n in names if n in PROSPECT_READ_ONLY)
        if read_only:
            written.report_read_only(
                "pardot", "Prospect", read_only, "POST /api/v5/imports/{id}/batches"
            )
        self._roll_import_day()
        if imp.batches >= MAX_BATCHES:
            raise ApiError(400, CODE_LIMIT, f"An import holds at most {MAX_BATCHES} batches")
        if len(data) >= self.import_max_batch_bytes:
            raise ApiError(
                400, CODE_LIMIT, f"A batch must be smaller than {self.import_max_batch_bytes} bytes"
            )
        if self._import_batches_today >= self.import_daily_batch_cap:
            raise ApiError(
                400, CODE_LIMIT, f"Daily import limit met: {self.import_daily_batch_cap} batches"
            )
        if self._import_bytes_today + len(data) > DAILY_BYTES_CAP:
            raise ApiError(400, CODE_LIMIT, "Daily import limit met: 10 GB")
        unknown = next(
            (h for h in header if h not in MATCH_COLUMNS and PROSPECTS.kind(h) is None), None
        )
        if unknown is not None:
            raise ApiError(400, 154, f"Invalid property in request: {unknown}")
        if len(set(header)) != len(header):
            raise ApiError(400, 154, "Invalid CSV header: a column is named twice")
        if read_only:
            raise ApiError(
                400,
                180,
                "One or more of the specified fields are invalid: "
                + ", ".join(read_only)
                + (" is" if len(read_only) == 1 else " are")
                + " read-only",
            )
        if imp.header is not None and header != imp.header:
            raise ApiError(
                400, 154, "Invalid CSV header: every batch must have the first batch's header"
            )
        imp.header = header
        imp.rows.extend(dict(zip(header, row, strict=True)) for row in rows)
        imp.batches += 1
        imp.updated_at = _epoch(self.clock())
        self._import_batches_today += 1
        self._import_bytes_today += len(data)

    def _roll_import_day(self) -> None:
        today = self._today()
        if today != self._import_day:
            self._import_day = today
            self._import_batches_today = 0
            self._import_bytes_today = 0

    # ----- state ---------------------------------------------------------------------------

    def _submit(self, imp: _Import, data: dict[str, Any], actor: int | None) -> _Answer:
        unknown = next((k for k in data if k != "status"), None)
        if unknown is not None:
            raise ApiError(400, 154, f"Invalid property in request: {unknown}")
        if data.get("status") != "Ready":
            raise ApiError(400, 154, "Invalid value for status: only Ready may be set")
        self._expire(imp)
        if self._is_expired(imp):
            raise ApiError(400, CODE_EXPIRED, "Cannot submit: the import has expired")
        if imp.status != "Open":
            raise ApiError(400, 60, f"Cannot submit: the import is already {imp.status}")
        if imp.batches == 0:
            raise ApiError(400, 153, "Cannot submit: the import has no batch")
        imp.status = "Waiting"
        imp.updated_at = _epoch(self.clock())
        return _Answer(200, self._render_import(imp, list(IMPORT_FIELDS)))

    def _poll(self, imp: _Import) -> None:
        """A status read moves a submitted import along (see "Processing" above)."""
        if imp.status not in ("Waiting", "Processing"):
            return
        if self.import_fault == "stall" or imp.polls < self.import_processing_polls:
            imp.polls += 1
            imp.status = "Processing"
            return
        self._finish(imp)

    def _finish(self, imp: _Import) -> None:
        now = _epoch(self.clock())
        imp.completed_at = imp.updated_at = now
        if self.import_fault == "fail":
            imp.status = "Failed"
            return
        for row in imp.rows:
            try:
                if self._apply_row(imp, row):
                    imp.created_count += 1
                else:
                    imp.updated_count += 1
            except ApiError as exc:
                imp.errors.append((row, exc.message))
        imp.status = "Complete"

    def _apply_row(self, imp: _Import, row: dict[str, str]) -> bool:
        """Apply one CSV row; True if it created a prospect. ApiError: an error row."""
        matches = [(c, row[c].strip()) for c in MATCH_COLUMNS if row.get(c, "").strip()]
        if len(matches) > 1:
            raise ApiError(400, 154, "Only one match value can be set per record")
        data = {name: self._csv_value(name, text) for name, text in row.items()}
        data = {k: v for k, v in data.items() if k not in MATCH_COLUMNS}
        if any(k in data and data[k] is None for k in ("userId", "salesforceOwnerId")):
            raise ApiError(400, 154, "Un-assigning prospects is not supported through Import")
        target = self._match(imp, matches[0]) if matches else None
        if target is None:
            if matches and not imp.create_on_no_match:
                raise ApiError(404, 109, "No prospect matched " + matches[0][0])
            if not data.get("email"):
                raise ApiError(400, 153, "Missing required property in request: email")
            self._new_prospect(self._write_values(data, None), imp.created_by)
            return True
        if target["isDeleted"] and not imp.restore_deleted:
            raise ApiError(
                400, 219, "The matched prospect is in the recycle bin (restoreDeleted is off)"
            )
        values = self._write_values(data, target)
        if target["isDeleted"]:
            values["isDeleted"] = False
        self._apply_update(target, values, imp.created_by)
        return False

    def _match(self, imp: _Import, match: tuple[str, str]) -> dict[str, Any] | None:
        column, value = match
        table = self.prospects_table
        if column == "matchId":
            if not value.isdigit():
                raise ApiError(400, 56, f"Invalid value for matchId: {value}")
            return table.rows.get(int(value))
        if column == "matchEmail":
            if not _EMAIL.match(value):
                raise ApiError(400, 4, "Invalid prospect email address")
            ids = table.by_email.get(value.lower(), set())
            rows = [table.rows[i] for i in ids]
            live = [r for r in rows if not r["isDeleted"]] or rows
            return max(live, key=lambda r: (r["updatedAt"], r["id"])) if live else None
        links = ("salesforceId", "salesforceLeadId", "salesforceContactId")
        found = [r for r in table.rows.values() if value in (r.get(n) for n in links)]
        return max(found, key=lambda r: (r["updatedAt"], r["id"])) if found else None

    def _csv_value(self, name: str, text: str) -> Any:
        if name in MATCH_COLUMNS:
            return text
        if text == "":
            return None
        kind = PROSPECTS.kind(name)
        if kind == "int":
            try:
                return int(text)
            except ValueError:
                raise ApiError(400, 56, f"Invalid value for field {name}") from None
        if kind == "bool":
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ApiError(400, 50, f"Invalid value for field {name}")
            return lowered in ("true", "1")
        return text

    def _is_expired(self, imp: _Import) -> bool:
        now = self.clock()
        if imp.status == "Open":
            return _epoch(now - OPEN_TTL) >= imp.created_at
        if imp.completed_at is not None:
            return _epoch(now - RESULT_TTL) >= imp.completed_at
        return False

    def _expire(self, imp: _Import) -> None:
        """An Open import past 24 h keeps no rows (nothing of it is ever imported)."""
        if imp.status == "Open" and self._is_expired(imp):
            imp.rows.clear()

    def _render_import(self, imp: _Import, fields: list[str]) -> dict[str, Any]:
        expired = self._is_expired(imp)
        ref = f"{self.base_url}{IMPORTS_PREFIX}/{imp.id}"
        done = imp.status == "Complete"
        full: dict[str, Any] = {
            "id": imp.id,
            "operation": "Upsert",
            "object": "Prospect",
            "status": imp.status,
            "isExpired": expired,
            "batchesRef": f"{ref}/batches" if imp.status == "Open" and not expired else None,
            "createdAt": self.render_time(imp.created_at),
            "updatedAt": self.render_time(imp.updated_at),
            "createdById": imp.created_by,
            "updatedById": imp.created_by,
            "createdCount": imp.created_count if done else None,
            "updatedCount": imp.updated_count if done else None,
            "errorCount": len(imp.errors) if done else None,
            "errorsRef": f"{ref}/errors" if done and imp.errors and not expired else None,
        }
        return {name: full[name] for name in fields}

    def _errors_csv(self, imp: _Import) -> _Answer:
        if imp.status not in ("Complete", "Failed"):
            raise ApiError(400, 60, f"The import is {imp.status}: errors exist once it is Complete")
        if self._is_expired(imp):
            raise ApiError(400, CODE_EXPIRED, "The import's results have expired")
        return _Answer(200, raw=errors_csv(imp), content_type="text/csv")
