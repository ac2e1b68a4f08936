"""Heartbeat repository: which syncd processes run, and when each last said it was alive."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.models import Heartbeat
from syncd.store.tables import worker_heartbeats as hb
from syncd.store.upsert import insert_for


class HeartbeatRepo:
    """Register, beat, list and forget processes (`syncd check`, `syncd status`)."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    async def beat(self, tx: AsyncConnection, process: Heartbeat) -> None:
        """Insert the process or move its `last_beat_at` (the rest is kept from the first)."""
        ins = insert_for(self._dialect, hb).values(
            process_id=process.process_id,
            host=process.host,
            pid=process.pid,
            role=process.role,
            started_at=process.started_at,
            last_beat_at=process.last_beat_at,
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[hb.c.process_id],
            set_={"last_beat_at": ins.excluded.last_beat_at, "role": ins.excluded.role},
        )
        await tx.execute(stmt)

    async def touch(self, tx: AsyncConnection, process_id: str, *, now: datetime) -> bool:
        """Move `last_beat_at` of a registered process; False if it is not registered."""
        stmt = update(hb).where(hb.c.process_id == process_id).values(last_beat_at=now)
        return (await tx.execute(stmt)).rowcount > 0

    async def all(self, tx: AsyncConnection) -> list[Heartbeat]:
        """Every registered process, most recent beat first."""
        rows = (await tx.execute(select(hb).order_by(hb.c.last_beat_at.desc()))).all()
        return [
            Heartbeat(
                process_id=r.process_id,
                host=r.host,
                pid=r.pid,
                role=r.role,
                started_at=r.started_at,
                last_beat_at=r.last_beat_at,
            )
            for r in rows
        ]

    async def fresh(self, tx: AsyncConnection, *, now: datetime, stale_s: float) -> list[Heartbeat]:
        """Processes that beat within the last `stale_s` seconds."""
        limit = now - timedelta(seconds=stale_s)
        return [h for h in await self.all(tx) if h.last_beat_at >= limit]

    async def remove(self, tx: AsyncConnection, process_id: str) -> None:
        """Forget a process (on clean exit)."""
        await tx.execute(delete(hb).where(hb.c.process_id == process_id))

    async def prune(self, tx: AsyncConnection, *, before: datetime) -> int:
        """Forget processes silent since before `before`."""
        return (await tx.execute(delete(hb).where(hb.c.last_beat_at < before))).rowcount
