"""Pardot's Import API (v5) for batch prospect writes: CSV batches, submit, poll, the error CSV.

Pardot v5 has no batch update: one PATCH writes one prospect, and only 5 calls may be in flight.
The Import API (wire-formats.md C.3a) is the batch write it does have: an import holds up to
10 CSV batches of under 10 MB each, is submitted, processed asynchronously, and reports counts
and a CSV of the rows it refused. This module sends imports through `PardotClient`'s one call
chain (auth, token renewal, retries, the concurrency limit, the call observer), so an import
call is counted and classified like any other Pardot call.

What the caller gets:

- `PardotImports.upsert(rows, timeout_s=...)`: the whole flow for `ImportRow`s, returning an
  `ImportResult` (created and updated counts, and one `ImportRowError` per refused row, naming
  the row's index in `rows`, its match value and Pardot's reason). A refused row never fails
  the others.
- the steps on their own: `start`, `add_batch`, `submit`, `status`, `wait`, `errors`.

Rules the CSV must follow, and how this module keeps them:

- Columns are prospect field names, plus one match column: `matchId` (the prospect id),
  `matchEmail` or `matchSalesforceId`; a row with no match value creates a prospect.
- A blank value *overwrites* the prospect's value with null (the Import API's documented
  default). So rows are grouped by the exact set of fields they carry, and each group goes in
  its own import with a header of just those fields: a row never blanks a field it did not
  mean to write. `None` in `ImportRow.values` is a deliberate blank.
- One row per prospect: Pardot does not guarantee the order in which an import's rows are
  applied, so two rows with the same match value are refused (ValueError) before any call.
- Every batch of one import has the same header, in the same order; values are quoted per
  RFC 4180 (commas, quotes, line breaks); booleans are written `true`/`false`.
- Batches stay under `max_batch_bytes` (10 MB less a margin for the multipart envelope);
  an import takes at most 10 batches, so a larger group is spread over several imports.

Never completing, and retrying without double writes:

- `wait` polls the status until Complete or Failed, or until the caller's `timeout_s` (or
  `max_polls`) runs out: then `ImportIncompleteError` (a `RetriableAPIError`, code
  `IMPORT_INCOMPLETE`) names the import and its last status. A Failed import raises the same
  error with code `IMPORT_FAILED`; nothing of it was applied.
- Retrying is safe for rows that carry a match value: an upsert by `matchId` of the same values
  sets the same values again, whether the first import completes late, never, or twice. The
  caller may retry with a new import or fall back to one PATCH a prospect. Hazard to know: an
  import that completes *after* someone edited the prospect in Pardot writes the older values
  over the edit; the daemon's next Pardot poll sees that change like any other.
- Rows with no match value create prospects, so they are not idempotent: a batch holding one
  is sent once (not resent after a lost answer), and such rows should not be retried blindly
  (re-match by email first, as for `create_prospect`).
- `start` is a POST that creates an import: not resent after a lost answer; an orphan import
  left Open holds nothing and expires after 24 h without writing anything.
- `submit` is resent after a lost answer; an answer that the import is no longer Open (Pardot
  took the first one) is read as success.
"""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx

from syncd import errors
from syncd.clients import http
from syncd.clients.pardot import SYSTEM, PardotClient, RawBody
from syncd.domain.values import parse_datetime

