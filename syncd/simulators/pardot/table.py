"""Rows in memory with sorted indexes, and the query/filter values that scan them."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from syncd.simulators.pardot.schema import _Spec


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
