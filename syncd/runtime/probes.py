"""The daemon's probes: /healthz, /readyz and /metrics of `syncd run`, and the API-call counts
they read. A mixin of `syncd.runtime.service.Service` (kept apart so that class stays a size
one can change safely); the attributes below are the Service's.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

from syncd import logs
from syncd.clients.http import CallRecord
from syncd.runtime.login import LoginWatch
from syncd.runtime.metrics import SyncdMetrics
from syncd.runtime.ops import Check
from syncd.runtime.snapshot import read_snapshot
from syncd.runtime.wiring import Runtime
from syncd.settings import Settings

log = logs.get(__name__)


class ServiceProbes:
    """Health, readiness and metrics over the Service's state."""

    rt: Runtime
    settings: Settings
    metrics: SyncdMetrics
    login: LoginWatch
    process_id: str
    _api_ok: set[str]
    _polled_at: dict[str, datetime]

    @property
    def stopping(self) -> bool:
        raise NotImplementedError  # the Service's

    def _alive(self) -> tuple[bool, dict[str, Any]]:
        raise NotImplementedError  # the Service's

    def _observe_api_calls(self) -> None:
        """Count API calls by system and outcome for /metrics and /readyz.

        A hook on both clients' call hooks (beside the budget's and the log's), registered once.
        """
        for client in (self.rt.salesforce, self.rt.pardot):
            if self._count_api_call not in client.call_hooks:
                client.call_hooks.append(self._count_api_call)

    def _count_api_call(self, call: CallRecord) -> None:
        self.metrics.api_calls.inc(system=call.system, outcome=call.outcome)
        if call.outcome == "ok":
            self._api_ok.add(call.system)

    def login_state(self) -> dict[str, str]:
        """Per side: "ok", "refused" (credentials refused) or "no successful call yet"."""
        refused = self.login.failing.system if self.login.failing is not None else None
        out: dict[str, str] = {}
        for system in ("salesforce", "pardot"):
            if system == refused:
                out[system] = "refused"
            else:
                out[system] = "ok" if system in self._api_ok else "no successful call yet"
        return out

    def healthz(self) -> Check:
        """Alive: the event loop ticks, no loop task died, and the login is not refused."""
        ok, detail = self._alive()
        failing = self.login.entry(self.process_id)
        if failing is not None:
            ok = False
            detail["login_refused"] = {k: v for k, v in failing.items() if k != "process_id"}
        return Check(ok, {"process_id": self.process_id, **detail})

    async def readyz(self) -> Check:
        """Ready: store reachable and migrated, both APIs answered, no side paused, not stopping."""
        reasons: dict[str, Any] = {}
        try:
            async with asyncio.timeout(5.0):
                current, head = await self.rt.store.migration_state()
            reasons["store"] = "ok" if current == head else f"schema {current}, needs {head}"
            async with asyncio.timeout(5.0), self.rt.store.read() as tx:
                paused = await self.rt.store.control.paused(tx)
        except Exception as exc:
            reasons["store"] = f"unreachable: {type(exc).__name__}"
            paused = {}
        for system in ("salesforce", "pardot"):
            if system not in self._api_ok:
                reasons[system] = "no successful call yet"
                continue
            decision = self.rt.budget.decision(system)
            reasons[system] = "ok" if decision.allowed else f"paused: {decision.reason}"
            if system in paused:
                reasons[system] = f"paused by {paused[system].get('by', 'an operator')}"
        if self.stopping:
            reasons["service"] = "stopping"
        ok = all(v == "ok" for v in reasons.values())
        return Check(ok, reasons)

    async def render_metrics(self) -> str:
        """Refresh the store gauges, then render every metric."""
        m = self.metrics
        now: datetime = self.rt.clock()
        try:
            async with asyncio.timeout(5.0):
                snap = await read_snapshot(
                    self.rt.store, now=now, stale_s=self.settings.ops.heartbeat_stale_s
                )
        except Exception as exc:
            log.warning("metrics_store_read_failed", error=type(exc).__name__)
        else:
            q = snap.queue
            m.queue_items.replace(
                [({"state": s}, n) for s, n in
                 (("pending", q.pending), ("claimed", q.claimed), ("error", q.error))]
            )  # fmt: skip
            m.oldest_pending_age.set(snap.oldest_pending_age_s() or 0.0)
            # a feed polled here counts from its last success even when its cursor did not move
            lags = {f.feed: f.lag_s(now) for f in snap.feeds}
            for feed, at in self._polled_at.items():
                lags[feed] = min(lags.get(feed, math.inf), (now - at).total_seconds())
            m.poll_lag.replace([({"feed": f}, lag) for f, lag in sorted(lags.items())])
            m.live_processes.set(len(snap.live()))
        failing = self.login.failing
        m.login_failing.replace(
            [({"system": side}, float(failing is not None and failing.system == side))
             for side in ("salesforce", "pardot")]
        )  # fmt: skip
        m.api_budget_left.replace(
            [
                ({"system": f.system}, float(f.remaining))
                for f in self.rt.budget.figures()
                if f.remaining is not None
            ]
        )
        return m.render()
