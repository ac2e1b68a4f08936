"""The daemon: pollers on their interval, N workers, heartbeat, watchdog, ops, graceful stop.

`Service(rt).run()` runs until `request_stop()` (the first SIGTERM/SIGINT, see
`syncd.runtime.signals`) and then stops in this order:

1. STOPPING=1 to systemd; pollers are cancelled (a page is committed with its cursor in one
   transaction, so a cancelled poll loses nothing) and workers claim nothing new;
2. in-flight batches get up to `sync.shutdown_grace_s` to finish; a batch still running then is
   cancelled and its items are released (due again at once, attempt not counted);
3. the heartbeat row is removed, the ops endpoint and the poller locks are closed; exit code 0.

`force_stop()` (the second signal) skips the wait: running batches are cancelled at once and
their items released if the store answers within a moment; if not, their leases expire and they
run again later. Nothing is lost either way, because every effect is safe to run twice.

Workers are `runtime.worker.Worker`s in daemon mode: the same loop, and the same failure
handling, as `syncd once` and `syncd demo` (see that module). Refused credentials are counted by
a `runtime.login.LoginWatch`: the pollers and workers back off for `sync.login_backoff_s`, the
failing side shows in `/healthz`, the metrics and the store (for `syncd check` and `status`),
and after too many refusals `run()` stops and raises the `AuthError` (the CLI exits 2).

Polling: every `sync.poll_interval_s` the process polls the feeds it holds (`runtime.leader`:
all of them on SQLite; on PostgreSQL each feed is held by one process at a time). A feed whose
side is paused by the API budget is skipped. Workers: `sync.workers` tasks, each claiming a batch
(`sync.batch_size`) at a time through `runtime.worker`; an idle worker waits for the pollers'
wake-up or a short idle interval. Expired leases are reaped in the same transaction as each claim
(`Pipeline.claim`), so a separate reaper would only repeat it. The heartbeat row
(`store.heartbeats`) is refreshed every few seconds, together with the shared API usage counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from syncd import __version__, errors, logs
from syncd.domain.models import CrmType
from syncd.runtime import pollers as feeds
from syncd.runtime.alerts import Alerter, incidents
from syncd.runtime.leader import Election, election_for
from syncd.runtime.login import LoginWatch, save_login_state
from syncd.runtime.metrics import SyncdMetrics
from syncd.runtime.ops import OpsHandlers, OpsServer, parse_listen
from syncd.runtime.pipeline import RunStats, Work
from syncd.runtime.probes import ServiceProbes
from syncd.runtime.sdnotify import Notifier
from syncd.runtime.signals import Stop
from syncd.runtime.snapshot import RUN_ROLE
from syncd.runtime.wiring import Runtime
from syncd.runtime.worker import RELEASE_TIMEOUT_S, Worker, abandon, bounded, wait_any
from syncd.store import Heartbeat

log = logs.get(__name__)

HEARTBEAT_PRUNE_AFTER = timedelta(days=1)
TICK_S = 1.0
_STORE_LOOPS = ("_poll_loop", "_heartbeat_loop")  # background loops that write to the store
STORE_WAIT_FORCED_S = 0.5  # the store's last chance after a forced stop
STALL_S = 30.0  # /healthz and the watchdog fail when the loop ticker is this late


@dataclass(frozen=True, slots=True)
class Feed:
    """One change feed: its name, the API it reads, and how to poll it once."""

    name: str
    system: str
    poll: Callable[[feeds.PollStats], Awaitable[None]]


def feeds_of(p: feeds.Pollers) -> list[Feed]:
    """Every feed the pollers know, in polling order (the same as `Pollers.poll_all`)."""
    return [
        Feed(feeds.FEED_PARDOT_PROSPECTS, "pardot", p.poll_pardot_prospects),
        Feed(feeds.FEED_PARDOT_EMAILS, "pardot", p.poll_pardot_emails),
        Feed(feeds.crm_feed(CrmType.LEAD), "salesforce", partial(p.poll_crm, CrmType.LEAD)),
        Feed(feeds.crm_feed(CrmType.CONTACT), "salesforce", partial(p.poll_crm, CrmType.CONTACT)),
        Feed(
            feeds.crm_deleted_feed(CrmType.LEAD),
            "salesforce",
            partial(p.poll_crm_deleted, CrmType.LEAD),
        ),
        Feed(
            feeds.crm_deleted_feed(CrmType.CONTACT),
            "salesforce",
            partial(p.poll_crm_deleted, CrmType.CONTACT),
        ),
    ]


def new_process_id() -> str:
    """host:pid:random, unique across restarts and hosts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Service(ServiceProbes):
    """The `syncd run` daemon over one `Runtime` (see the module docstring)."""

    def __init__(
        self,
        rt: Runtime,
        *,
        notifier: Notifier | None = None,
        metrics: SyncdMetrics | None = None,
        election: Election | None = None,
        process_id: str | None = None,
    ) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.notifier = notifier or Notifier()
        self.metrics = metrics or SyncdMetrics()
        self.election = election or election_for(rt.settings.database.url)
        self.process_id = process_id or new_process_id()
        self.feeds = feeds_of(feeds.Pollers(rt))
        self.started_at = rt.clock()
        self.stop = Stop()
        self.stats = RunStats()
        self.login = LoginWatch(
            backoff_s=rt.settings.sync.login_backoff_s,
            refusals_at_start=rt.settings.sync.login_refusals_at_start,
            refusals_later=rt.settings.sync.login_refusals_later,
            clock=rt.clock,
        )
        self._work_available = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._last_tick = time.monotonic()
        self._api_ok: set[str] = set()
        self._ops: OpsServer | None = None
        self._held_feeds: frozenset[str] = frozenset()
        self._polled_at: dict[str, datetime] = {}  # last successful poll of each feed held here

    # -- control --------------------------------------------------------------------------------

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        """Graceful stop: claim nothing new, finish or release in-flight items within the grace."""
        self.stop.request(sig)

    def force_stop(self, sig: signal.Signals | None = None) -> None:
        """Immediate stop: cancel in-flight batches now (their leases cover anything left)."""
        self.stop.force(sig)

    @property
    def stopping(self) -> bool:
        return self.stop.is_requested

    @property
    def exit_code(self) -> int:
        return self.stop.exit_code

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped; returns the process exit code (0 after a graceful stop).

        Raises `errors.AuthError` (after stopping) when the login was refused too often.
        """
        self.metrics.info.set(1, version=__version__)
        self.metrics.start_time.set(time.time())
        self._observe_api_calls()
        if self.settings.ops.listen:
            await self._start_ops(self.settings.ops.listen)
        try:
            await self._beat()  # the first store write: fails fast when the store is unusable
        except BaseException:
            if self._ops is not None:
                await self._ops.aclose()
            raise
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = [
            self._poll_loop,
            self._heartbeat_loop,
            self._tick_loop,
        ]
        if self.notifier.watchdog_interval_s() is not None:
            loops.append(self._watchdog_loop)
        if self.settings.alerts.webhook_url is not None:
            loops.append(self._alerts_loop)
        self._background = [asyncio.create_task(f(), name=f.__name__) for f in loops]
        self._workers = [
            asyncio.create_task(self._worker(i).run(), name=f"worker-{i}")
            for i in range(self.settings.sync.workers)
        ]
        log.info(
            "service_started",
            process_id=self.process_id,
            workers=len(self._workers),
            poll_interval_s=self.settings.sync.poll_interval_s,
            store=self.rt.store.dialect,
            ops=self.settings.ops.listen,
        )
        self.notifier.ready(status=self._status_line())
        try:
            await wait_any(self.stop.requested.wait(), self.login.given_up.wait())
            if self.login.gave_up is not None:
                self.stop.request()
        finally:
            await self._shutdown()
        if self.login.gave_up is not None:
            raise self.login.gave_up
        return self.exit_code

    def _worker(self, index: int) -> Worker:
        return Worker(
            self.rt,
            worker_id=f"{self.process_id}/w{index}",
            stop=self.stop,
            burst=False,
            stats=self.stats,
            wake=self._work_available,
            on_settled=self._count,
            login=self.login,
        )

    async def _start_ops(self, listen: str) -> None:
        """The web console and /healthz, /readyz, /metrics on `ops.listen` (syncd.runtime.ops)."""
        from syncd.web.app import build_app
        from syncd.web.views import ConsoleContext

        host, port = parse_listen(listen)
        handlers = OpsHandlers(self.healthz, self.readyz, self.render_metrics)
        ctx = ConsoleContext(
            store=self.rt.store,
            settings=self.settings,
            clock=self.rt.clock,
            handlers=handlers,
            login_state=self.login_state,
            field_map=self.rt.field_map,
        )
        self._ops = OpsServer(
            handlers,
            host=host,
            port=port,
            app=build_app(ctx),
            warm_up=ctx.warm_up,
            tls=self.settings.ops.tls(),
            trusted_proxies=self.settings.ops.proxies(),
        )
        try:
            await self._ops.start()
        except OSError as exc:
            raise errors.ConfigError(
                f"ops.listen = {listen!r}: cannot listen there ({exc.strerror}); choose a free "
                "port or unset it (SYNCD_OPS__LISTEN)"
            ) from None

    @property
    def ops_port(self) -> int | None:
        """The console's bound port (None when `ops.listen` is unset)."""
        return None if self._ops is None else self._ops.port

    async def _shutdown(self) -> None:
        grace_s = self.settings.sync.shutdown_grace_s
        reason = self._stop_reason()
        log.info("service_stopping", reason=reason, grace_s=grace_s)
        self.notifier.stopping(status="stopping: finishing in-flight items")
        # Loops that touch the store stop at their next check rather than being cancelled
        # mid-transaction; only what is still running when the grace ends is cancelled.
        self._work_available.set()  # wake idle workers so they see the stop
        store_loops = [
            *self._workers,
            *(t for t in self._background if t.get_name() in _STORE_LOOPS),
        ]
        busy = [t for t in store_loops if not t.done()]
        if busy and not self.stop.is_forced:
            await wait_any(asyncio.wait(busy), self.stop.forced.wait(), timeout_s=grace_s)
        # Cancelled batches give their items back within RELEASE_TIMEOUT_S or are left to
        # their leases: a store locked by another process must not hold the stop up.
        unfinished = await abandon([*self._workers, *self._background])
        # After a forced stop the store gets one short try: a stale heartbeat is harmless.
        store_wait_s = STORE_WAIT_FORCED_S if self.stop.is_forced else RELEASE_TIMEOUT_S
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                if self._ops is not None:
                    await self._ops.aclose()
        await bounded(self.election.aclose(), store_wait_s)
        await bounded(self.rt.store.run(self._remove_beat), store_wait_s)
        log.info(
            "service_stopped",
            reason=reason,
            forced=self.stop.is_forced,
            cancelled_tasks=unfinished,
            items=self.stats.items,
            retried=self.stats.retried,
            errors=self.stats.errors,
        )

    def _stop_reason(self) -> str:
        if self.login.gave_up is not None:
            return "login_refused"
        return self.stop.reason if self.stop.is_requested else "cancelled"

    async def _remove_beat(self, tx: Any) -> None:
        await self.rt.store.heartbeats.remove(tx, self.process_id)
        await self._write_login_state(tx, clear=True)

    def _status_line(self) -> str:
        held = ", ".join(sorted(self._held_feeds)) or "none"
        return (
            f"{len(self._workers)} workers; {int(self.metrics.items_processed.value())} items "
            f"synced; polling: {held}"
        )

    # -- pollers ----------------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        interval_s = self.settings.sync.poll_interval_s
        names = [f.name for f in self.feeds]
        while not self.stopping:
            started = time.monotonic()
            try:
                self._held_feeds = await self.election.ensure(names)
                stats = feeds.PollStats()
                for feed in self.feeds:
                    if self.login.probe_in_s() > 0:
                        break  # refused this round: the next probe is after the back-off
                    if feed.name in self._held_feeds and not self.stopping:
                        await self._poll_feed(feed, stats)
                if stats.total_queued:
                    self._work_available.set()
            except Exception as exc:
                log.warning("poll_round_failed", error=logs.redact(str(exc)))
            elapsed_s = time.monotonic() - started
            wait_s = max(0.0, interval_s - elapsed_s, self.login.probe_in_s())
            await wait_any(self.stop.requested.wait(), timeout_s=wait_s)

    async def _poll_feed(self, feed: Feed, stats: feeds.PollStats) -> None:
        try:
            self.rt.budget.check(feed.system)
            await feed.poll(stats)
        except errors.BudgetExhaustedError as exc:
            log.info("poll_skipped", feed=feed.name, system=feed.system, code=exc.code)
        except errors.AuthError as exc:
            self.login.refused(exc)
        except errors.APIError as exc:
            log.warning("poll_failed", feed=feed.name, system=exc.system, code=exc.code,
                        status=exc.status, message=exc.message)  # fmt: skip
        except errors.StoreError as exc:
            log.warning("poll_failed", feed=feed.name, error=logs.redact(str(exc)))
        else:
            self.login.succeeded()
            self._polled_at[feed.name] = self.rt.clock()
            queued = stats.queued.get(feed.name, 0)
            if queued:
                log.info("poll_queued", feed=feed.name, queued=queued)

    # -- workers ----------------------------------------------------------------------------------

    def _count(self, works: Sequence[Work], retried: int, failed: int) -> None:
        """Metrics of one settled batch: synced items and their latency, retries, errors."""
        now = self.rt.clock()
        for w in works:
            if w.ok:
                self.metrics.items_processed.inc(len(w.items))
                for item in w.items:
                    latency_s = (now - item.first_seen_at).total_seconds()
                    self.metrics.sync_latency.observe(max(0.0, latency_s))
        if retried:
            self.metrics.items_failed.inc(retried, outcome="retry")
        if failed:
            self.metrics.items_failed.inc(failed, outcome="error")

    # -- heartbeat, loop ticker, watchdog ---------------------------------------------------------

    def heartbeat_interval_s(self) -> float:
        return min(10.0, max(1.0, self.settings.ops.heartbeat_stale_s / 4))

    async def _beat(self) -> None:
        now = self.rt.clock()
        beat = Heartbeat(
            process_id=self.process_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            role=RUN_ROLE,
            started_at=self.started_at,
            last_beat_at=now,
        )

        async def write(tx: Any) -> None:
            await self.rt.store.heartbeats.beat(tx, beat)
            await self.rt.store.heartbeats.prune(tx, before=now - HEARTBEAT_PRUNE_AFTER)
            await self._write_login_state(tx)

        self.login.changed.clear()
        await self.rt.store.run(write)

    async def _write_login_state(self, tx: Any, *, clear: bool = False) -> None:
        entry = None if clear else self.login.entry(self.process_id)
        await save_login_state(self.rt.store, tx, self.process_id, entry, now=self.rt.clock())

    async def _heartbeat_loop(self) -> None:
        while not self.stopping:
            await wait_any(
                self.stop.requested.wait(),
                self.login.changed.wait(),
                timeout_s=self.heartbeat_interval_s(),
            )
            if self.stop.requested.is_set():
                return
            try:
                await self._beat()
                await self.rt.budget.sync()
            except Exception as exc:
                log.warning("heartbeat_failed", error=logs.redact(str(exc)))
            self.notifier.status(self._status_line())

    async def _tick_loop(self) -> None:
        while True:
            self._last_tick = time.monotonic()
            await asyncio.sleep(TICK_S)

    def _alive(self) -> tuple[bool, dict[str, Any]]:
        lag_s = time.monotonic() - self._last_tick
        # every loop runs until the stop: one that ended before it has crashed
        dead = [t.get_name() for t in (*self._background, *self._workers) if t.done()]
        dead = [] if self.stopping else dead
        ok = lag_s < STALL_S and not dead
        return ok, {"loop_lag_s": round(lag_s, 3), "dead_tasks": dead}

    async def _watchdog_loop(self) -> None:
        interval_s = self.notifier.watchdog_interval_s() or TICK_S
        while True:
            ok, detail = self._alive()
            if ok:
                self.notifier.watchdog()
            else:
                log.error("watchdog_withheld", **detail)
            await asyncio.sleep(interval_s)

    # -- alerts (syncd.runtime.alerts) --------------------------------------------------------

    async def _alerts_loop(self) -> None:
        url = self.settings.alerts.webhook_url
        assert url is not None
        alerter = Alerter(self.rt.store, url.get_secret_value())
        while not self.stopping:
            await wait_any(
                self.stop.requested.wait(), timeout_s=self.settings.alerts.check_interval_s
            )
            if self.stopping or feeds.FEED_PARDOT_PROSPECTS not in self._held_feeds:
                continue  # one sender: the process polling Pardot prospects
            try:
                await self.check_alerts(alerter)
            except Exception as exc:
                log.warning("alerts_check_failed", error=type(exc).__name__)

    async def check_alerts(self, alerter: Alerter) -> None:
        """Post what changed in the open incidents (login refused, budget spent, errors)."""
        async with self.rt.store.read() as tx:
            counts = await self.rt.store.queue.counts(tx, now=self.rt.clock())
        current = incidents(
            login=self.login_state(),
            figures=self.rt.budget.figures(),
            error_items=counts.error,
            threshold=self.settings.alerts.error_queue_threshold,
        )
        await alerter.check(current, now=self.rt.clock())