IMPORTS = "/api/v5/imports"  # UNCONFIRMED prefix, as in the simulator (not under /objects/)
MATCH_COLUMNS = ("matchId", "matchEmail", "matchSalesforceId")
MAX_BATCHES = 10
MAX_BATCH_BYTES = 10 * 1024 * 1024 - 64 * 1024  # under 10 MB, with room for the envelope
STATUS_FIELDS = (
    "id",
    "status",
    "isExpired",
    "createdCount",
    "updatedCount",
    "errorCount",
    "updatedAt",
)
ImportState = Literal["Open", "Waiting", "Processing", "Complete", "Failed"]
_STATES = ("Open", "Waiting", "Processing", "Complete", "Failed")


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One prospect to upsert: its field values and at most one match value (none: create)."""

    values: Mapping[str, Any]
    match_id: int | None = None
    match_email: str | None = None
    match_salesforce_id: str | None = None

    def match(self) -> tuple[str, str] | None:
        """(match column, value), or None for a row that creates a prospect."""
        given = [
            (name, str(value))
            for name, value in zip(
                MATCH_COLUMNS,
                (self.match_id, self.match_email, self.match_salesforce_id),
                strict=True,
            )
            if value is not None
        ]
        if len(given) > 1:
            raise ValueError("an ImportRow takes at most one match value")
        return given[0] if given else None


@dataclass(frozen=True, slots=True)
class ImportStatus:
    """An import as Pardot reports it; the counts are None until it is Complete."""

    import_id: int
    status: ImportState
    is_expired: bool
    created_count: int | None = None
    updated_count: int | None = None
    error_count: int | None = None
    updated_at: datetime | None = None  # when Pardot last changed it (Complete: when it ended)

    @property
    def finished(self) -> bool:
        return self.status in ("Complete", "Failed")


@dataclass(frozen=True, slots=True)
class ImportRowError:
    """A row the import refused: its index in the caller's rows, its match value, the reason."""

    row: int
    match: tuple[str, str] | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What a whole `upsert` did, over all the imports it took."""

    import_ids: tuple[int, ...]
    created: int
    updated: int
    errors: tuple[ImportRowError, ...] = field(default=())


@dataclass(eq=False)
class ImportIncompleteError(errors.RetriableAPIError):
    """An import did not complete within the caller's deadline, or ended Failed.

    Retriable: its rows carry match values, so sending them again (a new import, or PATCHes)
    writes the same values; see the module docstring.
    """

    import_id: int = 0
    last_status: str = ""


class PardotImports:
    """Import API calls over a `PardotClient`'s call chain (see the module docstring)."""

    def __init__(
        self,
        client: PardotClient,
        *,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_batches: int = MAX_BATCHES,
    ) -> None:
        if max_batch_bytes < 1024 or not 1 <= max_batches <= MAX_BATCHES:
            raise ValueError(f"max_batch_bytes >= 1024 and 1 <= max_batches <= {MAX_BATCHES}")
        self._client = client
        self.max_batch_bytes = max_batch_bytes
        self.max_batches = max_batches

    # ----- the steps -------------------------------------------------------------------------

    async def start(self) -> int:
        """Create an empty Open import (Upsert of prospects); its id. Not resent if ambiguous."""
        body = {"operation": "Upsert", "object": "Prospect", "createOnNoMatch": False}
        answer = await self._call("POST", IMPORTS, body=body, idempotent=False)
        return _int(answer, "id", "created import")

    async def add_batch(self, import_id: int, csv_bytes: bytes, *, creates: bool = False) -> None:
        """Add one CSV batch (204). `creates`: it holds rows with no match value (sent once)."""
        await self._call(
            "POST",
            f"{IMPORTS}/{int(import_id)}/batches",
            body=_multipart({"importFile": ("batch.csv", "text/csv", csv_bytes)}),
            idempotent=not creates,
            read=_no_body,
        )

    async def submit(self, import_id: int) -> ImportStatus:
        """Submit the import for processing (status Waiting). Resent if the answer is lost."""
        try:
            answer = await self._call(
                "PATCH", f"{IMPORTS}/{int(import_id)}", body={"status": "Ready"}
            )
        except errors.PermanentAPIError as exc:
            # A resent PATCH after a lost answer: the first one was taken.
            if exc.code != "60":
                raise
            current = await self.status(import_id)
            if current.status == "Open":
                raise
            return current
        return _status(answer)

    async def status(self, import_id: int) -> ImportStatus:
        """The import's status and, once Complete, its counts."""
        answer = await self._call(
            "GET", f"{IMPORTS}/{int(import_id)}", params={"fields": ",".join(STATUS_FIELDS)}
        )
        return _status(answer)

    async def wait(
        self,
        import_id: int,
        *,
        timeout_s: float,
        poll_interval_s: float = 5.0,
        max_polls: int | None = None,
        max_poll_interval_s: float | None = None,
    ) -> ImportStatus:
        """Poll until Complete; `ImportIncompleteError` if Failed or still running at the deadline
        (`timeout_s` from now, or after `max_polls` status reads, whichever comes first).

        With `max_poll_interval_s`, the pause between reads starts at `poll_interval_s` and
        doubles up to it: a small import is seen complete soon, a long one costs few reads.
        """
        deadline = time.monotonic() + timeout_s
        polls = 0
        while True:
            current = await self.status(import_id)
            polls += 1
            if current.status == "Complete":
                return current
            if current.status == "Failed":
                raise _incomplete(current, "IMPORT_FAILED", "ended Failed; nothing was applied")
            out_of_polls = max_polls is not None and polls >= max_polls
            if out_of_polls or time.monotonic() + poll_interval_s > deadline:
                raise _incomplete(
                    current,
                    "IMPORT_INCOMPLETE",
                    f"still {current.status} after {polls} status reads; its rows are safe to "
                    "send again (an upsert by id of the same values)",
                )
            await asyncio.sleep(poll_interval_s)
            if max_poll_interval_s is not None:
                poll_interval_s = min(poll_interval_s * 2, max(max_poll_interval_s, 0.0))

    async def errors(self, import_id: int) -> list[dict[str, str]]:
        """The refused rows: each the row's columns as sent plus `error`, Pardot's reason."""
        text = await self._call("GET", f"{IMPORTS}/{int(import_id)}/errors", read=lambda r: r.text)
        return list(csv.DictReader(io.StringIO(text, newline="")))

    # ----- the whole flow ----------------------------------------------------------------------

    async def upsert(
        self,
        rows: Sequence[ImportRow],
        *,
        timeout_s: float,
        poll_interval_s: float = 5.0,
        max_polls: int | None = None,
    ) -> ImportResult:
        """Upsert `rows` through as few imports as the rules allow (module docstring); waits for
        each; `ImportIncompleteError` when one does not complete in time."""
        ids: list[int] = []
        created = updated = 0
        refused: list[ImportRowError] = []
        for plan in self.plan(rows):
            import_id = await self.start()
            ids.append(import_id)
            for batch in plan.batches:
                await self.add_batch(import_id, batch, creates=plan.creates)
            await self.submit(import_id)
            done = await self.wait(
                import_id, timeout_s=timeout_s, poll_interval_s=poll_interval_s, max_polls=max_polls
            )
            created += done.created_count or 0
            updated += done.updated_count or 0
            if done.error_count:
                refused.extend(plan.row_errors(await self.errors(import_id)))
        return ImportResult(tuple(ids), created, updated, tuple(sorted(refused, key=_by_row)))

    def plan(self, rows: Sequence[ImportRow]) -> list[ImportPlan]:
        """The imports `rows` take: grouped by match column and field set, then cut into
        batches under `max_batch_bytes` and imports of at most `max_batches` batches."""
        groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        seen: dict[tuple[str, str], int] = {}
        for i, row in enumerate(rows):
            bad = [name for name in row.values if name in MATCH_COLUMNS or not name]
            if bad:
                raise ValueError(f"row {i}: {bad[0]!r} is not a prospect field name")
            match = row.match()
            if match is not None:
                if match in seen:
                    raise ValueError(
                        f"rows {seen[match]} and {i} both name {match[0]} {match[1]}: Pardot "
                        "does not guarantee the order of an import's rows; send one row each"
                    )
                seen[match] = i
            column = match[0] if match else "matchId"
            groups.setdefault((column, tuple(sorted(row.values))), []).append(i)
        plans: list[ImportPlan] = []
        for (column, names), indexes in groups.items():
            header = (column, *names)
            plan = ImportPlan(header)
            size = 0
            batch: list[bytes] = []
            for i in indexes:
                row = rows[i]
                match = row.match()
                cells = (match[1] if match else "", *(_cell(row.values[n]) for n in names))
                line = _csv_line(cells)
                if batch and size + len(line) > self.max_batch_bytes:
                    plan = self._close_batch(plans, plan, header, batch)
                    batch, size = [], 0
                if not batch:
                    batch.append(_csv_line(header))
                    size = len(batch[0])
                batch.append(line)
                size += len(line)
                plan.keys.setdefault(cells, []).append(i)
                plan.creates = plan.creates or match is None
            if batch:
                self._close_batch(plans, plan, header, batch)
        return plans

    def _close_batch(
        self,
        plans: list[ImportPlan],
        plan: ImportPlan,
        header: tuple[str, ...],
        batch: list[bytes],
    ) -> ImportPlan:
        """Add the batch to `plan`; a new plan (import) once `plan` holds `max_batches`."""
        if not plan.batches:
            plans.append(plan)
        plan.batches.append(b"".join(batch))
        if len(plan.batches) >= self.max_batches:
            return ImportPlan(header)
        return plan

    # ----- one call ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
        read: Any = None,
    ) -> Any:
        # The PardotClient's one call chain: auth and renewal, retries, the 5-call limit, and
        # the observer that counts calls against the budget.
        return await self._client._call(
            method,
            path,
            params=params,
            body=body,
            idempotent=idempotent,
            read=read or _json_answer,
        )


