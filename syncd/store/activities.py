"""Activity repository: the exactly-once key for email Tasks, (email id, CRM id) -> Task id.

Protocol: `reserve` the pairs BEFORE creating Tasks and commit; create the Tasks; `mark_done`
with each Task id. A reservation is *held* by the worker that made it until `held_until` (its
lease): while held, no other worker may create or search for that Task, because the holder may be
creating it right now (two queue items can name the same pair, e.g. `p:<prospect>` and
`c:<record>`). A pending pair whose hold ran out (the holder crashed) or was let go (its create
answer was lost) is `take_over`-n by exactly one worker, which searches the CRM for the Task
before creating it. `reserve` and `take_over` are atomic (`INSERT ... ON CONFLICT DO NOTHING
RETURNING`, `UPDATE ... WHERE held_until <= now RETURNING`), so two workers never both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.models import Activity
from syncd.store.tables import activities_synced as act
from syncd.store.upsert import insert_for

ActivityKey = tuple[int, str]  # (Pardot email id, CRM record id)

PENDING = "pending"
DONE = "done"
_CHUNK = 2000
# Pairs per `(email_id, crm_id) IN (...)` statement: two bound values a pair, kept under the
# 999 variables of older SQLite builds. Row values, never an OR chain: SQLite refuses an
# expression tree deeper than 1000 ("Expression tree is too large"), which a batch of a
# thousand prospects with their emails reaches.
_PAIR_CHUNK = 400
_INSERT_CHUNK = 100  # rows per multi-row INSERT: 8 bound values a row, under those 999 too


def _activity(row: Row[Any]) -> Activity:
    return Activity(
        email_id=row.email_id,
        crm_id=row.crm_id,
        prospect_id=row.prospect_id,
        state=row.state,
        task_id=row.task_id,
        reserved_at=row.reserved_at,
        done_at=row.done_at,
        held_until=row.held_until,
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
        hold_until: datetime | None = None,
    ) -> list[ActivityKey]:
        """Reserve pairs as `pending`, held until `hold_until`; returns the pairs inserted here.

        A pair already pending or done is left alone: whoever inserted it owns it. The answer
        comes from `RETURNING`, so a concurrent reservation of the same pair is never reported
        as ours (on PostgreSQL the loser waits for the winner's commit, then inserts nothing).
        """
        wanted = sorted(set(keys))
        if not wanted:
            return []
        ins = (
            insert_for(self._dialect, act)
            .on_conflict_do_nothing(index_elements=[act.c.email_id, act.c.crm_id])
            .returning(act.c.email_id, act.c.crm_id)
        )
        rows = [
            {
                "email_id": e,
                "crm_id": c,
                "prospect_id": prospect_id,
                "state": PENDING,
                "task_id": None,
                "reserved_at": now,
                "done_at": None,
                "held_until": hold_until,
            }
            for e, c in wanted
        ]
        inserted: list[ActivityKey] = []
        # One multi-row INSERT per chunk: RETURNING names exactly the rows inserted here.
        for start in range(0, len(rows), _INSERT_CHUNK):
            stmt = ins.values(rows[start : start + _INSERT_CHUNK])
            inserted.extend((r.email_id, r.crm_id) for r in (await tx.execute(stmt)).all())
        return sorted(inserted)

    async def take_over(
        self,
        tx: AsyncConnection,
        keys: Iterable[ActivityKey],
        *,
        now: datetime,
        hold_until: datetime,
    ) -> list[ActivityKey]:
        """Hold pending pairs whose hold has run out; returns the pairs this call now holds."""
        taken: list[ActivityKey] = []
        pairs = sorted(set(keys))
        for start in range(0, len(pairs), _PAIR_CHUNK):
            stmt = (
                update(act)
                .where(
                    tuple_(act.c.email_id, act.c.crm_id).in_(pairs[start : start + _PAIR_CHUNK]),
                    act.c.state == PENDING,
                    or_(act.c.held_until.is_(None), act.c.held_until <= now),
                )
                .values(held_until=hold_until)
                .returning(act.c.email_id, act.c.crm_id)
            )
            taken.extend((r.email_id, r.crm_id) for r in (await tx.execute(stmt)).all())
        return sorted(taken)

    async def let_go(
        self, tx: AsyncConnection, keys: Iterable[ActivityKey], *, now: datetime
    ) -> int:
        """End the hold on pending pairs (a create whose outcome is unknown): the next attempt,
        by any worker, takes them over and searches the CRM before creating."""
        pairs = sorted(set(keys))
        total = 0
        for start in range(0, len(pairs), _PAIR_CHUNK):
            part = pairs[start : start + _PAIR_CHUNK]
            stmt = (
                update(act)
                .where(tuple_(act.c.email_id, act.c.crm_id).in_(part), act.c.state == PENDING)
                .values(held_until=now)
            )
            total += int((await tx.execute(stmt)).rowcount)
        return total

    async def mark_done(
        self, tx: AsyncConnection, done: Iterable[tuple[ActivityKey, str]], *, now: datetime
    ) -> int:
        """Record the Task id created for each pair; returns how many rows changed."""
        rows = [{"e": e, "c": c, "t": task_id} for (e, c), task_id in done]
        if not rows:
            return 0
        # One statement run for every pair (executemany), not one round trip each.
        stmt = (
            update(act)
            .where(act.c.email_id == bindparam("e"), act.c.crm_id == bindparam("c"))
            .values(state=DONE, task_id=bindparam("t"), done_at=now)
        )
        result = await tx.execute(stmt, rows)
        return int(result.rowcount) if result.rowcount >= 0 else len(rows)

    async def release(self, tx: AsyncConnection, keys: Iterable[ActivityKey]) -> int:
        """Drop pending reservations whose Task was certainly not created (a refused create)."""
        pairs = sorted(set(keys))
        total = 0
        for start in range(0, len(pairs), _PAIR_CHUNK):
            stmt = delete(act).where(
                tuple_(act.c.email_id, act.c.crm_id).in_(pairs[start : start + _PAIR_CHUNK]),
                act.c.state == PENDING,
            )
            total += (await tx.execute(stmt)).rowcount
        return total

    async def get(
        self, tx: AsyncConnection, keys: Sequence[ActivityKey]
    ) -> dict[ActivityKey, Activity]:
        """The known records among these pairs."""
        out: dict[ActivityKey, Activity] = {}
        pairs = sorted(set(keys))
        for start in range(0, len(pairs), _PAIR_CHUNK):
            cond = tuple_(act.c.email_id, act.c.crm_id).in_(pairs[start : start + _PAIR_CHUNK])
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
