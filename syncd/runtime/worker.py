"""The one worker loop of `syncd run`, `syncd once` and `syncd demo`: claim, sync, settle, repeat.

Modelled on procrastinate's worker (`_fetch_and_process_jobs` runs "until there is no job left
or asked to stop") with arq's burst flag: `Worker(burst=True)` drains what is due and returns
(`once`, `demo`); `burst=False` waits for more work until stopped (`run`). Because all three
commands run this loop, a batch fails the same way in each, by construction:

- synced: each item settled by the pipeline (done, retried later, or in the error queue);
  the loop goes on.
- `errors.BudgetExhaustedError`: the items are released (attempt not counted) and the side
  pauses: a burst returns naming the side (or waits, with `wait_budget`), the daemon waits.
- `errors.AuthError` (login refused): released; a burst raises it, the daemon reports it to its
  `LoginWatch` and waits for the next probe.
- any other `errors.SyncdError` (the store or an API failed for the whole batch): released; a
  burst raises it (the command says what failed), the daemon logs it and backs off.
- any other exception, i.e. a bug: the attempt counts: retried with backoff, and parked as
  `INTERNAL_ERROR` in the error queue after `sync.max_attempts`; the loop goes on (the daemon
  after a back-off).
- cancelled (a stop past its grace, or forced): released best-effort within
  `RELEASE_TIMEOUT_S`.

The budget error is caught by name before anything else, so a spent budget pauses its side
whether `BudgetExhaustedError` is an `APIError` or a control signal beside it.

`run_workers` runs a set of workers under one `Stop` (`syncd.runtime.signals`): a graceful stop
lets in-flight batches finish within `grace_s`, a forced one cancels them at once; either way a
cancelled batch gives its items back if the store answers within `RELEASE_TIMEOUT_S`, and no
store call is retried past that (their leases expire otherwise, and they run again).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from syncd import errors, logs
from syncd.domain.retry import next_attempt
from syncd.runtime.login import LoginWatch
from syncd.runtime.pipeline import Pipeline, RunStats, Work
from syncd.runtime.signals import Stop
from syncd.runtime.wiring import Runtime
from syncd.store import QueueItem

log = logs.get(__name__)
T = TypeVar("T")

IDLE_WAIT_MAX_S = 2.0  # an idle daemon worker looks for due items at least this often
ERROR_BACKOFF_S = 5.0  # a daemon worker's pause after a batch failed as a whole
BUDGET_WAIT_MAX_S = 60.0  # a paused side is re-checked at least this often
RELEASE_TIMEOUT_S = 1.5  # how long a stopping worker tries to give its items back
ABANDON_WAIT_S = RELEASE_TIMEOUT_S + 0.5  # how long a stop waits for cancelled batches
CLOSE_TIMEOUT_S = 1.0  # closing clients and store after a forced stop
SETTLE_TIMEOUT_S = 30.0  # releasing or parking a batch while not stopping (a busy store)
INTERNAL_ERROR = "INTERNAL_ERROR"

Settled = Callable[[Sequence[Work], int, int], None]  # (works, retried, failed) of one batch


async def wait_any(*aws: Awaitable[Any], timeout_s: float | None = None) -> None:
    """Return when the first of `aws` completes (or after `timeout_s`); cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class BatchBug(Exception):
    """A batch raised an unexpected exception (a bug); its items were parked, not released."""


