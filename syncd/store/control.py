"""Control repository: operator switches kept in the store (pause / resume of a side).

A pause is a row in the key-value table (`control.paused.<side>`) holding who paused the side
and when, so every process on the database honours it: pollers skip that side's feeds and
workers claim no batch while either side is paused (a batch may write to both sides). The
change itself is audited by the caller (`ConsoleRepo.record_action`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.kv import KvRepo
from syncd.store.tables import kv

SIDES = ("salesforce", "pardot")
PAUSE_KEY = "control.paused."


class ControlRepo:
    """`paused(tx)` -> {side: who and when}; `pause(tx, side, by=...)`; `resume(tx, side)`."""

    def __init__(self, dialect: str) -> None:
        self._kv = KvRepo(dialect)

    async def paused(self, tx: AsyncConnection) -> dict[str, dict[str, Any]]:
        """The paused sides, each with `by` (who paused it) and `at` (ISO time); {} when none."""
        stmt = select(kv.c.key, kv.c.value).where(kv.c.key.in_([PAUSE_KEY + s for s in SIDES]))
        out: dict[str, dict[str, Any]] = {}
        for key, value in (await tx.execute(stmt)).all():
            side = key[len(PAUSE_KEY) :]
            out[side] = dict(value) if isinstance(value, dict) else {}
        return out

    async def pause(self, tx: AsyncConnection, side: str, *, by: str, now: datetime) -> bool:
        """Pause `side`; False when it was paused already (the first pause is kept)."""
        _check_side(side)
        if await self._kv.get(tx, PAUSE_KEY + side, for_update=True) is not None:
            return False
        await self._kv.set(tx, PAUSE_KEY + side, {"by": by, "at": now.isoformat()}, now=now)
        return True

    async def resume(self, tx: AsyncConnection, side: str) -> bool:
        """Resume `side`; False when it was not paused."""
        _check_side(side)
        return await self._kv.delete(tx, PAUSE_KEY + side)


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}: use one of {', '.join(SIDES)}")
