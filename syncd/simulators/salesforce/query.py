"""SOQL over REST: `query`, `queryAll` and `queryMore` with server-side cursors."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from syncd.simulators import soql
from syncd.simulators.salesforce.schema import (
    _BASE62,
    BATCH_SIZE,
    CURSOR_IDLE,
    CURSORS_PER_USER,
    _render,
)
from syncd.simulators.salesforce.seed import SeededOrg
from syncd.simulators.salesforce.storage import (
    _Cursor,
    _WithDeleted,
)
from syncd.simulators.salesforce.wire import (
    _err,
    _Request,
    _Response,
)


class QueryApi(SeededOrg):
    """The query resources."""

    def _batch_size(self, headers: Mapping[str, str]) -> int:
        option = headers.get("sforce-query-options", "")
        m = re.search(r"batchSize=(\d+)", option)
        if m is None:
            return BATCH_SIZE
        return min(max(int(m.group(1)), 200), BATCH_SIZE)

    def _query(self, req: _Request, *, include_deleted: bool = False) -> _Response:
        text = req.params.get("q")
        if text is None:
            raise _err("MALFORMED_QUERY", "A query string has to be specified")
        bound = soql.bind(soql.parse(text), self.soql_objects)
        table = self.tables[bound.sobject]
        source: soql.RecordSource = _WithDeleted(table) if include_deleted else table
        ids = soql.execute(bound, source)
        if bound.count:
            return _Response(200, {"totalSize": len(ids), "done": True, "records": []})
        get = source.get
        rows = [tuple(get(rid)[f] for f in bound.fields) for rid in ids]  # type: ignore[index]
        cursor = _Cursor(bound.sobject, bound.fields, rows, ids, req.user_id, self.clock())
        return _Response(200, self._page(cursor, 0, req))

    def _page(self, cursor: _Cursor, offset: int, req: _Request) -> dict[str, Any]:
        size = self._batch_size(req.headers)
        end = min(offset + size, len(cursor.rows))
        obj, version, names = cursor.sobject, req.version, cursor.fields
        records = []
        for rid, row in zip(cursor.ids[offset:end], cursor.rows[offset:end], strict=True):
            rec: dict[str, Any] = {
                "attributes": {
                    "type": obj,
                    "url": f"/services/data/v{version}/sobjects/{obj}/{rid}",
                }
            }
            for name, value in zip(names, row, strict=True):
                rec[name] = _render(value)
            records.append(rec)
        answer: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
        if end < len(cursor.rows):
            locator = self._store_cursor(cursor)
            answer["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        answer["records"] = records
        return answer

    def _store_cursor(self, cursor: _Cursor) -> str:
        for loc, existing in self._cursors.items():
            if existing is cursor:
                self._cursors.move_to_end(loc)
                return loc
        mine = [loc for loc, c in self._cursors.items() if c.user_id == cursor.user_id]
        while len(mine) >= CURSORS_PER_USER:
            del self._cursors[mine.pop(0)]
        loc = "01g5g" + "".join(secrets.choice(_BASE62) for _ in range(13))
        self._cursors[loc] = cursor
        return loc

    def _query_more(self, req: _Request, token: str) -> _Response:
        loc, _, off = token.rpartition("-")
        cursor = self._cursors.get(loc)
        now = self.clock()
        if cursor is not None and now - cursor.last_used > CURSOR_IDLE:
            del self._cursors[loc]
            cursor = None
        if (
            cursor is None
            or cursor.user_id != req.user_id
            or not off.isdigit()
            or int(off) > len(cursor.rows)
        ):
            raise _err("INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor.last_used = now
        answer = self._page(cursor, int(off), req)
        if answer["done"]:
            self._cursors.pop(loc, None)
        return _Response(200, answer)
