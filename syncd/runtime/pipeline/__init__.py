"""The reconcile pipeline: claim a batch, load both sides in bulk, decide per prospect, apply,
settle. One room per stage:

1. **claim** (here) up to `sync.batch_size` due items (a lease; other workers skip them).
2. **load** (`load.Loader`): group the items into `Work` values (one per prospect or CRM-only
   record), then read in bulk: prospects (the poller's snapshot when it is newer than our last
   write, else Pardot GETs / id-range reads), links and pending emails from the store, CRM
   records by id, email and mirror field and converted Leads' Contacts (`CrmRecords.lookup`).
   `syncd preflight` decides with the same `read_crm` and `prospect_input`.
3. **decide** (`decide.decide`, pure): `domain.plan.reconcile` per prospect, or a skip.
4. **apply** (`apply.Applier`): Lead creates exactly once, prospect creates, CRM updates,
   email Tasks (`tasks.TaskLogger`: reserved in the store first), Pardot updates.
5. **settle** (`settle.settle`, pure; `settle.write`, ONE store transaction): links and merge
   bases, audit lines, pending emails logged, and the items completed, retried later or
   parked in the error queue.

A `Work` is frozen and carries its `Status` (`stages.Status` says what each state means).

Per item: success -> complete; `RetriableAPIError` -> retry later with `domain.retry` backoff;
`PermanentAPIError` (also per-record collection errors) -> the sync error queue with code and
message. `BudgetExhaustedError` is not an `APIError`, so no `except APIError` here swallows it:
raised while loading, it leaves `process` and the worker releases the batch; raised while
applying, `process` settles the batch with every unfinished item given back without using an
attempt (what was done stays done: a created Lead stays linked), then raises it so the side
pauses (`syncd.runtime.worker`'s docstring has the whole table, bugs included). A plan that
changes nothing writes nothing, so reprocessing an item is harmless.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from syncd import errors
from syncd.clients.prospects import prospect_from
from syncd.clients.records import record_from
from syncd.domain.models import Directory
from syncd.domain.plan import Plan
from syncd.runtime.control import SIDES, raise_if_paused
from syncd.runtime.pipeline import settle as settling
from syncd.runtime.pipeline.apply import Applier
from syncd.runtime.pipeline.decide import decide
from syncd.runtime.pipeline.load import RANGE_MAX_SPAN, RANGE_MIN_IDS, Loader, id_clusters
from syncd.runtime.pipeline.stages import Board, RunStats, Status, Work, domain_link
from syncd.runtime.wiring import Runtime
from syncd.store.models import QueueItem

__all__ = [
    "RANGE_MAX_SPAN",
    "RANGE_MIN_IDS",
    "Pipeline",
    "RunStats",
    "Status",
    "Work",
    "domain_link",
    "id_clusters",
    "prospect_from",
    "record_from",
]
# `prospect_from` / `record_from` live in the clients now (the port maps wire -> domain); they are
# re-exported here for the imports that predate the move.


class Pipeline:
    """Claims and syncs batches of queued items for one worker."""

    def __init__(self, rt: Runtime, *, worker_id: str, stats: RunStats | None = None) -> None:
        self.rt = rt
        self.worker_id = worker_id
        self.stats = stats if stats is not None else RunStats()
        self.loader = Loader(rt)
        self.applier = Applier(rt, self.stats, worker_id)

    async def claim(self) -> list[QueueItem]:
        """Claim the next batch of due items (after returning expired leases to the queue)."""
        rt = self.rt
        now = rt.clock()
        s = rt.settings.sync

        async def take(tx: Any) -> list[QueueItem]:
            # console pause hook (syncd.runtime.control): no batch while a side is paused
            await raise_if_paused(rt.store, tx, SIDES)
            await rt.store.queue.reap(tx, now=now, max_attempts=s.max_attempts)
            return await rt.store.queue.claim(
                tx, worker_id=self.worker_id, limit=s.batch_size, lease_s=s.lease_s, now=now
            )

        items: list[QueueItem] = await rt.store.run(take)
        return items

    # The stage methods below are the seams tests may patch (a bug or a spent budget injected
    # in one stage); `process` goes through them.

    async def _load(self, works: list[Work], directory: Directory) -> list[Work]:
        """The load stage: every work LOADED or FAILED."""
        return await self.loader.load(works)

    async def _apply(self, board: Board, directory: Directory) -> None:
        """The apply stage: every DECIDED work of `board` APPLIED, FAILED or PAUSED."""
        await self.applier.apply(board, directory)

    async def _decided(self, items: Sequence[QueueItem]) -> tuple[list[Work], Directory]:
        works = await self.loader.group(items)
        directory = await self.rt.directory()
        works = await self._load(works, directory)
        now = self.rt.clock()
        return decide(works, config=self.rt.config, directory=directory, now=now), directory

    async def process(self, items: Sequence[QueueItem]) -> list[Work]:
        """Load, decide and apply for claimed `items`; settle every item in the store."""
        decided, directory = await self._decided(items)
        board = Board(decided)
        try:
            await self._apply(board, directory)
        except errors.BudgetExhaustedError as signal:
            # A side's budget ran out mid-apply: what is done stays done, the rest waits.
            for i in range(len(board)):
                board.pause(i, signal)
        works = board.works
        now = self.rt.clock()
        s = self.rt.settings.sync
        out = settling.settle(
            works,
            now,
            rules=settling.RetryRules(base_s=s.retry_base_s, max_attempts=s.max_attempts),
            email_activities=self.rt.config.email_activities,
            jitter=random.random,
        )
        done = self.applier.pardot_writes.done
        if done:
            out = replace(out, imports_done=settling.imports_done(done, works))
        settling.count(self.stats, works, out)
        await settling.write(self.rt.store, out, worker_id=self.worker_id, now=now)
        paused = next((w.paused for w in works if w.paused is not None), None)
        if paused is not None:
            raise paused
        refused = next((w.error for w in works if isinstance(w.error, errors.AuthError)), None)
        if refused is not None:
            raise refused  # the worker counts the refusal (the daemon backs off, once exits 2)
        return works

    async def plan_only(self, items: Sequence[QueueItem]) -> list[Plan]:
        """Load and decide without writing anything (`syncd once --dry-run`)."""
        works, _ = await self._decided(items)
        return [w.plan for w in works if w.plan is not None]
