"""Audit repository: what was decided for each prospect and why (`syncd history`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.models import AuditLine
from syncd.store.tables import audit_lines as al


def _line(row: Row[Any]) -> AuditLine:
    return AuditLine(
        id=row.id,
        prospect_id=row.prospect_id,
        crm_id=row.crm_id,
        at=row.at,
        action=row.action,
        field=row.field,
        old=row.old,
        new=row.new,
        policy=row.policy,
        reason=row.reason,
        detail=row.detail,
    )


class AuditRepo:
    """Append audit lines in the pipeline's transaction; read a prospect's history."""

    async def append(self, tx: AsyncConnection, lines: Iterable[AuditLine]) -> int:
        """Append lines (their `id` is ignored and assigned); returns how many."""
        rows = [
            {
                "prospect_id": ln.prospect_id,
                "crm_id": ln.crm_id,
                "at": ln.at,
                "action": ln.action,
                "field": ln.field,
                "old": ln.old,
                "new": ln.new,
                "policy": ln.policy,
                "reason": ln.reason,
                "detail": dict(ln.detail) if ln.detail is not None else None,
            }
            for ln in lines
        ]
        if rows:
            await tx.execute(insert(al), rows)
        return len(rows)

    async def history(
        self, tx: AsyncConnection, prospect_id: int, *, limit: int = 100
    ) -> list[AuditLine]:
        """A prospect's audit lines, newest first."""
        stmt = (
            select(al)
            .where(al.c.prospect_id == prospect_id)
            .order_by(al.c.at.desc(), al.c.id.desc())
            .limit(limit)
        )
        return [_line(r) for r in (await tx.execute(stmt)).all()]

    async def history_for_crm(
        self, tx: AsyncConnection, crm_id: str, *, limit: int = 100
    ) -> list[AuditLine]:
        """A CRM record's audit lines, newest first."""
        stmt = (
            select(al)
            .where(al.c.crm_id == crm_id)
            .order_by(al.c.at.desc(), al.c.id.desc())
            .limit(limit)
        )
        return [_line(r) for r in (await tx.execute(stmt)).all()]
