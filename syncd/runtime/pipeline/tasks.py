"""The email-Task room: log sent emails as Salesforce Tasks, exactly once per (email, record).

Each (email id, record id) pair is reserved in the store (committed) before its Task is created
and marked done with the Task id after. A pair found still pending was being created when an
answer was lost or the process died: the record's Tasks are searched for the email's marker
first (`CrmRecords.email_tasks`), and the Task is created only if it is not there; a pair whose
outcome is unknown is let go so the next attempt (by any worker) searches again.

Exactly once must not depend on the store surviving (a lost file, a new database): a pair the
store knew nothing of is searched for too, in bulk for the batch, unless its record was created
by this very batch (a new Lead has no Tasks yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from syncd import errors, logs
from syncd.domain.models import Directory, sf_id_key
from syncd.domain.plan import TaskSpec, task_fields
from syncd.runtime.pipeline.stages import Board, RunStats, result_error
from syncd.runtime.wiring import Runtime

log = logs.get(__name__)

Key = tuple[int, str]  # (Pardot email id, WhoId)
Done = tuple[Key, str]  # a pair and its Task id


@dataclass(frozen=True)
class TaskJob:
    """One email Task to log: the work (board position) it belongs to, the spec, the WhoId."""

    at: int
    spec: TaskSpec
    who: str
    on_new_record: bool  # the record was created by this batch: it has no Tasks yet

    @property
    def key(self) -> Key:
        return (self.spec.email_id, self.who)


class TaskLogger:
    """reserve -> search by marker -> create -> mark done / let go."""

    def __init__(self, rt: Runtime, stats: RunStats, worker_id: str) -> None:
        self.rt = rt
        self.stats = stats
        self.worker_id = worker_id

    async def log(self, board: Board, idx: list[int], directory: Directory) -> None:
        """Log the Tasks the plans of `idx` ask for; a spent budget lets their holds go."""
        wanted: list[TaskJob] = []
        for i in idx:
            w = board[i]
            plan = w.plan
            who = (plan.crm_id or w.created_id) if plan is not None else None
            if plan is None or who is None:
                continue
            new = w.created_new and who == w.created_id
            wanted.extend(TaskJob(i, spec, who, new) for spec in plan.tasks)
        if not wanted:
            return
        todo, unsure = await self._reserve(board, wanted)
        # New reservations whose record existed before this batch: the store may have lost what
        # it knew (a Task made by an earlier store), so look for the marker before creating.
        fresh = [j for j in todo if not j.on_new_record]
        if fresh:
            todo = [j for j in todo if j.on_new_record]
            unsure = [*unsure, *fresh]
        held = [j.key for j in [*todo, *unsure]]
        done: list[Done] = []
        released: list[Key] = []
        try:
            if unsure:
                found, again = await self._find(board, unsure)
                done.extend(found)
                todo.extend(again)
            if todo:
                created, released = await self._send(board, todo, directory)
                done.extend(created)
        except errors.BudgetExhaustedError:
            # Paused with the outcome of these pairs unknown: let them go, so the next attempt
            # (by any worker) searches for their Tasks by marker before creating any.
            await self._let_go(held)
            raise
        if done or released:
            async with self.rt.store.transaction() as tx:
                if done:
                    await self.rt.store.activities.mark_done(tx, done, now=self.rt.clock())
                if released:
                    await self.rt.store.activities.release(tx, released)

    async def _reserve(
        self, board: Board, wanted: list[TaskJob]
    ) -> tuple[list[TaskJob], list[TaskJob]]:
        """Hold each pair for this worker; returns (to create, to search for first).

        New pairs are reserved (ours only if our INSERT made them); pending pairs whose hold ran
        out or was let go are taken over and searched for by marker before any create. A pair
        held by another live worker (the same email reached through another queue item) is not
        touched: that job's item retries later and then finds the Task done.
        """
        rt = self.rt
        now = rt.clock()
        hold_until = now + timedelta(seconds=rt.settings.sync.lease_s)
        keys = sorted({j.key for j in wanted})
        prospect_of = {j.key: board[j.at].prospect_id for j in reversed(wanted)}
        async with rt.store.transaction() as tx:
            known = await rt.store.activities.get(tx, keys)
            mine: set[Key] = set()
            for key in (k for k in keys if k not in known):
                mine.update(
                    await rt.store.activities.reserve(
                        tx, [key], prospect_id=prospect_of[key], now=now, hold_until=hold_until
                    )
                )
            stale = [k for k, a in known.items() if a.state == "pending"]
            taken = set(
                await rt.store.activities.take_over(tx, stale, now=now, hold_until=hold_until)
            )
        todo: list[TaskJob] = []
        unsure: list[TaskJob] = []
        seen: set[Key] = set()
        for job in wanted:
            prior = known.get(job.key)
            if prior is not None and prior.state == "done":
                board.logged(job.at, job.spec.email_id)
            elif job.key in seen or job.key not in mine | taken:
                board.fail(
                    job.at,
                    errors.RetriableAPIError(
                        system="salesforce",
                        status=None,
                        code="TASK_IN_FLIGHT",
                        message=(
                            f"email {job.spec.email_id} is being logged as a Task by another "
                            "worker; this item retries later"
                        ),
                    ),
                )
            elif job.key in mine:
                todo.append(job)
            else:
                unsure.append(job)
            seen.add(job.key)
        return todo, unsure

    async def _find(self, board: Board, unsure: list[TaskJob]) -> tuple[list[Done], list[TaskJob]]:
        """Tasks of pending pairs that already exist (found by marker), and the ones that don't."""
        try:
            existing = await self.rt.crm.email_tasks({j.who for j in unsure})
        except errors.APIError as exc:
            for job in unsure:
                board.fail(job.at, exc)
            await self._let_go([j.key for j in unsure])
            return [], []
        found: list[Done] = []
        again: list[TaskJob] = []
        for job in unsure:
            task_id = existing.get((job.spec.email_id, sf_id_key(job.who)))
            if task_id:
                found.append((job.key, task_id))
                board.logged(job.at, job.spec.email_id)
                log.info(
                    "task_found_after_lost_answer", email_id=job.spec.email_id, task_id=task_id
                )
            else:
                again.append(job)
        return found, again

    async def _send(
        self, board: Board, todo: list[TaskJob], directory: Directory
    ) -> tuple[list[Done], list[Key]]:
        """Create the Tasks; returns (created pairs with Task ids, reservations to drop)."""
        bodies = []
        for job in todo:
            body = task_fields(job.spec, job.who)
            if "OwnerId" not in body:
                # Created by an assignment rule: the Task belongs to the owner it chose.
                record = board[job.at].created_record
                owner = record.owner_id if record is not None else None
                usable = owner and not directory.is_queue(owner)
                body["OwnerId"] = owner if usable else directory.connector_user_id
            bodies.append(body)
        try:
            results = await self.rt.salesforce.create_many("Task", bodies, all_or_none=False)
        except errors.APIError as exc:
            # Outcome unknown: the reservations stay pending and are let go, so the next
            # attempt (by any worker) searches for the Tasks before creating them.
            for job in todo:
                board.fail(job.at, exc)
            await self._let_go([j.key for j in todo])
            return [], []
        done: list[Done] = []
        released: list[Key] = []
        unknown: list[Key] = []
        for job, result in zip(todo, results, strict=True):
            if result.success and result.id:
                done.append((job.key, result.id))
                board.logged(job.at, job.spec.email_id)
                self.stats.tasks += 1
            elif result.budget is not None:
                released.append(job.key)  # refused unprocessed: certainly not created
                board.pause(job.at, result.budget)
            else:
                if result.retriable:
                    unknown.append(job.key)  # this chunk's answer was lost
                else:
                    released.append(job.key)  # refused: certainly not created
                board.fail(job.at, result_error(result))
        await self._let_go(unknown)
        return done, released

    async def _let_go(self, keys: list[Key]) -> None:
        """End this worker's hold on Task reservations whose outcome is unknown."""
        if keys:
            async with self.rt.store.transaction() as tx:
                await self.rt.store.activities.let_go(tx, keys, now=self.rt.clock())
