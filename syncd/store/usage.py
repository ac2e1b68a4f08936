"""API usage repository: syncd's own calls per system and hour, and the org-wide usage seen.

Hour buckets are shared by every process on one database, so the daily budget check sums what
all instances spent in the last 24 hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.models import OrgUsage
from syncd.store.tables import api_limits, api_usage
from syncd.store.upsert import insert_for


def hour_of(at: datetime) -> datetime:
    """The start of the UTC hour bucket holding `at` (UTC: some zones are off by 30 minutes)."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class UsageRepo:
    """Count calls, sum the last day, remember the org's own usage figures."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    async def add(self, tx: AsyncConnection, system: str, calls: int, *, at: datetime) -> None:
        """Add `calls` to `system`'s bucket for the hour of `at`."""
        if calls == 0:
            return
        ins = insert_for(self._dialect, api_usage).values(
            system=system, hour=hour_of(at), calls=calls
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[api_usage.c.system, api_usage.c.hour],
            set_={"calls": api_usage.c.calls + ins.excluded.calls},
        )
        await tx.execute(stmt)

    async def last_24h(self, tx: AsyncConnection, system: str, *, now: datetime) -> int:
        """Calls in the 24 hour buckets ending with the current one."""
        since = hour_of(now) - timedelta(hours=23)
        stmt = select(func.coalesce(func.sum(api_usage.c.calls), 0)).where(
            api_usage.c.system == system, api_usage.c.hour >= since
        )
        return int((await tx.execute(stmt)).scalar_one())

    async def prune(self, tx: AsyncConnection, *, before: datetime) -> int:
        """Delete buckets older than `before`."""
        return (await tx.execute(delete(api_usage).where(api_usage.c.hour < before))).rowcount

    async def record_org(
        self, tx: AsyncConnection, system: str, *, used: int, limit: int, observed_at: datetime
    ) -> None:
        """Remember the org-wide usage an API reported (kept only if newer than the last)."""
        ins = insert_for(self._dialect, api_limits).values(
            system=system, used=used, limit=limit, observed_at=observed_at
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[api_limits.c.system],
            set_={k: ins.excluded[k] for k in ("used", "limit", "observed_at")},
            where=api_limits.c.observed_at <= ins.excluded.observed_at,
        )
        await tx.execute(stmt)

    async def org(self, tx: AsyncConnection, system: str) -> OrgUsage | None:
        """The last org-wide usage seen for `system`."""
        row = (await tx.execute(select(api_limits).where(api_limits.c.system == system))).first()
        if row is None:
            return None
        return OrgUsage(
            system=row.system, used=row.used, limit=row.limit, observed_at=row.observed_at
        )
