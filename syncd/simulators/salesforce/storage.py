"""Record storage: one table per sObject with the indexes SOQL uses, query cursors, save context."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.simulators import soql


@dataclass
class _SaveContext:
    user_id: str
    auto_assign: bool = True
    allow_duplicates: bool = False
    system: bool = False  # direct state access: read-only fields allowed, no org rules


@dataclass
class _Cursor:
    sobject: str
    fields: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    ids: list[str]
    user_id: str
    last_used: datetime


class _Table:
    """One sObject's records with the indexes SOQL uses (Id, Email, SystemModstamp)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, tuple[dict[str, Any], datetime]] = {}
        self.by_email: dict[str, set[str]] = {}
        self.stamps: list[tuple[datetime, str]] = []
        self.by15: dict[str, str] = {}  # 15-char key -> stored id (live and deleted)
        self.reads = 0  # records handed to SOQL (`get`): what a query examined

    def resolve(self, raw: str) -> str | None:
        """The stored id that a 15- or 18-character id names (live or deleted), or None."""
        key = soql.id15(raw)
        return self.by15.get(key) if key is not None else None

    # RecordSource ----------------------------------------------------------------------------
    def ids(self) -> Iterable[str]:
        return self.rows.keys()

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        self.reads += 1
        return self.rows.get(record_id)

    def lookup(self, field_name: str, values: Iterable[Any]) -> set[str] | None:
        if field_name == "Id":
            found_ids = (self.by15.get(v) for v in values)
            return {rid for rid in found_ids if rid is not None and rid in self.rows}
        if field_name == "Email":
            found: set[str] = set()
            for v in values:
                found.update(self.by_email.get(v, ()))
            return found
        return None

    def range(
        self, field_name: str, low: Any, low_inclusive: bool, high: Any, high_inclusive: bool
    ) -> list[str] | None:
        if field_name != "SystemModstamp":
            return None
        s = self.stamps
        if low is None:
            start = 0
        else:
            start = bisect_left(s, (low, "")) if low_inclusive else bisect_right(s, (low, "\uffff"))
        if high is None:
            end = len(s)
        else:
            end = (
                bisect_right(s, (high, "\uffff")) if high_inclusive else bisect_left(s, (high, ""))
            )
        return [rid for _, rid in s[start:end]]

    # mutation --------------------------------------------------------------------------------
    def put(self, rec: dict[str, Any]) -> None:
        rid = rec["Id"]
        old = self.rows.get(rid)
        if old is not None:
            self._unindex(old)
        self.rows[rid] = rec
        self.by15[rid[:15]] = rid
        email = rec.get("Email")
        if isinstance(email, str):
            self.by_email.setdefault(email.casefold(), set()).add(rid)
        stamp = rec.get("SystemModstamp")
        if isinstance(stamp, datetime):
            insort(self.stamps, (stamp, rid))

    def pop(self, rid: str) -> dict[str, Any] | None:
        rec = self.rows.pop(rid, None)
        if rec is not None:
            self._unindex(rec)
        return rec

    def _unindex(self, rec: dict[str, Any]) -> None:
        rid = rec["Id"]
        email = rec.get("Email")
        if isinstance(email, str):
            bucket = self.by_email.get(email.casefold())
            if bucket is not None:
                bucket.discard(rid)
                if not bucket:
                    del self.by_email[email.casefold()]
        stamp = rec.get("SystemModstamp")
        if isinstance(stamp, datetime):
            i = bisect_left(self.stamps, (stamp, rid))
            if i < len(self.stamps) and self.stamps[i] == (stamp, rid):
                del self.stamps[i]


class _WithDeleted:
    """A table's live and deleted records together (for queryAll); no indexes beyond Id."""

    def __init__(self, table: _Table) -> None:
        self.table = table

    def ids(self) -> Iterable[str]:
        return [*self.table.rows, *self.table.deleted]

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        rec = self.table.rows.get(record_id)
        if rec is None and record_id in self.table.deleted:
            return self.table.deleted[record_id][0]
        return rec

    def lookup(self, field_name: str, values: Iterable[Any]) -> set[str] | None:
        if field_name == "Id":
            found_ids = (self.table.by15.get(v) for v in values)
            return {rid for rid in found_ids if rid is not None}
        return None

    def range(
        self, field_name: str, low: Any, low_inclusive: bool, high: Any, high_inclusive: bool
    ) -> list[str] | None:
        return None
