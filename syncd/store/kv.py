"""Key-value repository: small JSON values the daemon keeps between runs.

Examples: the rotated Salesforce refresh token, the Pardot -> CRM user map cache. Values may be
secrets: the SQLite file is created 0600; never log a value read from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.tables import kv
from syncd.store.upsert import insert_for

_CHUNK = 5000  # keys per IN list: well under SQLite's and asyncpg's parameter limits


class KvRepo:
    """get / set / delete JSON-serialisable values by key."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    async def get(self, tx: AsyncConnection, key: str, *, for_update: bool = False) -> Any:
        """The value, or None if the key is not set.

        `for_update` locks the row until the transaction ends (PostgreSQL `FOR UPDATE`; SQLite
        write transactions are exclusive already), for a read-modify-write of the value.
        """
        stmt = select(kv.c.value).where(kv.c.key == key)
        if for_update:
            stmt = stmt.with_for_update()
        return (await tx.execute(stmt)).scalar_one_or_none()

    async def get_many(
        self, tx: AsyncConnection, keys: Iterable[str], *, for_update: bool = False
    ) -> dict[str, Any]:
        """The values of the keys that are set, in one statement per chunk of keys.

        `for_update` locks the rows (in key order, so two callers never lock in opposite
        orders) until the transaction ends.
        """
        wanted = sorted(set(keys))
        out: dict[str, Any] = {}
        for start in range(0, len(wanted), _CHUNK):
            stmt = select(kv.c.key, kv.c.value).where(kv.c.key.in_(wanted[start : start + _CHUNK]))
            if for_update:
                stmt = stmt.order_by(kv.c.key).with_for_update()
            out.update((r.key, r.value) for r in (await tx.execute(stmt)).all())
        return out

    async def with_prefix(self, tx: AsyncConnection, prefix: str) -> dict[str, Any]:
        """Every key starting with `prefix` (matched literally), with its value."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = select(kv.c.key, kv.c.value).where(kv.c.key.like(escaped + "%", escape="\\"))
        return {row.key: row.value for row in await tx.execute(stmt)}

    async def get_with_time(self, tx: AsyncConnection, key: str) -> tuple[Any, datetime] | None:
        """The value and when it was set, or None."""
        row = (await tx.execute(select(kv.c.value, kv.c.updated_at).where(kv.c.key == key))).first()
        return None if row is None else (row.value, row.updated_at)

    async def set(self, tx: AsyncConnection, key: str, value: Any, *, now: datetime) -> None:
        """Set the value (JSON-serialisable; None stores SQL NULL)."""
        ins = insert_for(self._dialect, kv).values(key=key, value=value, updated_at=now)
        stmt = ins.on_conflict_do_update(
            index_elements=[kv.c.key],
            set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at},
        )
        await tx.execute(stmt)

    async def set_many(
        self, tx: AsyncConnection, values: Mapping[str, Any], *, now: datetime
    ) -> None:
        """Set several values in one statement (executemany)."""
        if not values:
            return
        ins = insert_for(self._dialect, kv)
        stmt = ins.on_conflict_do_update(
            index_elements=[kv.c.key],
            set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at},
        )
        rows = [{"key": k, "value": v, "updated_at": now} for k, v in sorted(values.items())]
        await tx.execute(stmt, rows)

    async def delete_many(self, tx: AsyncConnection, keys: Iterable[str]) -> int:
        """Remove the keys; returns how many were set."""
        wanted = sorted(set(keys))
        total = 0
        for start in range(0, len(wanted), _CHUNK):
            stmt = delete(kv).where(kv.c.key.in_(wanted[start : start + _CHUNK]))
            total += (await tx.execute(stmt)).rowcount
        return total

    async def delete(self, tx: AsyncConnection, key: str) -> bool:
        """Remove the key; False if it was not set."""
        return (await tx.execute(delete(kv).where(kv.c.key == key))).rowcount > 0