@dataclass
class ImportPlan:
    """One import to send: its header, CSV batches, and the rows behind each CSV line."""

    header: tuple[str, ...]
    batches: list[bytes] = field(default_factory=list)
    keys: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    creates: bool = False

    def row_errors(self, refused: list[dict[str, str]]) -> list[ImportRowError]:
        """The caller's rows behind the error CSV's lines (matched by their cells as sent)."""
        out: list[ImportRowError] = []
        used: dict[tuple[str, ...], int] = {}
        for line in refused:
            cells = tuple(line.get(h) or "" for h in self.header)
            indexes = self.keys.get(cells, [])
            n = used.get(cells, 0)
            used[cells] = n + 1
            if n >= len(indexes):
                continue  # not a line this import sent: nothing to attribute it to
            match = (self.header[0], cells[0]) if cells[0] else None
            message = line.get("error") or "refused by the import (no reason given)"
            out.append(ImportRowError(indexes[n], match, "IMPORT_ROW", message))
        return out


def _by_row(e: ImportRowError) -> int:
    return e.row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _csv_line(cells: Sequence[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue().encode("utf-8")


def _multipart(parts: Mapping[str, tuple[str, str, bytes]]) -> RawBody:
    """A multipart/form-data body of (filename, content type, data) parts."""
    data = b"".join(p[2] for p in parts.values())
    boundary = f"syncd-{secrets.token_hex(16)}"
    while boundary.encode() in data:  # practically never; a boundary must not occur in a part
        boundary = f"syncd-{secrets.token_hex(16)}"
    chunks: list[bytes] = []
    for name, (filename, ctype, payload) in parts.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
        )
        chunks.append(payload)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return RawBody(b"".join(chunks), f"multipart/form-data; boundary={boundary}")


def _json_answer(response: httpx.Response) -> dict[str, Any]:
    return http.expect_dict(SYSTEM, http.read_json(SYSTEM, response), "import answer")


def _no_body(response: httpx.Response) -> None:
    return None


def _int(answer: Mapping[str, Any], name: str, what: str) -> int:
    value = answer.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.RetriableAPIError(
            system=SYSTEM, status=200, code="BAD_RESPONSE", message=f"{what}: no integer {name}"
        )
    return value


def _count(answer: Mapping[str, Any], name: str) -> int | None:
    value = answer.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _status(answer: Mapping[str, Any]) -> ImportStatus:
    state = answer.get("status")
    if state not in _STATES:
        raise errors.RetriableAPIError(
            system=SYSTEM,
            status=200,
            code="BAD_RESPONSE",
            message=f"import answer: unknown status {state!r}",
        )
    return ImportStatus(
        import_id=_int(answer, "id", "import"),
        status=state,
        is_expired=bool(answer.get("isExpired")),
        created_count=_count(answer, "createdCount"),
        updated_count=_count(answer, "updatedCount"),
        error_count=_count(answer, "errorCount"),
        updated_at=parse_datetime(answer.get("updatedAt")),
    )


def _incomplete(current: ImportStatus, code: str, what: str) -> ImportIncompleteError:
    return ImportIncompleteError(
        system=SYSTEM,
        status=None,
        code=code,
        message=f"Pardot import {current.import_id} {what}",
        import_id=current.import_id,
        last_status=current.status,
    )
