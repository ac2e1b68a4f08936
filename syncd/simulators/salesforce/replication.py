"""Replication: `sobjects/X/updated` and `sobjects/X/deleted` (getUpdated / getDeleted)."""

from __future__ import annotations

from datetime import UTC, datetime

from syncd.simulators.salesforce.query import QueryApi
from syncd.simulators.salesforce.schema import (
    DELETED_WINDOW,
    UPDATED_WINDOW,
    parse_datetime,
    sf_datetime,
)
from syncd.simulators.salesforce.wire import (
    _err,
    _Request,
    _Response,
)


class ReplicationApi(QueryApi):
    """The replication resources."""

    def _window(self, req: _Request, kind: str) -> tuple[datetime, datetime, datetime]:
        values: dict[str, datetime] = {}
        for name in ("start", "end"):
            raw = req.params.get(name)
            if not raw:
                raise _err("MISSING_ARGUMENT", f"Missing required parameter: {name}")
            try:
                values[name] = parse_datetime(raw)
            except ValueError:
                # UNCONFIRMED: the errorCode for an unparseable date parameter.
                raise _err(
                    "INVALID_REPLICATION_DATE", f"Unable to parse the {name} date: {raw}"
                ) from None
        now = self.clock().astimezone(UTC)
        floor = (now - (UPDATED_WINDOW if kind == "updated" else DELETED_WINDOW)).replace(
            second=0, microsecond=0
        )
        start = values["start"].replace(second=0, microsecond=0)
        end = min(values["end"], now).replace(second=0, microsecond=0)
        if start >= end:
            raise _err(
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        if start < floor:
            days = (UPDATED_WINDOW if kind == "updated" else DELETED_WINDOW).days
            raise _err("INVALID_REPLICATION_DATE", f"startDate cannot be more than {days} days ago")
        return start, end, floor

    def _replication(self, req: _Request, sobject: str, kind: str) -> _Response:
        start, end, floor = self._window(req, kind)
        table = self.tables[sobject]
        if kind == "updated":
            ids = table.range("SystemModstamp", start, True, end, False) or []
            if len(ids) > self.updated_id_limit:
                # UNCONFIRMED: the status and message (module docstring).
                raise _err(
                    "EXCEEDED_ID_LIMIT",
                    f"The range holds {len(ids)} updated records, more than"
                    f" {self.updated_id_limit}; ask for a shorter range",
                )
            return _Response(200, {"ids": ids, "latestDateCovered": sf_datetime(end)})
        gone = sorted(
            ((rid, when) for rid, (_, when) in table.deleted.items() if start <= when < end),
            key=lambda pair: (pair[1], pair[0]),
        )
        return _Response(
            200,
            {
                "deletedRecords": [
                    {"id": rid, "deletedDate": sf_datetime(when)} for rid, when in gone
                ],
                "earliestDateAvailable": sf_datetime(floor),
                "latestDateCovered": sf_datetime(end),
            },
        )
