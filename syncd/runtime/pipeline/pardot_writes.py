"""The apply stage's Pardot updates: one PATCH a prospect when few, ONE Import API upsert when many.

Pardot v5 has no batch update; 5 PATCHes in flight cap a backfill. The Import API
(`syncd.clients.pardot_import`: its docstring states the rules) writes a batch's updates in a
few calls. Here, per batch:

1. **Imports of earlier batches first.** Every import syncd starts is remembered in the store
   (kv `pardot_import:<id>`: {prospect id: digest of the values sent}) before any row is added
   to it, and forgotten, prospect by prospect, in the transaction that settles those
   prospects' items. An update for a prospect still named there asks Pardot what became of that
   import: Complete with the same values -> written already, not sent again (a row it refused
   fails like a refused PATCH); Failed, expired, never submitted or gone -> written again;
   still running -> waited for up to `pardot.import_wait_s`, else the work retries later
   (`IMPORT_INCOMPLETE`, the import still remembered). So an import that never completes is
   never doubled by a retry, and nothing is lost.
2. **Import or PATCH.** The updates are grouped by the exact set of fields they write (an
   import row blanks every column it carries, so one import holds one field set); a group of
   at least `pardot.import_min_rows` prospects is one import, smaller groups are PATCHed
   (0 turns imports off). Groups' imports run side by side within Pardot's 5 connections.
3. **An import's rows settle like PATCHes.** A refused row (Pardot's error CSV) fails its work
   alone with Pardot's message, a `PermanentAPIError` that parks it in the error queue; the
   others are APPLIED. A `start` that fails retriably (its answer may be lost: a POST is never
   resent) fails the group's works retriably: an orphan import holds no rows and expires after
   24 h without writing anything. A `start` refused (e.g. no Import ability) falls back to
   PATCHes, which write the same values.

Echo stamps: a PATCH answers the prospect's `updatedAt`, stored so the loader and the poller
recognise syncd's own write. An import answers no per-row `updatedAt`; reading the rows back
would cost a query per id cluster (a GET per scattered id). Instead each row's stamp is the
import's own `updatedAt` once Complete (no extra call): never earlier than its rows' writes
(rows are applied before the import ends; in the simulator the two are equal), so a snapshot
older than the write still triggers a fresh read; the worst case on the real API (UNCONFIRMED
there: an import ending a few seconds after a row) is one GET or one echo re-processed that
writes nothing. Without an `updatedAt` in the answer, the time syncd saw it Complete is used.

The budget is checked before every call, as the PATCH path does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from syncd import errors, logs
from syncd.clients.pardot_import import (
    ImportIncompleteError,
    ImportPlan,
    ImportRow,
    ImportStatus,
    PardotImports,
)
from syncd.domain.values import parse_datetime
from syncd.runtime.pipeline.stages import PARDOT_DELETED_RECORD, Board, RunStats
from syncd.runtime.wiring import Runtime
from syncd.store import Store

log = logs.get(__name__)

KV_PREFIX = "pardot_import:"  # + import id: {"at": iso time, "rows": {prospect id: digest}}
FORGET_AFTER = timedelta(days=7)  # Pardot keeps an import's results 7 days (v4 doc)
FIRST_POLL_S = 0.25  # the first pause between status reads; it doubles up to MAX_POLL_S
IMPORTS_REFUSED_S = 3600.0  # after Pardot refused an import: PATCH only, then try again
MAX_RECYCLE_CHECKS = 100  # refused rows read again to tell the recycle bin apart
MAX_POLL_S = 5.0
# import id -> prospects settled in this batch (None: it applied nothing, forget it whole)
ImportsDone = Mapping[int, frozenset[int] | None]


@dataclass(frozen=True)
class Update:
    """One prospect's Pardot update: its position on the board, id and values."""

    i: int
    prospect_id: int
    data: Mapping[str, Any]

    @property
    def digest(self) -> str:
        return digest(self.data)

    @property
    def field_set(self) -> tuple[str, ...]:
        return tuple(sorted(self.data))


