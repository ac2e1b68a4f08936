"""Cursor repository: each change feed's position, saved in the poller's own transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.models import Cursor
from syncd.store.tables import feed_cursors as fc
from syncd.store.upsert import insert_for


class CursorRepo:
    """Load and save feed cursors. Save in the same transaction as the enqueue of the items
    read up to that cursor, so a crash can never advance a cursor past unqueued work."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    async def get(self, tx: AsyncConnection, feed: str) -> Cursor | None:
        """The feed's cursor, or None before its first poll."""
        row = (await tx.execute(select(fc).where(fc.c.feed == feed))).first()
        if row is None:
            return None
        return Cursor(
            position=row.position,
            last_id=row.last_id,
            extra=row.extra or {},
            updated_at=row.updated_at,
        )

    async def all(self, tx: AsyncConnection) -> dict[str, Cursor]:
        """Every feed's cursor, by feed name (`syncd status`)."""
        rows = (await tx.execute(select(fc).order_by(fc.c.feed))).all()
        return {
            r.feed: Cursor(
                position=r.position, last_id=r.last_id, extra=r.extra or {}, updated_at=r.updated_at
            )
            for r in rows
        }

    async def save(self, tx: AsyncConnection, feed: str, cursor: Cursor, *, now: datetime) -> None:
        """Store the feed's new position (insert or replace)."""
        values = {
            "feed": feed,
            "position": cursor.position,
            "last_id": cursor.last_id,
            "extra": dict(cursor.extra) or None,
            "updated_at": now,
        }
        ins = insert_for(self._dialect, fc).values(**values)
        stmt = ins.on_conflict_do_update(
            index_elements=[fc.c.feed],
            set_={k: ins.excluded[k] for k in ("position", "last_id", "extra", "updated_at")},
        )
        await tx.execute(stmt)
