"""Link repository: prospect <-> CRM record pairs and their last-synced values (merge base)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.models import Link
from syncd.store.tables import links as lk
from syncd.store.upsert import insert_for

# Bound parameters per IN list: well under SQLite's 32766 and asyncpg's 32767.
_CHUNK = 5000


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _link(row: Row[Any]) -> Link:
    return Link(
        prospect_id=row.prospect_id,
        crm_type=row.crm_type,
        crm_id=row.crm_id,
        email=row.email,
        base=row.base or {},
        synced_at=row.synced_at,
        crm_deleted=bool(row.crm_deleted),
        recycled_at=row.recycled_at,
    )


def _norm_email(email: str | None) -> str | None:
    return email.strip().lower() if email else None


class LinkRepo:
    """Read and write links in the caller's transaction."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    async def by_prospect_ids(
        self, tx: AsyncConnection, prospect_ids: Iterable[int]
    ) -> dict[int, Link]:
        """The links of these prospects (absent ids have none)."""
        ids = sorted(set(prospect_ids))
        out: dict[int, Link] = {}
        for part in _chunks(ids):
            rows = (await tx.execute(select(lk).where(lk.c.prospect_id.in_(part)))).all()
            out.update((r.prospect_id, _link(r)) for r in rows)
        return out

    async def by_crm_ids(
        self, tx: AsyncConnection, crm_ids: Iterable[str]
    ) -> dict[str, list[Link]]:
        """The links to these CRM records; a record may be linked by several prospects."""
        ids = sorted(set(crm_ids))
        out: dict[str, list[Link]] = {}
        for part in _chunks(ids):
            stmt = select(lk).where(lk.c.crm_id.in_(part)).order_by(lk.c.prospect_id)
            for r in (await tx.execute(stmt)).all():
                out.setdefault(r.crm_id, []).append(_link(r))
        return out

    async def by_emails(self, tx: AsyncConnection, emails: Iterable[str]) -> dict[str, list[Link]]:
        """The links by email, case-insensitively; keys are the lower-cased emails."""
        wanted = sorted({e for e in (_norm_email(x) for x in emails) if e})
        out: dict[str, list[Link]] = {}
        for part in _chunks(wanted):
            stmt = select(lk).where(lk.c.email.in_(part)).order_by(lk.c.prospect_id)
            for r in (await tx.execute(stmt)).all():
                out.setdefault(r.email, []).append(_link(r))
        return out

    async def upsert_many(
        self, tx: AsyncConnection, links: Iterable[Link], *, now: datetime
    ) -> int:
        """Insert or replace links by prospect id; returns how many were written."""
        rows = {
            link.prospect_id: {
                "prospect_id": link.prospect_id,
                "crm_type": link.crm_type,
                "crm_id": link.crm_id,
                "email": _norm_email(link.email),
                "base": dict(link.base),
                "crm_deleted": link.crm_deleted,
                "recycled_at": link.recycled_at,
                "synced_at": link.synced_at,
                "created_at": now,
                "updated_at": now,
            }
            for link in links
        }
        if not rows:
            return 0
        ins = insert_for(self._dialect, lk)
        names = (
            "crm_type",
            "crm_id",
            "email",
            "base",
            "crm_deleted",
            "recycled_at",
            "synced_at",
            "updated_at",
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[lk.c.prospect_id], set_={k: ins.excluded[k] for k in names}
        )
        await tx.execute(stmt, list(rows.values()))
        return len(rows)

    async def move(
        self,
        tx: AsyncConnection,
        old_crm_id: str,
        *,
        crm_type: str,
        crm_id: str,
        now: datetime,
    ) -> int:
        """Point every link of `old_crm_id` at another record (a Lead converted to a Contact)."""
        stmt = (
            update(lk)
            .where(lk.c.crm_id == old_crm_id)
            .values(crm_type=crm_type, crm_id=crm_id, crm_deleted=False, updated_at=now)
        )
        return (await tx.execute(stmt)).rowcount

    async def mark_crm_deleted(
        self, tx: AsyncConnection, crm_ids: Iterable[str], *, now: datetime
    ) -> list[int]:
        """Mark the links of deleted CRM records; returns the affected prospect ids."""
        ids = sorted(set(crm_ids))
        out: list[int] = []
        for part in _chunks(ids):
            stmt = (
                update(lk)
                .where(lk.c.crm_id.in_(part), lk.c.crm_deleted.is_(False))
                .values(crm_deleted=True, updated_at=now)
                .returning(lk.c.prospect_id)
            )
            out.extend((await tx.execute(stmt)).scalars().all())
        return sorted(out)

    async def delete(self, tx: AsyncConnection, prospect_ids: Iterable[int]) -> int:
        """Forget these prospects' links (the prospect was deleted in Pardot)."""
        from sqlalchemy import delete

        total = 0
        for part in _chunks(sorted(set(prospect_ids))):
            total += (await tx.execute(delete(lk).where(lk.c.prospect_id.in_(part)))).rowcount
        return total

    async def recycled(self, tx: AsyncConnection, *, limit: int) -> tuple[int, list[int]]:
        """How many linked prospects are in Pardot's recycle bin (`recycled_at` set), and the
        first `limit` of their ids (by id)."""
        where = lk.c.recycled_at.is_not(None)
        total = (await tx.execute(select(func.count()).select_from(lk).where(where))).scalar()
        rows = await tx.execute(
            select(lk.c.prospect_id).where(where).order_by(lk.c.prospect_id).limit(limit)
        )
        return int(total or 0), [int(r.prospect_id) for r in rows]

    async def live(self, tx: AsyncConnection, *, limit: int) -> list[tuple[int, str]]:
        """Up to `limit` (prospect id, CRM id) pairs of live links (not `crm_deleted`), by
        prospect id: what the demo and the benchmarks read as "synced"."""
        rows = await tx.execute(
            select(lk.c.prospect_id, lk.c.crm_id)
            .where(lk.c.crm_deleted.is_(False))
            .order_by(lk.c.prospect_id)
            .limit(limit)
        )
        return [(int(r.prospect_id), str(r.crm_id)) for r in rows]
