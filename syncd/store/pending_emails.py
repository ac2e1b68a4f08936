"""Pending emails repository: sent emails waiting to be logged as Tasks, per prospect.

The emails feed adds them in the same transaction as its cursor; the pipeline reads them with
the batch and removes the ones it logged in its settle transaction. They are kept in the `kv`
table under `emails.<prospect id>` (one JSON list per prospect: no schema change), and every
read-modify-write locks that row (`FOR UPDATE` on PostgreSQL; SQLite write transactions are
exclusive), so a feed adding emails and a worker removing others never lose either's change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from syncd.store.kv import KvRepo

KEY = "emails.{prospect_id}"


@dataclass(frozen=True, slots=True)
class PendingEmail:
    """One sent email as the feed read it (`sent_at` is the API's text, parsed by the reader)."""

    id: int
    prospect_id: int
    subject: str = ""
    sent_at: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], prospect_id: int) -> PendingEmail:
        """From a Pardot email row (`id`, `prospectId`, `subject`, `sentAt`)."""
        return cls(
            id=int(row["id"]),
            prospect_id=int(row.get("prospectId") or prospect_id),
            subject=str(row.get("subject") or ""),
            sent_at=None if row.get("sentAt") is None else str(row.get("sentAt")),
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prospectId": self.prospect_id,
            "subject": self.subject,
            "sentAt": self.sent_at,
        }


def _key(prospect_id: int) -> str:
    return KEY.format(prospect_id=prospect_id)


class PendingEmailRepo:
    """add / for_prospects / remove_logged, over the kv table."""

    def __init__(self, kv: KvRepo) -> None:
        self._kv = kv

    async def _locked(
        self, tx: AsyncConnection, prospect_ids: Iterable[int]
    ) -> dict[int, list[dict[str, Any]]]:
        """The pending rows of these prospects, their kv rows locked (one statement)."""
        ids = sorted(set(prospect_ids))
        found = await self._kv.get_many(tx, [_key(pid) for pid in ids], for_update=True)
        return {pid: list(found.get(_key(pid)) or []) for pid in ids}

    async def add(
        self,
        tx: AsyncConnection,
        by_prospect: Mapping[int, Sequence[PendingEmail]],
        *,
        now: datetime,
    ) -> None:
        """Add emails per prospect; an email already pending (same id) is kept once."""
        current = await self._locked(tx, by_prospect)
        values: dict[str, Any] = {}
        for prospect_id, sent in by_prospect.items():
            known = current[prospect_id]
            have = {int(e["id"]) for e in known}
            fresh = []
            for e in sent:
                if e.id not in have:
                    have.add(e.id)
                    fresh.append(e.to_row())
            values[_key(prospect_id)] = [*known, *fresh]
        await self._kv.set_many(tx, values, now=now)

    async def for_prospects(
        self, tx: AsyncConnection, prospect_ids: Iterable[int]
    ) -> dict[int, list[PendingEmail]]:
        """The pending emails of each prospect that has any (one read for all of them)."""
        ids = list(prospect_ids)
        found = await self._kv.get_many(tx, [_key(pid) for pid in ids])
        out: dict[int, list[PendingEmail]] = {}
        for pid in ids:
            rows = found.get(_key(pid))
            if rows:
                out[pid] = [PendingEmail.from_row(r, pid) for r in rows]
        return out

    async def remove_logged(
        self,
        tx: AsyncConnection,
        prospect_id: int,
        logged: frozenset[int] | None,
        *,
        now: datetime,
    ) -> None:
        """Remove the emails `logged` (ids); None removes them all (email activities off)."""
        await self.remove_logged_many(tx, {prospect_id: logged}, now=now)

    async def remove_logged_many(
        self,
        tx: AsyncConnection,
        logged: Mapping[int, frozenset[int] | None],
        *,
        now: datetime,
    ) -> None:
        """Per prospect, remove the emails logged (ids; None: all of them, email activities
        off), in a few statements for the whole batch.

        Only those: the emails feed may have added emails to a prospect since the batch read
        them, and a rewrite from that read would lose them.
        """
        if not logged:
            return
        current = await self._locked(tx, logged)
        drop: list[str] = []
        keep: dict[str, Any] = {}
        for prospect_id, ids in logged.items():
            rows = current[prospect_id]
            left = [] if ids is None else [e for e in rows if int(e["id"]) not in ids]
            if not left:
                if rows:
                    drop.append(_key(prospect_id))
            elif len(left) != len(rows):
                keep[_key(prospect_id)] = left
        await self._kv.delete_many(tx, drop)
        await self._kv.set_many(tx, keep, now=now)