class Worker:
    """Claims and syncs batches until no item is due (`burst`) or until stopped.

    `stats` collects the counters of every batch (`syncd once`'s summary); `on_settled` sees
    each settled batch (the daemon's metrics); `login` (daemon only) counts refused logins,
    else an `AuthError` is raised to the caller. `paused` names the sides whose budget stopped
    a burst; `wait_budget` makes a burst wait for the budget instead.
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        worker_id: str,
        stop: Stop,
        burst: bool,
        stats: RunStats | None = None,
        wake: asyncio.Event | None = None,
        on_settled: Settled | None = None,
        login: LoginWatch | None = None,
        wait_budget: bool = False,
    ) -> None:
        self.rt = rt
        self.worker_id = worker_id
        self.stop = stop
        self.burst = burst
        self.stats = stats if stats is not None else RunStats()
        self.pipeline = Pipeline(rt, worker_id=worker_id, stats=self.stats)
        self.wake = wake
        self.on_settled = on_settled
        self.login = login
        self.wait_budget = wait_budget
        self.paused: dict[str, errors.BudgetExhaustedError] = {}

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """The loop: until stopped, or (burst) until nothing is due or a side is paused."""
        idle_s = min(self.rt.settings.sync.poll_interval_s, IDLE_WAIT_MAX_S)
        while not self.stop.is_requested:
            try:
                claimed = await self.batch()
            except errors.BudgetExhaustedError as exc:  # by name, before any other kind
                if await self._paused(exc, idle_s):
                    return
                continue
            except errors.AuthError as exc:
                if self.login is None:
                    raise
                self.login.refused(exc)
                await wait_any(
                    self.stop.requested.wait(),
                    self.login.resumed(),
                    timeout_s=self.login.probe_in_s(),
                )
                continue
            except errors.SyncdError as exc:
                if self.burst:
                    raise
                log.warning("batch_failed", worker_id=self.worker_id, kind=type(exc).__name__,
                            error=logs.redact(str(exc)))  # fmt: skip
                await self._nap(ERROR_BACKOFF_S)
                continue
            except BatchBug:
                if not self.burst:
                    await self._nap(ERROR_BACKOFF_S)
                continue
            if claimed:
                if self.login is not None:
                    self.login.succeeded()
                continue
            if self.burst:
                return
            if self.wake is not None:
                self.wake.clear()
                await wait_any(self.stop.requested.wait(), self.wake.wait(), timeout_s=idle_s)
            else:
                await self._nap(idle_s)

    async def _nap(self, seconds: float) -> None:
        await wait_any(self.stop.requested.wait(), timeout_s=seconds)

    async def _paused(self, exc: errors.BudgetExhaustedError, idle_s: float) -> bool:
        """A side's budget is spent: True when the loop should return (a burst that stops)."""
        self.paused[exc.system] = exc
        if self.burst and not self.wait_budget:
            log.warning("drain_paused", worker_id=self.worker_id, system=exc.system,
                        code=exc.code)  # fmt: skip
            return True
        if self.burst and not await self._work_left():
            return True
        wait_s = min(max(exc.retry_after_s or 0.0, idle_s), BUDGET_WAIT_MAX_S)
        log.debug("budget_wait", worker_id=self.worker_id, system=exc.system, wait_s=wait_s)
        await self._nap(wait_s)
        await self._sync_budget()  # the 24-hour counts move on (and other processes count)
        return False

    async def _work_left(self) -> bool:
        async with self.rt.store.read() as tx:
            counts = await self.rt.store.queue.counts(tx, now=self.rt.clock())
        return bool(counts.pending or counts.claimed)

    # -- one batch ------------------------------------------------------------------------------

    async def batch(self) -> int:
        """Claim one batch and sync it; returns how many items were claimed (0: none due).

        Raises what the module docstring lists, after releasing or parking the items.
        """
        self.rt.budget.check("salesforce")
        self.rt.budget.check("pardot")
        items = await self.pipeline.claim()
        if not items:
            return 0
        retried, failed = self.stats.retried, self.stats.errors
        try:
            works = await self.pipeline.process(items)
        except errors.BudgetExhaustedError:
            await self._release(items)
            raise
        except (errors.SyncdError, asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            # A stop, a refused login, a store or API failure: nothing is wrong with the items.
            await self._release(items)
            raise
        except Exception as exc:
            # A bug, not the items' fault as far as we can tell. Releasing would hand the same
            # batch back forever, so it counts as an attempt.
            await self._park(items, exc)
            raise BatchBug(str(exc)) from exc
        finally:
            await self._sync_budget()
        if self.on_settled is not None:
            self.on_settled(works, self.stats.retried - retried, self.stats.errors - failed)
        return len(items)

    async def _sync_budget(self) -> None:
        if self.stop.is_forced:
            return  # a store write: the next start reads the store's totals anyway
        try:
            await self.rt.budget.sync()
        except Exception as exc:  # counting must never fail a batch
            log.warning("api_usage_sync_failed", error=type(exc).__name__)

    def _store_wait_s(self) -> float:
        """How long to try giving items back: briefly when stopping, else through a busy store."""
        return RELEASE_TIMEOUT_S if self.stop.is_requested else SETTLE_TIMEOUT_S

    async def _release(self, items: Sequence[QueueItem]) -> None:
        """Give the items back, due now, attempt not counted; best-effort, bounded in time."""
        ids = [i.id for i in items]
        now = self.rt.clock()
        store = self.rt.store
        try:
            async with asyncio.timeout(self._store_wait_s()), store.transaction() as tx:
                released = await store.queue.release(tx, ids, worker_id=self.worker_id, now=now)
            log.info("items_released", worker_id=self.worker_id, count=len(released))
        except Exception as exc:  # the leases expire and the items run again later
            log.warning("items_release_failed", worker_id=self.worker_id, count=len(ids),
                        error=type(exc).__name__)  # fmt: skip

    async def _park(self, items: Sequence[QueueItem], exc: Exception) -> None:
        """Retry later (or, past `sync.max_attempts`, fail) the items of a batch that hit a bug."""
        sync = self.rt.settings.sync
        now = self.rt.clock()
        message = logs.redact(f"unexpected {type(exc).__name__} while syncing: {exc}")[:500]
        log.error("batch_failed_unexpectedly", worker_id=self.worker_id, items=len(items),
                  error=message)  # fmt: skip
        give_up = [i.id for i in items if i.attempts >= sync.max_attempts]
        again = [i for i in items if i.attempts < sync.max_attempts]
        queue = self.rt.store.queue
        try:
            async with asyncio.timeout(self._store_wait_s()), self.rt.store.transaction() as tx:
                if give_up:
                    await queue.fail(tx, give_up, worker_id=self.worker_id, code=INTERNAL_ERROR,
                                     message=message, now=now)  # fmt: skip
                for item in again:
                    decision = next_attempt(
                        attempts=item.attempts,
                        retriable=True,
                        now=now,
                        base_s=sync.retry_base_s,
                        max_attempts=sync.max_attempts,
                        jitter=random.random(),
                    )
                    await queue.retry(tx, [item.id], worker_id=self.worker_id,
                                      available_at=decision.retry_at or now, code=INTERNAL_ERROR,
                                      message=message, now=now)  # fmt: skip
        except Exception as store_exc:  # the leases expire and the items run again anyway
            log.warning("park_failed", worker_id=self.worker_id, error=type(store_exc).__name__)
            return
        self.stats.retried += len(again)
        self.stats.errors += len(give_up)


async def bounded(aw: Awaitable[Any], timeout_s: float) -> bool:
    """Run `aw` for at most `timeout_s`; True if it finished (whatever it raised).

    Unlike `asyncio.timeout`, this never waits past the deadline: a store call cancelled while
    the driver waits on a SQLite lock closes its connection in a shielded step that can take
    the whole `database.busy_timeout_ms`. Such a call is cancelled and left behind.
    """
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        return False
    if not task.cancelled() and task.exception() is not None:
        log.debug("bounded_call_failed", error=type(task.exception()).__name__)
    return True


async def abandon(tasks: Sequence[asyncio.Task[Any]], *, wait_s: float = ABANDON_WAIT_S) -> int:
    """Cancel `tasks` and wait at most `wait_s` for them to give their items back.

    Returns how many were still running. A task that does not end in time (a driver call
    waiting on a lock held elsewhere) is left behind: the process is stopping, and its items'
    leases cover them.
    """
    running = [t for t in tasks if not t.done()]
    for t in running:
        t.cancel()
    if running:
        await asyncio.wait(running, timeout=wait_s)
    return len(running)


async def run_workers(workers: Sequence[Worker], stop: Stop, *, grace_s: float) -> None:
    """Run `workers` until they all return or `stop` is asked for (see the module docstring).

    The first worker exception (a burst's store or login failure) stops the others gracefully
    and is raised once they are done.
    """
    tasks = [asyncio.create_task(w.run(), name=w.worker_id) for w in workers]
    failed: BaseException | None = None
    try:
        pending: set[asyncio.Future[Any]] = set(tasks)
        while pending and not stop.is_requested:
            stop_wait = asyncio.ensure_future(stop.requested.wait())
            try:
                done, pending = await asyncio.wait(
                    {*pending, stop_wait}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stop_wait.cancel()
            pending.discard(stop_wait)
            for t in done:
                if t is not stop_wait and not t.cancelled() and t.exception() is not None:
                    failed = failed or t.exception()
                    stop.request()
        if pending and not stop.is_forced:
            await wait_any(asyncio.wait(pending), stop.forced.wait(), timeout_s=grace_s)
    finally:
        cancelled = await abandon(tasks)
        if cancelled:
            log.warning("batches_abandoned", count=cancelled, forced=stop.is_forced)
    for t in tasks:
        if failed is None and t.done() and not t.cancelled() and t.exception() is not None:
            failed = t.exception()
    if failed is not None:
        raise failed


async def unless_stopped(aw: Awaitable[T], stop: Stop) -> T | None:
    """`await aw`, unless a stop comes first: then it is cancelled and None returned.

    For the poll rounds of `once` and `demo`: a page is committed with its cursor in one
    transaction, so a cancelled poll loses nothing.
    """
    task = asyncio.ensure_future(aw)
    await wait_any(asyncio.shield(task), stop.requested.wait())
    if not task.done():
        await abandon([task])
        return None
    return task.result()


async def close_runtime(rt: Runtime, stop: Stop) -> None:
    """Close the runtime; after a stop, never wait long on a store that does not answer.

    After a forced stop the usage counts are not flushed (a store write): the calls were
    counted by the API anyway, and the next start reads the store's totals.
    """
    if not stop.is_requested:
        await rt.aclose()
        return

    async def forced_close() -> None:
        await rt.pardot.aclose()
        await rt.salesforce.aclose()
        await rt.auth.aclose()
        await rt.store.aclose()

    if stop.is_forced:
        closed = await bounded(forced_close(), CLOSE_TIMEOUT_S)
    else:
        closed = await bounded(rt.aclose(), RELEASE_TIMEOUT_S * 2)
    if not closed:  # stopping: the leases cover anything left claimed
        log.warning("close_abandoned", forced=stop.is_forced)


def paused_sides(workers: Sequence[Worker]) -> dict[str, errors.BudgetExhaustedError]:
    """The sides that paused any of `workers`, with the error that paused them."""
    paused: dict[str, errors.BudgetExhaustedError] = {}
    for w in workers:
        paused.update(w.paused)
    return paused