def digest(data: Mapping[str, Any]) -> str:
    """A short fingerprint of the values sent (the store keeps no prospect values)."""
    text = json.dumps(dict(data), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class PardotWriter:
    """Writes one batch's Pardot updates (see the module docstring); `done` feeds settle."""

    rt: Runtime
    stats: RunStats
    done: dict[int, set[int] | None] = field(default_factory=dict)  # see `ImportsDone`

    @property
    def imports(self) -> PardotImports:
        return PardotImports(self.rt.pardot)

    async def write(self, board: Board, updates: Sequence[Update]) -> None:
        """Every update written (or its work FAILED / PAUSED); `done` names what settles."""
        self.done = {}
        if not updates:
            return
        pending = await self._remembered()
        if pending:
            updates = await self._earlier_imports(board, updates, pending)
        min_rows = self.rt.settings.pardot.import_min_rows
        refused_until = self.rt.imports_refused_until
        if refused_until is not None and self.rt.clock() < refused_until:
            min_rows = 0  # Pardot refused imports a while ago: PATCH until it may take them again
        groups: dict[tuple[str, ...], list[Update]] = {}
        for u in updates:
            groups.setdefault(u.field_set, []).append(u)
        bulk = [g for g in groups.values() if min_rows and len(g) >= min_rows]
        few = [u for g in groups.values() if not (min_rows and len(g) >= min_rows) for u in g]
        for g in bulk:  # un-assigning is not supported through Import (v5 import doc)
            few.extend(u for u in g if _unassigns(u))
            g[:] = [u for u in g if not _unassigns(u)]
        await asyncio.gather(self._patch(board, few), *(self._import(board, g) for g in bulk))

    # -- PATCH -----------------------------------------------------------------------------------

    async def _patch(self, board: Board, updates: Sequence[Update]) -> None:
        """One PATCH each, concurrently (the client caps concurrency at Pardot's limit)."""

        async def one(u: Update) -> None:
            try:
                # The budget is checked per call: one batch may hold hundreds of updates.
                self.rt.budget.check("pardot")
                answer = await self.rt.pardot.update_prospect(
                    u.prospect_id, u.data, ("id", "updatedAt")
                )
            except errors.BudgetExhaustedError as signal:
                board.pause(u.i, signal)  # the other updates in flight finish; this one waits
                return
            except errors.APIError as exc:
                board.fail(u.i, exc)
                return
            self.stats.pardot_fields += len(u.data)
            stamp = parse_datetime(answer.get("updatedAt")) if answer else None
            board.set(u.i, pardot_updated_at=stamp)

        if updates:
            await asyncio.gather(*(one(u) for u in updates))

    # -- one import ------------------------------------------------------------------------------

    async def _import(self, board: Board, group: Sequence[Update]) -> None:
        """One field set's updates through one import (several if over 10 batches' worth)."""
        rows = [ImportRow(u.data, match_id=u.prospect_id) for u in group]
        plans = self.imports.plan(rows)
        await asyncio.gather(*(self._one_import(board, group, plan) for plan in plans))

    async def _one_import(self, board: Board, group: Sequence[Update], plan: ImportPlan) -> None:
        mine = [group[n] for indexes in plan.keys.values() for n in indexes]
        try:
            self.rt.budget.check("pardot")
            import_id = await self.imports.start()
        except (errors.BudgetExhaustedError, errors.APIError) as exc:
            # A lost answer: an orphan import holds no rows; the works retry later.
            await self._not_submitted(board, mine, exc)
            return
        await self._remember(import_id, mine)
        log.info("pardot_import_started", import_id=import_id, rows=len(mine))
        try:
            for batch in plan.batches:
                self.rt.budget.check("pardot")
                await self.imports.add_batch(import_id, batch)
            self.rt.budget.check("pardot")
            await self.imports.submit(import_id)
        except (errors.BudgetExhaustedError, errors.APIError) as exc:
            # Paused or failed: remembered, the retry asks what became of it. Refused (the
            # daily import limit): nothing of it is ever applied, so it is forgotten.
            if isinstance(exc, errors.PermanentAPIError):
                self.done[import_id] = None
            await self._not_submitted(board, mine, exc)
            return
        again = await self._outcome(board, import_id, mine, same={u.prospect_id for u in mine})
        for u in again:  # it ended Failed: nothing was applied; the works retry later
            board.fail(u.i, _failed(import_id))

    async def _not_submitted(
        self,
        board: Board,
        mine: Sequence[Update],
        exc: errors.BudgetExhaustedError | errors.APIError,
    ) -> None:
        """An import call before the submission did not go through: a spent budget pauses the
        rows, Pardot refusing the import itself PATCHes them, any other error fails them."""
        if isinstance(exc, errors.BudgetExhaustedError):
            for u in mine:
                board.pause(u.i, exc)
        elif isinstance(exc, errors.PermanentAPIError):
            await self._import_refused(board, mine, exc)
        else:
            for u in mine:
                board.fail(u.i, exc)

    async def _import_refused(
        self, board: Board, mine: Sequence[Update], exc: errors.PermanentAPIError
    ) -> None:
        """Pardot refused an import itself, not a row of it (its daily limit of import batches,
        code 188): the rows are PATCHed now, and the next batches PATCH without trying an
        import for `IMPORTS_REFUSED_S`. Never the error queue: the rows were not refused."""
        self.rt.imports_refused_until = self.rt.clock() + timedelta(seconds=IMPORTS_REFUSED_S)
        log.warning(
            "pardot_import_refused_patching", code=exc.code, message=exc.message, rows=len(mine)
        )
        await self._patch(board, mine)

    async def _outcome(
        self, board: Board, import_id: int, mine: Sequence[Update], *, same: set[int]
    ) -> list[Update]:
        """Wait for the import and settle `mine`: the rows of `same` prospects were sent in it
        with the values wanted now (written, or refused: FAILED); the updates it did not write
        are returned (an import that applied nothing is forgotten whole at settle)."""
        try:
            status = await self._wait(import_id)
            refused = await self._refused(status)
        except errors.BudgetExhaustedError as signal:
            for u in mine:
                board.pause(u.i, signal)
            return []
        except errors.APIError as exc:
            for u in mine:
                board.fail(u.i, exc)  # still remembered: the retry asks again
            return []
        if status.status != "Complete":  # Failed, expired or never submitted: nothing applied
            log.info("pardot_import_applied_nothing", import_id=import_id, status=status.status)
            self.done[import_id] = None
            return list(mine)
        settled = self.done.setdefault(import_id, set())
        if settled is not None:
            settled.update(u.prospect_id for u in mine)
        stamp = status.updated_at or self.rt.clock()
        again: list[Update] = []
        for u in mine:
            if u.prospect_id not in same:
                again.append(u)
            elif u.prospect_id in refused:
                board.fail(u.i, refused[u.prospect_id])
            else:
                self.stats.pardot_fields += len(u.data)
                board.set(u.i, pardot_updated_at=stamp)
        if refused:
            log.warning("pardot_import_rows_refused", import_id=import_id, rows=len(refused))
        return again

    async def _wait(self, import_id: int) -> ImportStatus:
        """The import once finished; a never-submitted or expired one as is (nothing applied);
        `ImportIncompleteError` when it is still running after `pardot.import_wait_s`."""
        wait_s = min(self.rt.settings.pardot.import_wait_s, self.rt.settings.sync.lease_s / 2)
        self.rt.budget.check("pardot")
        try:
            status = await self.imports.status(import_id)
        except errors.PermanentAPIError as exc:
            if exc.status == 404:  # gone (results kept 7 days): treat as never applied
                return ImportStatus(import_id, "Failed", is_expired=True)
            raise
        if status.finished or status.status == "Open":
            return status
        try:
            return await self._poll(import_id, wait_s)
        except ImportIncompleteError as exc:
            if exc.code == "IMPORT_FAILED":
                return ImportStatus(import_id, "Failed", is_expired=False)
            raise

    async def _poll(self, import_id: int, wait_s: float) -> ImportStatus:
        # The budget is checked once for the wait: its few status reads are Pardot calls too.
        self.rt.budget.check("pardot")
        return await self.imports.wait(
            import_id,
            timeout_s=wait_s,
            poll_interval_s=FIRST_POLL_S,
            max_poll_interval_s=MAX_POLL_S,
        )

    async def _refused(self, status: ImportStatus) -> dict[int, errors.PermanentAPIError]:
        """Per prospect id, the error of its row that a Complete import refused."""
        if status.status != "Complete" or not status.error_count:
            return {}
        self.rt.budget.check("pardot")
        out: dict[int, errors.PermanentAPIError] = {}
        for line in await self.imports.errors(status.import_id):
            text = (line.get("matchId") or "").strip()
            if text.isdigit():
                out[int(text)] = errors.PermanentAPIError(
                    system="pardot",
                    status=200,
                    code="IMPORT_ROW",
                    message=line.get("error") or "refused by the import (no reason given)",
                )
        return await self._recycled(out)

    async def _recycled(
        self, refused: dict[int, errors.PermanentAPIError]
    ) -> dict[int, errors.PermanentAPIError]:
        """`refused` with the rows of prospects now in the recycle bin told apart.

        The error CSV has a reason's text, not the code a PATCH answers (219); a prospect sent
        to the recycle bin after syncd read it is a skip, never an error (`Work.failed`), so
        the refused prospects are read again (`deleted=all`, a GET each; refusals are rare) and
        those in the bin get Pardot's 219. A read that fails keeps the row's own error.
        """
        ids = sorted(refused)[:MAX_RECYCLE_CHECKS]

        async def read(pid: int) -> None:
            try:
                self.rt.budget.check("pardot")
                raw = await self.rt.pardot.get_prospect(
                    pid, ("id", "isDeleted"), include_deleted=True
                )
            except errors.APIError:
                return
            if raw is not None and raw.get("isDeleted") is True:
                refused[pid] = errors.PermanentAPIError(
                    system="pardot",
                    status=400,
                    code=PARDOT_DELETED_RECORD,
                    message=f"prospect {pid} is in the recycle bin ({refused[pid].message})",
                )

        await asyncio.gather(*(read(pid) for pid in ids))
        return refused

    # -- imports of earlier batches --------------------------------------------------------------

    async def _earlier_imports(
        self, board: Board, updates: Sequence[Update], pending: Mapping[int, Mapping[int, str]]
    ) -> list[Update]:
        """Settle the updates named by a remembered import; the rest are returned to write."""
        by_import: dict[int, list[Update]] = {}
        rest: list[Update] = []
        for u in updates:
            found = next((n for n, rows in pending.items() if u.prospect_id in rows), None)
            if found is None:
                rest.append(u)
            else:
                by_import.setdefault(found, []).append(u)
        for import_id, mine in by_import.items():
            rows = pending[import_id]
            same = {u.prospect_id for u in mine if rows.get(u.prospect_id) == u.digest}
            log.info("pardot_import_asked_again", import_id=import_id, rows=len(mine))
            rest.extend(await self._outcome(board, import_id, mine, same=same))
        return rest

    async def _remembered(self) -> dict[int, dict[int, str]]:
        store = self.rt.store
        now = self.rt.clock()
        async with store.read() as tx:
            found = await store.kv.with_prefix(tx, KV_PREFIX)
        out: dict[int, dict[int, str]] = {}
        stale: list[str] = []
        for key, value in found.items():
            rows = _rows(value, now=now)
            if rows is None:
                stale.append(key)
            elif key[len(KV_PREFIX) :].isdigit():
                out[int(key[len(KV_PREFIX) :])] = rows
        if stale:  # older than Pardot keeps an import's results: nothing left to ask
            async with store.transaction() as tx:
                for key in stale:
                    await store.kv.delete(tx, key)
        return out

    async def _remember(self, import_id: int, updates: Sequence[Update]) -> None:
        """Before any row is added: a crash from here on leaves the import known."""
        now = self.rt.clock()
        value = {"at": now.isoformat(), "rows": {str(u.prospect_id): u.digest for u in updates}}
        async with self.rt.store.transaction() as tx:
            await self.rt.store.kv.set(tx, f"{KV_PREFIX}{import_id}", value, now=now)


def _unassigns(u: Update) -> bool:
    return any(k in u.data and u.data[k] is None for k in ("userId", "salesforceOwnerId"))


def _failed(import_id: int) -> errors.RetriableAPIError:
    return ImportIncompleteError(
        system="pardot",
        status=None,
        code="IMPORT_FAILED",
        message=f"Pardot import {import_id} ended Failed; nothing was applied (written again "
        "on retry)",
        import_id=import_id,
        last_status="Failed",
    )


def _rows(value: Any, *, now: datetime) -> dict[int, str] | None:
    """A remembered import's rows (prospect id -> digest); None when unreadable or too old."""
    if not isinstance(value, Mapping):
        return None
    at = parse_datetime(value.get("at"))
    rows = value.get("rows")
    if at is None or at < now - FORGET_AFTER or not isinstance(rows, Mapping):
        return None
    return {int(p): str(d) for p, d in rows.items() if str(p).isdigit()}


async def forget(store: Store, tx: Any, done: ImportsDone, *, now: datetime) -> None:
    """In the settle transaction: drop the settled prospects from their remembered imports (None
    forgets the whole import, and so does its last prospect settled)."""
    for import_id, pids in done.items():
        key = f"{KV_PREFIX}{import_id}"
        if pids is None:
            await store.kv.delete(tx, key)
            continue
        if not pids:
            continue
        value = await store.kv.get(tx, key, for_update=True)
        rows = _rows(value, now=now)
        left = {p: d for p, d in (rows or {}).items() if p not in pids}
        if left and isinstance(value, Mapping):
            kept = {"at": value["at"], "rows": {str(p): d for p, d in left.items()}}
            await store.kv.set(tx, key, kept, now=now)
        else:
            await store.kv.delete(tx, key)
