"""The Import API's values: limits, the import record, and its CSV and multipart bodies.

See `syncd.simulators.pardot.imports` for the sources and the choices made.
"""

from __future__ import annotations

import csv
import email.parser
import email.policy
import io
from dataclasses import dataclass, field
from datetime import timedelta

from syncd.simulators.pardot.schema import Kind, _Spec
from syncd.simulators.pardot.wire import ApiError

IMPORTS_PREFIX = "/api/v5/imports"
MATCH_COLUMNS = ("matchId", "matchSalesforceId", "matchEmail")
MAX_BATCHES = 10
MAX_BATCH_BYTES = 10 * 1024 * 1024
DAILY_BATCH_CAP = 1000
DAILY_BYTES_CAP = 10 * 1024**3
OPEN_TTL = timedelta(hours=24)
RESULT_TTL = timedelta(days=7)
CODE_LIMIT = 188  # CHOICE: the v5 codes for the import limits are undocumented
CODE_EXPIRED = 189  # CHOICE
CREATE_PROPERTIES = frozenset(
    {"operation", "object", "restoreDeleted", "createOnNoMatch", "status"}
)
IMPORT_FAULTS = (None, "stall", "fail")

IMPORT_FIELDS: dict[str, Kind] = {
    "id": "int",
    "operation": "str",
    "object": "str",
    "status": "str",
    "isExpired": "bool",
    "batchesRef": "str",
    "createdAt": "datetime",
    "updatedAt": "datetime",
    "createdById": "int",
    "updatedById": "int",
    "createdCount": "int",
    "updatedCount": "int",
    "errorCount": "int",
    "errorsRef": "str",
}
IMPORTS = _Spec("imports", IMPORT_FIELDS, ("id",), frozenset(), has_deleted=False)


@dataclass
class _Import:
    """One import: its options, its batches (rows as dicts), its state and results."""

    id: int
    created_at: int
    created_by: int | None
    restore_deleted: bool
    create_on_no_match: bool
    status: str = "Open"  # Open -> Waiting -> Processing -> Complete | Failed
    updated_at: int = 0
    header: tuple[str, ...] | None = None
    rows: list[dict[str, str]] = field(default_factory=list)
    batches: int = 0
    polls: int = 0
    completed_at: int | None = None
    created_count: int = 0
    updated_count: int = 0
    errors: list[tuple[dict[str, str], str]] = field(default_factory=list)


def errors_csv(imp: _Import) -> bytes:
    """The failed rows of `imp`: its header plus a last column `error`, RFC 4180 quoting."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = imp.header or ()
    writer.writerow([*header, "error"])
    for row, message in imp.errors:
        writer.writerow([*(row.get(h, "") for h in header), message])
    return out.getvalue().encode("utf-8")


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The named parts of a multipart/form-data body (400 code 150 if it cannot be read)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ApiError(400, 150, "The multipart/form-data body could not be read")
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = payload
    return parts


def _parse_csv(data: bytes) -> tuple[tuple[str, ...], list[list[str]]]:
    """Header and rows of a batch; 400 when it is not UTF-8 CSV with a header and even rows."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, 150, "The CSV file must be UTF-8") from None
    try:
        lines = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise ApiError(400, 150, f"The CSV file could not be read: {exc}") from None
    lines = [line for line in lines if line]
    if not lines:
        raise ApiError(400, 150, "The CSV file has no header row")
    header = tuple(h.strip() for h in lines[0])
    rows = lines[1:]
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ApiError(
                400, 150, f"CSV line {n} has {len(row)} values; the header has {len(header)}"
            )
    return header, rows
