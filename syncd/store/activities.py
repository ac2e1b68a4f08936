"""Activity repository: the exactly-once key for email Tasks, (email id, CRM id) -> Task id.

Protocol: `reserve` the pairs BEFORE creating Tasks and commit; create the Tasks; `mark_done`
with each Task id. After a crash a pair can be left `pending`: the Task may or may not exist, so
look for it in the CRM before creating it (`pending_for` finds them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.models import Activity
from syncd.store.tables import activities_synced as act
from syncd.store.upsert import insert_for

ActivityKey = tuple[int, str]  # (Pardot email id, CRM record id)

PENDING = "pending"
DONE = "done"
_CHUNK = 2000


def _activity(row: Row[Any]) -> Activity:
    return Activity(
        email_id=row.email_id,
        crm_id=row.crm_id,
        prospect_id=row.prospect_id,
        state=row.state,
        task_id=row.task_id,
        reserved_at=row.reserved_at,
        done_at=row.done_at,
    )


class ActivityRepo:
    """Reserve, complete and look up email Task records."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    async def reserve(
        self,
        tx: AsyncConnection,
        keys: Iterable[ActivityKey],
        *,
        prospect_id: int | None = None,
        now: datetime,
    ) -> list[ActivityKey]:
        """Reserve pairs as `pending`; returns only the pairs that were not known before.

        A pair already pending or done is left alone (check it with `get`).
        """
        wanted = sorted(set(keys))
        if not wanted:
            return []
        before = await self.get(tx, wanted)
        new = [k for k in wanted if k not in before]
        if new:
            ins = insert_for(self._dialect, act).on_conflict_do_nothing(
                index_elements=[act.c.email_id, act.c.crm_id]
            )
            await tx.execute(
                ins,
                [
                    {
                        "email_id": e,
                        "crm_id": c,
                        "prospect_id": prospect_id,
                        "state": PENDING,
                        "task_id": None,
                        "reserved_at": now,
                        "done_at": None,
                    }
                    for e, c in new
                ],
            )
        return new

    async def mark_done(
        self, tx: AsyncConnection, done: Iterable[tuple[ActivityKey, str]], *, now: datetime
    ) -> int:
        """Record the Task id created for each pair; returns how many rows changed."""
        total = 0
        for (email_id, crm_id), task_id in done:
            stmt = (
                update(act)
                .where(act.c.email_id == email_id, act.c.crm_id == crm_id)
                .values(state=DONE, task_id=task_id, done_at=now)
            )
            total += (await tx.execute(stmt)).rowcount
        return total

    async def release(self, tx: AsyncConnection, keys: Iterable[ActivityKey]) -> int:
        """Drop pending reservations whose Task was certainly not created (a refused create)."""
        total = 0
        for email_id, crm_id in keys:
            stmt = delete(act).where(
                act.c.email_id == email_id, act.c.crm_id == crm_id, act.c.state == PENDING
            )
            total += (await tx.execute(stmt)).rowcount
        return total

    async def get(
        self, tx: AsyncConnection, keys: Sequence[ActivityKey]
    ) -> dict[ActivityKey, Activity]:
        """The known records among these pairs."""
        out: dict[ActivityKey, Activity] = {}
        for start in range(0, len(keys), _CHUNK):
            part = keys[start : start + _CHUNK]
            cond = or_(*(and_(act.c.email_id == e, act.c.crm_id == c) for e, c in part))
            for r in (await tx.execute(select(act).where(cond))).all():
                out[(r.email_id, r.crm_id)] = _activity(r)
        return out

    async def for_emails(
        self, tx: AsyncConnection, email_ids: Iterable[int]
    ) -> dict[ActivityKey, Activity]:
        """Every record (pending or done) of these email ids, for any CRM record."""
        ids = sorted(set(email_ids))
        out: dict[ActivityKey, Activity] = {}
        for start in range(0, len(ids), _CHUNK):
            stmt = select(act).where(act.c.email_id.in_(ids[start : start + _CHUNK]))
            for r in (await tx.execute(stmt)).all():
                out[(r.email_id, r.crm_id)] = _activity(r)
        return out

    async def pending_for(
        self, tx: AsyncConnection, email_ids: Iterable[int]
    ) -> dict[ActivityKey, Activity]:
        """The pending (possibly created, unconfirmed) records of these email ids."""
        return {
            k: a for k, a in (await self.for_emails(tx, email_ids)).items() if a.state == PENDING
        }
