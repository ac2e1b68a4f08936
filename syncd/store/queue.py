"""Queue repository: a durable, coalescing work queue with leases and an error queue.

Model (one table, `queue_items`):
- a row is `pending` (waiting until `available_at`), `claimed` (a worker holds it until
  `lease_until`) or `error` (the sync error queue: a permanent failure, with its code and
  message). A completed item is deleted; the audit log keeps what was done.
- the error queue is rows in state `error`, not a separate table: an error is the same unit of
  work waiting for a reason to run again, so reviving it is a state change, and "nothing is
  lost" is one invariant over one table: an item leaves the table only when completed.
- per key (`p:<prospect id>`, `c:<CRM id>`, `e:<email>`) there is at most ONE waiting row
  (pending or error, a partial unique index, the target of the coalescing upsert) and at most
  ONE claimed row (another partial unique index). A change arriving while the key is claimed
  creates a second, pending row; the claim query skips keys that have a claimed row, so it runs
  only after the first completes: two workers never process one prospect at once.
- enqueue coalesces into the waiting row: reasons are OR-ed (a bit set), the snapshot is
  replaced by the newer one (kept when the new change carries none), the earliest
  `first_seen_at` is kept (latency metrics), `available_at` becomes now, and an `error` row is
  revived to pending with its attempts reset (RULES 7: retried when the prospect changes again).
- putting a claimed row back (retry, fail, release, reap) deletes it and upserts it into the
  waiting slot under its own id: if a newer pending row exists it absorbs the claimed one
  (reasons merged, earliest first_seen, the later `available_at`, the error recorded), so the
  waiting row stays unique even while enqueues race, with no read-then-write window.
- `attempts` counts claims (a crash that loses the lease counts; `release` gives it back).

Claiming: `UPDATE ... WHERE id IN (picked)` with `picked` a materialized CTE that selects due
pending rows in (available_at, id) order with no claimed sibling, `FOR UPDATE SKIP LOCKED` on
PostgreSQL; on SQLite the write transaction begins IMMEDIATE, so claimers are serialised.
Only the lease holder (`claimed_by`) can complete, retry, fail or release an item.
Every method takes the caller's connection (one transaction) and `now`: no clock is read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    and_,
    case,
    delete,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.models import NewItem, QueueCounts, QueueItem, Reason, State
from syncd.store.tables import queue_items as q
from syncd.store.upsert import insert_for

_WAITING_WHERE = text("state IN ('pending', 'error')")
LEASE_EXPIRED = "LEASE_EXPIRED"


def _later(new: ColumnElement[Any], old: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((new > old, new), else_=old)


def _earlier(new: ColumnElement[Any], old: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((new < old, new), else_=old)


def _item(row: Row[Any]) -> QueueItem:
    m = row._mapping
    return QueueItem(
        id=m["id"],
        key=m["key"],
        prospect_id=m["prospect_id"],
        crm_id=m["crm_id"],
        email=m["email"],
        reasons=Reason.names(m["reasons"]),
        snapshot=m["snapshot"],
        state=State(m["state"]),
        attempts=m["attempts"],
        available_at=m["available_at"],
        first_seen_at=m["first_seen_at"],
        enqueued_at=m["enqueued_at"],
        updated_at=m["updated_at"],
        lease_until=m["lease_until"],
        claimed_by=m["claimed_by"],
        last_error_code=m["last_error_code"],
        last_error_message=m["last_error_message"],
        first_failed_at=m["first_failed_at"],
        last_failed_at=m["last_failed_at"],
    )


def _merge_batch(items: Iterable[NewItem], now: datetime) -> list[dict[str, Any]]:
    """One row per key (a statement must not upsert one key twice): coalesce in Python first."""
    merged: dict[str, dict[str, Any]] = {}
    for item in items:
        seen = item.first_seen_at or now
        row = merged.get(item.key)
        if row is None:
            merged[item.key] = {
                "key": item.key,
                "prospect_id": item.prospect_id,
                "crm_id": item.crm_id,
                "email": item.email,
                "reasons": int(item.reasons),
                "snapshot": dict(item.snapshot) if item.snapshot is not None else None,
                "state": State.PENDING.value,
                "attempts": 0,
                "available_at": now,
                "first_seen_at": seen,
                "enqueued_at": now,
                "updated_at": now,
            }
            continue
        row["reasons"] |= int(item.reasons)
        if item.snapshot is not None:
            row["snapshot"] = dict(item.snapshot)
        row["first_seen_at"] = min(row["first_seen_at"], seen)
        for name in ("prospect_id", "crm_id", "email"):
            value = getattr(item, name)
            if value is not None:
                row[name] = value
    return list(merged.values())


class QueueRepo:
    """Enqueue, claim, complete, retry, fail, release, reap and inspect queue items."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    # --- producers -------------------------------------------------------------------------

    async def enqueue(self, tx: AsyncConnection, items: Iterable[NewItem], *, now: datetime) -> int:
        """Queue `items`, coalescing with the waiting item of each key; returns keys touched.

        A key with an `error` item is revived to pending (attempts reset, the last error kept
        for reference); a key with a claimed item gets a second, pending item.
        """
        rows = _merge_batch(items, now)
        if not rows:
            return 0
        ins = insert_for(self._dialect, q)
        ex = ins.excluded
        stmt = ins.on_conflict_do_update(
            index_elements=[q.c.key],
            index_where=_WAITING_WHERE,
            set_={
                "reasons": q.c.reasons.bitwise_or(ex.reasons),
                "snapshot": func.coalesce(ex.snapshot, q.c.snapshot),
                "first_seen_at": _earlier(ex.first_seen_at, q.c.first_seen_at),
                "available_at": ex.available_at,
                "state": literal(State.PENDING.value),
                "attempts": case((q.c.state == State.ERROR.value, 0), else_=q.c.attempts),
                "prospect_id": func.coalesce(ex.prospect_id, q.c.prospect_id),
                "crm_id": func.coalesce(ex.crm_id, q.c.crm_id),
                "email": func.coalesce(ex.email, q.c.email),
                "updated_at": ex.updated_at,
            },
        )
        await tx.execute(stmt, rows)
        return len(rows)

    async def reprocess(
        self, tx: AsyncConnection, item_ids: Sequence[int], *, now: datetime
    ) -> list[int]:
        """Queue the keys of these items now, whatever their state; returns the ids found.

        A pending item becomes due now, an error item is revived, a claimed item gets a
        pending follower (it runs after the current claim completes).
        """
        if not item_ids:
            return []
        result = await tx.execute(
            select(q.c.id, q.c.key, q.c.prospect_id, q.c.crm_id, q.c.email).where(
                q.c.id.in_(list(item_ids))
            )
        )
        found = result.all()
        await self.enqueue(
            tx,
            (
                NewItem(
                    key=r.key,
                    reasons=Reason.REPROCESS,
                    prospect_id=r.prospect_id,
                    crm_id=r.crm_id,
                    email=r.email,
                )
                for r in found
            ),
            now=now,
        )
        return sorted(r.id for r in found)

    async def retry_errors(
        self, tx: AsyncConnection, item_ids: Sequence[int] | None, *, now: datetime
    ) -> list[int]:
        """`syncd errors retry`: revive these error items (None: all of them) to pending now."""
        where = [q.c.state == State.ERROR.value]
        if item_ids is not None:
            if not item_ids:
                return []
            where.append(q.c.id.in_(list(item_ids)))
        stmt = (
            update(q)
            .where(*where)
            .values(
                state=State.PENDING.value,
                available_at=now,
                attempts=0,
                reasons=q.c.reasons.bitwise_or(int(Reason.REPROCESS)),
                updated_at=now,
            )
            .returning(q.c.id)
        )
        return sorted((await tx.execute(stmt)).scalars().all())

    # --- workers ---------------------------------------------------------------------------

    async def claim(
        self,
        tx: AsyncConnection,
        *,
        worker_id: str,
        limit: int,
        lease_s: float,
        now: datetime,
    ) -> list[QueueItem]:
        """Claim up to `limit` due items for `worker_id` until `now + lease_s`, oldest first.

        Never claims an item whose key already has a claimed item; never hands one item to two
        claimers (SKIP LOCKED on PostgreSQL, the IMMEDIATE write lock on SQLite).
        """
        if limit <= 0:
            return []
        # NOT IN, not NOT EXISTS: PostgreSQL hashes the held keys once per claim instead of
        # probing per candidate (a join it misplans on a fresh table without statistics).
        held = q.alias("held")
        held_keys = select(held.c.key).where(held.c.state == State.CLAIMED.value)
        picked_sel = (
            select(q.c.id)
            .where(
                q.c.state == State.PENDING.value,
                q.c.available_at <= now,
                q.c.key.not_in(held_keys),
            )
            .order_by(q.c.available_at, q.c.id)
            .limit(limit)
        )
        if self._dialect == "postgresql":
            picked_sel = picked_sel.with_for_update(skip_locked=True, of=q)
        # MATERIALIZED: the pick runs once; a re-evaluated LIMIT ... SKIP LOCKED could pick more.
        picked = picked_sel.cte("picked").prefix_with("MATERIALIZED")
        stmt = (
            update(q)
            .where(q.c.id.in_(select(picked.c.id)))
            .values(
                state=State.CLAIMED.value,
                claimed_by=worker_id,
                lease_until=now + timedelta(seconds=lease_s),
                attempts=q.c.attempts + 1,
                updated_at=now,
            )
            .returning(*q.c)
        )
        items = [_item(r) for r in (await tx.execute(stmt)).all()]
        items.sort(key=lambda i: (i.available_at, i.id))
        return items

    async def complete(
        self, tx: AsyncConnection, item_ids: Sequence[int], *, worker_id: str
    ) -> list[int]:
        """Delete finished items held by `worker_id`; returns the ids it still held.

        An id missing from the result lost its lease (reaped and maybe claimed by another
        worker): its work will run again, which every effect must tolerate.
        """
        if not item_ids:
            return []
        stmt = (
            delete(q)
            .where(
                q.c.id.in_(list(item_ids)),
                q.c.state == State.CLAIMED.value,
                q.c.claimed_by == worker_id,
            )
            .returning(q.c.id)
        )
        return sorted((await tx.execute(stmt)).scalars().all())

    async def extend(
        self,
        tx: AsyncConnection,
        item_ids: Sequence[int],
        *,
        worker_id: str,
        lease_s: float,
        now: datetime,
    ) -> list[int]:
        """Push the lease of items still held by `worker_id` to `now + lease_s`."""
        if not item_ids:
            return []
        stmt = (
            update(q)
            .where(
                q.c.id.in_(list(item_ids)),
                q.c.state == State.CLAIMED.value,
                q.c.claimed_by == worker_id,
            )
            .values(lease_until=now + timedelta(seconds=lease_s), updated_at=now)
            .returning(q.c.id)
        )
        return sorted((await tx.execute(stmt)).scalars().all())

    async def retry(
        self,
        tx: AsyncConnection,
        item_ids: Sequence[int],
        *,
        worker_id: str,
        available_at: datetime,
        code: str,
        message: str,
        now: datetime,
    ) -> list[int]:
        """Put held items back to run again at `available_at` (the caller's backoff).

        The error is kept as `last_error_*`; `attempts` already counts this claim.
        """
        rows = await self._take(tx, item_ids, worker_id=worker_id)
        await self._put_back(
            tx,
            rows,
            state=State.PENDING,
            available_at=available_at,
            error=(code, message),
            attempts_delta=0,
            now=now,
        )
        return sorted(r.id for r in rows)

    async def fail(
        self,
        tx: AsyncConnection,
        item_ids: Sequence[int],
        *,
        worker_id: str,
        code: str,
        message: str,
        now: datetime,
    ) -> list[int]:
        """Move held items to the error queue with `code` and `message`.

        If the key changed while the item was held (a pending follower exists), the follower
        absorbs it and stays pending, carrying the error: the change is its retry.
        """
        rows = await self._take(tx, item_ids, worker_id=worker_id)
        await self._put_back(
            tx,
            rows,
            state=State.ERROR,
            available_at=now,
            error=(code, message),
            attempts_delta=0,
            now=now,
        )
        return sorted(r.id for r in rows)

    async def release(
        self, tx: AsyncConnection, item_ids: Sequence[int], *, worker_id: str, now: datetime
    ) -> list[int]:
        """Give held items back, due now, without counting the attempt (graceful shutdown)."""
        rows = await self._take(tx, item_ids, worker_id=worker_id)
        await self._put_back(
            tx,
            rows,
            state=State.PENDING,
            available_at=now,
            error=None,
            attempts_delta=-1,
            now=now,
        )
        return sorted(r.id for r in rows)

    async def reap(
        self, tx: AsyncConnection, *, now: datetime, max_attempts: int | None = None
    ) -> list[int]:
        """Return items whose lease ended before `now` (their worker died) to pending.

        With `max_attempts`, an item claimed that many times without finishing (it may be
        what kills the worker) goes to the error queue as `LEASE_EXPIRED` instead.
        Returns the ids put back or moved.
        """
        stmt = (
            delete(q).where(q.c.state == State.CLAIMED.value, q.c.lease_until < now).returning(*q.c)
        )
        rows = list((await tx.execute(stmt)).all())
        stuck = [r for r in rows if max_attempts is not None and r.attempts >= max_attempts]
        again = [r for r in rows if not (max_attempts is not None and r.attempts >= max_attempts)]
        await self._put_back(
            tx, again, state=State.PENDING, available_at=now, error=None, attempts_delta=0, now=now
        )
        await self._put_back(
            tx,
            stuck,
            state=State.ERROR,
            available_at=now,
            error=(
                LEASE_EXPIRED,
                f"claimed {max_attempts} times and never finished (the worker stopped each "
                "time): check the logs for a crash, then `syncd errors retry`",
            ),
            attempts_delta=0,
            now=now,
        )
        return sorted(r.id for r in rows)

    async def _take(
        self, tx: AsyncConnection, item_ids: Sequence[int], *, worker_id: str
    ) -> list[Row[Any]]:
        if not item_ids:
            return []
        stmt = (
            delete(q)
            .where(
                q.c.id.in_(list(item_ids)),
                q.c.state == State.CLAIMED.value,
                q.c.claimed_by == worker_id,
            )
            .returning(*q.c)
        )
        return list((await tx.execute(stmt)).all())

    async def _put_back(
        self,
        tx: AsyncConnection,
        rows: Sequence[Row[Any]],
        *,
        state: State,
        available_at: datetime,
        error: tuple[str, str] | None,
        attempts_delta: int,
        now: datetime,
    ) -> None:
        """Upsert taken rows into their key's waiting slot (merging into a newer pending row)."""
        if not rows:
            return
        params = []
        for r in rows:
            m = dict(r._mapping)
            m.update(
                state=state.value,
                available_at=available_at,
                attempts=max(0, m["attempts"] + attempts_delta),
                lease_until=None,
                claimed_by=None,
                updated_at=now,
            )
            if error is not None:
                m["last_error_code"], m["last_error_message"] = error
                m["first_failed_at"] = m["first_failed_at"] or now
                m["last_failed_at"] = now
            params.append(m)
        ins = insert_for(self._dialect, q)
        ex = ins.excluded
        stmt = ins.on_conflict_do_update(
            index_elements=[q.c.key],
            index_where=_WAITING_WHERE,
            set_={
                # The waiting row is the newer change: keep its state and snapshot.
                "reasons": q.c.reasons.bitwise_or(ex.reasons),
                "snapshot": func.coalesce(q.c.snapshot, ex.snapshot),
                "first_seen_at": _earlier(ex.first_seen_at, q.c.first_seen_at),
                "available_at": _later(ex.available_at, q.c.available_at),
                "attempts": case((ex.attempts > q.c.attempts, ex.attempts), else_=q.c.attempts),
                "last_error_code": func.coalesce(ex.last_error_code, q.c.last_error_code),
                "last_error_message": func.coalesce(ex.last_error_message, q.c.last_error_message),
                "first_failed_at": func.coalesce(q.c.first_failed_at, ex.first_failed_at),
                "last_failed_at": func.coalesce(ex.last_failed_at, q.c.last_failed_at),
                "prospect_id": func.coalesce(q.c.prospect_id, ex.prospect_id),
                "crm_id": func.coalesce(q.c.crm_id, ex.crm_id),
                "email": func.coalesce(q.c.email, ex.email),
                "updated_at": ex.updated_at,
            },
        )
        await tx.execute(stmt, params)

    # --- inspection --------------------------------------------------------------------------

    async def get(self, tx: AsyncConnection, item_id: int) -> QueueItem | None:
        """One item by id, in any state."""
        row = (await tx.execute(select(q).where(q.c.id == item_id))).first()
        return _item(row) if row is not None else None

    async def by_key(self, tx: AsyncConnection, key: str) -> list[QueueItem]:
        """The items of one key (at most one waiting and one claimed), by id."""
        rows = (await tx.execute(select(q).where(q.c.key == key).order_by(q.c.id))).all()
        return [_item(r) for r in rows]

    async def errors(
        self, tx: AsyncConnection, *, limit: int = 100, offset: int = 0
    ) -> list[QueueItem]:
        """The error queue, most recent failure first (`syncd errors list`)."""
        stmt = (
            select(q)
            .where(q.c.state == State.ERROR.value)
            .order_by(q.c.last_failed_at.desc(), q.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_item(r) for r in (await tx.execute(stmt)).all()]

    async def counts(self, tx: AsyncConnection, *, now: datetime) -> QueueCounts:
        """Items by state, due and expired counts, and the oldest waiting times."""

        def count_if(cond: ColumnElement[bool]) -> ColumnElement[int]:
            return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

        pending = q.c.state == State.PENDING.value
        due = and_(pending, q.c.available_at <= now)
        claimed = q.c.state == State.CLAIMED.value
        stmt = select(
            count_if(pending),
            count_if(due),
            count_if(claimed),
            count_if(q.c.state == State.ERROR.value),
            count_if(and_(claimed, q.c.lease_until < now)),
            func.min(case((pending, q.c.first_seen_at))),
            func.min(case((due, q.c.available_at))),
        )
        row = (await tx.execute(stmt)).one()
        return QueueCounts(
            pending=int(row[0]),
            due=int(row[1]),
            claimed=int(row[2]),
            error=int(row[3]),
            expired_leases=int(row[4]),
            oldest_pending_first_seen_at=_as_dt(row[5], self._dialect),
            oldest_due_available_at=_as_dt(row[6], self._dialect),
        )


def _as_dt(value: Any, dialect: str) -> datetime | None:
    """min(case(...)) loses the column type on SQLite: parse the stored UTC text back."""
    from datetime import UTC

    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
