"""Console repository: the read queries of the web console (error groups, search, activity).

The console shows what `syncd status`, `syncd errors` and `syncd history` show, plus views that
need grouping in SQL to stay fast on a large store (100,000 prospects, 10,000 errors): the error
queue by code, audit lines counted per day and outcome, synced prospects per time bucket. Every
method takes the caller's connection and, where time matters, `now`; nothing here reads a clock.
Console actions (retry, sync now, pause) are written to the audit as `console.<verb>` lines with
who did them in `detail.who`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.audit import _line
from syncd.store.models import AuditLine, QueueItem, State
from syncd.store.queue import _as_dt, _item
from syncd.store.tables import audit_lines as al
from syncd.store.tables import links as lk
from syncd.store.tables import queue_items as q

ACTION_PREFIX = "console."
VERBS = ("retry", "sync_now", "pause", "resume")  # what `record_action` is called with
NO_CODE = "(no code)"

# Audit actions counted as each outcome of the Activity page.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "linked": ("link", "move_to_contact"),
    "leads created": ("create_lead",),
    "prospects created": ("create_prospect",),
    "fields written to Salesforce": ("update_crm",),
    "fields written to Pardot": ("update_pardot",),
    "tasks": ("create_task",),
    "owners changed": ("owner",),
    "skipped": ("skip",),
    "retried": ("retry",),
    "failed": ("error",),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorGroup:
    """The error-queue items sharing one code: how many, when, and the latest message."""

    code: str
    count: int
    first_failed_at: datetime | None
    last_failed_at: datetime | None
    message: str | None


def _code(row_code: str | None) -> str:
    return row_code or NO_CODE


def _code_filter(code: str) -> ColumnElement[bool]:
    return q.c.last_error_code.is_(None) if code == NO_CODE else q.c.last_error_code == code


class ConsoleRepo:
    """Grouped and searched reads for the console; `record_action` audits what it did."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    # -- errors --------------------------------------------------------------------------------

    async def error_groups(self, tx: AsyncConnection) -> list[ErrorGroup]:
        """The error queue grouped by code, largest group first."""
        stmt = (
            select(
                q.c.last_error_code,
                func.count(),
                func.min(q.c.first_failed_at),
                func.max(q.c.last_failed_at),
                func.max(q.c.id),
            )
            .where(q.c.state == State.ERROR.value)
            .group_by(q.c.last_error_code)
        )
        rows = (await tx.execute(stmt)).all()
        latest_ids = [r[4] for r in rows]
        messages: dict[int, str | None] = {}
        if latest_ids:
            got = await tx.execute(
                select(q.c.id, q.c.last_error_message).where(q.c.id.in_(latest_ids))
            )
            messages = {i: m for i, m in got.all()}
        groups = [
            ErrorGroup(
                code=_code(r[0]),
                count=int(r[1]),
                first_failed_at=_dt(r[2]),
                last_failed_at=_dt(r[3]),
                message=messages.get(r[4]),
            )
            for r in rows
        ]
        groups.sort(key=lambda g: (-g.count, g.code))
        return groups

    async def errors_by_code(
        self, tx: AsyncConnection, code: str | None, *, limit: int, offset: int = 0
    ) -> list[QueueItem]:
        """Error items (of one code, or all when None), most recent failure first."""
        where = [q.c.state == State.ERROR.value]
        if code is not None:
            where.append(_code_filter(code))
        stmt = (
            select(q)
            .where(*where)
            .order_by(q.c.last_failed_at.desc(), q.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_item(r) for r in (await tx.execute(stmt)).all()]

    async def error_ids(self, tx: AsyncConnection, code: str) -> list[int]:
        """The ids of the error items of one code."""
        stmt = select(q.c.id).where(q.c.state == State.ERROR.value, _code_filter(code))
        return sorted((await tx.execute(stmt)).scalars().all())

    async def revived(self, tx: AsyncConnection, *, limit: int) -> tuple[int, list[QueueItem]]:
        """Items back in the queue after an error (a change or a retry revived them).

        An item parked in the error queue keeps its last error when it is revived, with its
        attempts reset; one waiting for a backoff retry has attempts of 1 or more.
        """
        where = and_(
            q.c.state != State.ERROR.value,
            q.c.first_failed_at.is_not(None),
            q.c.attempts == 0,
        )
        total = int((await tx.execute(select(func.count()).where(where))).scalar_one())
        stmt = select(q).where(where).order_by(q.c.updated_at.desc(), q.c.id.desc()).limit(limit)
        return total, [_item(r) for r in (await tx.execute(stmt)).all()]

    async def prospects_of_items(self, tx: AsyncConnection, item_ids: list[int]) -> list[int]:
        """The prospect ids named by these queue items (sorted, distinct)."""
        pids: set[int] = set()
        for start in range(0, len(item_ids), 500):
            part = item_ids[start : start + 500]
            rows = await tx.execute(select(q.c.prospect_id).where(q.c.id.in_(part)))
            pids.update(p for p in rows.scalars().all() if p is not None)
        return sorted(pids)

    # -- prospects -----------------------------------------------------------------------------

    async def search(self, tx: AsyncConnection, text: str, *, limit: int = 50) -> list[int]:
        """Prospect ids matching a Pardot id, an email (case-insensitive) or a CRM id."""
        text = text.strip()
        if not text:
            return []
        if text.isdigit():
            pid = int(text)
            hit = await tx.execute(select(lk.c.prospect_id).where(lk.c.prospect_id == pid).limit(1))
            if hit.first() is not None or await self._known_elsewhere(tx, pid):
                return [pid]
            return []
        if "@" in text:
            stmt = select(lk.c.prospect_id).where(lk.c.email == text.lower())
            found = set((await tx.execute(stmt.limit(limit))).scalars().all())
            queued = select(q.c.prospect_id).where(q.c.email == text, q.c.prospect_id.is_not(None))
            found.update((await tx.execute(queued.limit(limit))).scalars().all())
            return sorted(found)[:limit]
        ids = [text] + ([text[:15]] if len(text) == 18 else [])
        match: ColumnElement[bool] = lk.c.crm_id.in_(ids)
        if len(text) == 15:  # the case-sensitive 15-character form of a stored 18-character id
            match = or_(match, func.substr(lk.c.crm_id, 1, 15) == text)
        stmt = select(lk.c.prospect_id).where(match).order_by(lk.c.prospect_id)
        found = set((await tx.execute(stmt.limit(limit))).scalars().all())
        audit = (
            select(al.c.prospect_id)
            .where(al.c.crm_id.in_(ids), al.c.prospect_id.is_not(None))
            .distinct()
            .limit(limit)
        )
        found.update((await tx.execute(audit)).scalars().all())
        return sorted(found)[:limit]

    async def _known_elsewhere(self, tx: AsyncConnection, prospect_id: int) -> bool:
        queued = select(q.c.id).where(q.c.prospect_id == prospect_id).limit(1)
        if (await tx.execute(queued)).first() is not None:
            return True
        audited = select(al.c.id).where(al.c.prospect_id == prospect_id).limit(1)
        return (await tx.execute(audited)).first() is not None

    async def queue_items_of(self, tx: AsyncConnection, prospect_id: int) -> list[QueueItem]:
        """Every queue row naming this prospect (waiting, claimed or in error)."""
        stmt = select(q).where(q.c.prospect_id == prospect_id).order_by(q.c.id)
        return [_item(r) for r in (await tx.execute(stmt)).all()]

    # -- activity ------------------------------------------------------------------------------

    def _bucket(self, width: int) -> ColumnElement[str]:
        """The first `width` characters of 'YYYY-MM-DD HH:MM:SS' UTC: 10 = day, 13 = hour."""
        text: ColumnElement[str]
        if self._dialect == "sqlite":
            text = cast(al.c.at, String)  # stored as UTC text in exactly this format
        else:
            text = func.to_char(func.timezone("UTC", al.c.at), "YYYY-MM-DD HH24:MI:SS")
        return func.substr(text, 1, width)

    async def activity(
        self,
        tx: AsyncConnection,
        *,
        since: datetime,
        until: datetime | None = None,
        width: int = 10,
    ) -> dict[str, dict[str, int]]:
        """Audit lines per bucket and action for `since <= at < until` (console actions aside).

        Buckets are the first `width` characters of 'YYYY-MM-DD HH:MM:SS' UTC: 10 = day,
        13 = hour.
        """
        bucket = self._bucket(width).label("bucket")
        where = [al.c.at >= since, ~al.c.action.startswith(ACTION_PREFIX)]
        if until is not None:
            where.append(al.c.at < until)
        stmt = select(bucket, al.c.action, func.count()).where(*where).group_by(bucket, al.c.action)
        out: dict[str, dict[str, int]] = {}
        for b, action, n in (await tx.execute(stmt)).all():
            out.setdefault(str(b), {})[str(action)] = int(n)
        return out

    async def synced_per_bucket(
        self,
        tx: AsyncConnection,
        *,
        since: datetime,
        width: int,
        until: datetime | None = None,
    ) -> dict[str, int]:
        """Distinct prospects with an audit line per time bucket (`width` as in `activity`)."""
        bucket = self._bucket(width).label("bucket")
        where = [al.c.at >= since, ~al.c.action.startswith(ACTION_PREFIX)]
        if until is not None:
            where.append(al.c.at < until)
        stmt = (
            select(bucket, func.count(func.distinct(al.c.prospect_id)))
            .where(*where)
            .group_by(bucket)
        )
        return {str(b): int(n) for b, n in (await tx.execute(stmt)).all()}

    async def actions(self, tx: AsyncConnection, *, since: datetime, limit: int) -> list[AuditLine]:
        """Console actions (retry, sync now, pause, resume) since `since`, newest first."""
        stmt = (
            select(al)
            .where(al.c.at >= since, al.c.action.in_([ACTION_PREFIX + v for v in VERBS]))
            .order_by(al.c.at.desc(), al.c.id.desc())
            .limit(limit)
        )
        return [_line(r) for r in (await tx.execute(stmt)).all()]

    async def record_action(
        self,
        tx: AsyncConnection,
        verb: str,
        *,
        who: str,
        now: datetime,
        prospect_ids: Iterable[int | None] = (None,),
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Audit a console action: one line per prospect it touched (or one line)."""
        if verb not in VERBS:
            raise ValueError(f"unknown console action {verb!r}: add it to VERBS")
        rows = [
            {
                "prospect_id": pid,
                "crm_id": None,
                "at": now,
                "action": ACTION_PREFIX + verb,
                "reason": f"{verb} by {who} in the console",
                "detail": {"who": who, **(detail or {})},
            }
            for pid in prospect_ids
        ]
        if rows:
            await tx.execute(insert(al), rows)


def days_back(now: datetime, days: int) -> datetime:
    """Midnight UTC `days - 1` days before `now`'s day: the start of a `days`-day window."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days - 1)


def _dt(value: Any) -> datetime | None:
    """min()/max() lose the column type on SQLite: parse the stored UTC text back."""
    return _as_dt(value, "")
