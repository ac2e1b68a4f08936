"""The API budget: counts syncd's own calls per side and pauses a side when its budget is spent.

Every HTTP call the clients make is reported to `ApiBudget.observer` (one of the clients' call
hooks). Calls are tallied in memory per system and hour, and `sync()` adds them to the store's
hourly counters, so every process sharing one store sees the same 24-hour total. `check(system)`
raises `BudgetExhaustedError` while that side is paused; the decision itself is the pure
`syncd.domain.budget.decide` (own share, org within 5 % of its limit, limit exceeded).

A refusal by the API (`REQUEST_LIMIT_EXCEEDED`, Pardot 122) arrives as a call whose outcome is
"budget"; the side then pauses for a cool-down and probes again with one call. The pause is
kept in the store's key-value table so other processes pause too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd import errors, logs
from syncd.clients.http import CallObserver, CallRecord
from syncd.domain import budget as rules

log = logs.get(__name__)

SYSTEMS = ("salesforce", "pardot")
Clock = Callable[[], datetime]
# (used, limit) of the whole org as the API last reported it, or None (Salesforce only).
OrgUsageSource = Callable[[], "tuple[int, int] | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SideFigures:
    """One side's budget at a glance, for `syncd status` and the summary of `syncd once`."""

    system: str
    own_calls_24h: int
    daily_limit: int | None
    own_cap: int | None
    remaining: int | None
    org_used: int | None
    paused: bool
    reason: str
    resume_at: datetime | None


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


class ApiBudget:
    """Tracks and enforces the daily API budget of both sides (see the module docstring)."""

    def __init__(
        self,
        *,
        share: float,
        pardot_daily_limit: int,
        clock: Clock,
        store: Any = None,
        recheck_s: float = rules.RECHECK_S,
    ) -> None:
        self.share = share
        self.pardot_daily_limit = pardot_daily_limit
        self._clock = clock
        self._store = store
        self._recheck_s = recheck_s
        self._pending: dict[tuple[str, datetime], int] = defaultdict(int)
        self._stored_24h: dict[str, int] = dict.fromkeys(SYSTEMS, 0)
        self._exceeded_at: dict[str, datetime | None] = dict.fromkeys(SYSTEMS)
        self._org: dict[str, tuple[int, int, datetime] | None] = dict.fromkeys(SYSTEMS)
        self._org_sources: dict[str, OrgUsageSource] = {}
        self.calls_made: dict[str, int] = dict.fromkeys(SYSTEMS, 0)
        self._paused_logged: dict[str, str] = {}

    # -- feeding -------------------------------------------------------------------------------

    def observer(self) -> CallObserver:
        """The budget's call hook for both clients: counts each call, notes limit refusals."""

        def on_call(record: CallRecord) -> None:
            self.record(record)

        return on_call

    def record(self, record: CallRecord) -> None:
        """Count one call (every call that reached the API counts, failed or not)."""
        now = self._clock()
        self._pending[(record.system, _hour(now))] += 1
        self.calls_made[record.system] = self.calls_made.get(record.system, 0) + 1
        if record.outcome == "budget":
            self.limit_exceeded(record.system)
        source = self._org_sources.get(record.system)
        if source is not None:
            usage = source()
            if usage is not None:
                self._org[record.system] = (usage[0], usage[1], now)

    def org_usage_from(self, system: str, source: OrgUsageSource) -> None:
        """Read the org-wide usage of `system` from `source` after each call."""
        self._org_sources[system] = source

    def limit_exceeded(self, system: str) -> None:
        """The API refused a call for its daily limit: pause `system` for the cool-down."""
        self._exceeded_at[system] = self._clock()

    # -- deciding ------------------------------------------------------------------------------

    def _usage(self, system: str) -> rules.Usage:
        pending = sum(n for (s, _), n in self._pending.items() if s == system)
        org = self._org.get(system)
        if system == "pardot":
            limit: int | None = self.pardot_daily_limit
        else:
            limit = org[1] if org is not None else None
        return rules.Usage(
            own_calls_24h=self._stored_24h.get(system, 0) + pending,
            daily_limit=limit,
            org_used=org[0] if org is not None and system == "salesforce" else None,
            org_observed_at=org[2] if org is not None else None,
            exceeded_at=self._exceeded_at.get(system),
        )

    def decision(self, system: str) -> rules.BudgetDecision:
        """The pure budget decision for `system` now."""
        return rules.decide(
            self._usage(system), share=self.share, now=self._clock(), recheck_s=self._recheck_s
        )

    def check(self, system: str) -> None:
        """Raise `BudgetExhaustedError` while `system` is paused; return if it may be called."""
        decision = self.decision(system)
        if decision.allowed:
            if self._paused_logged.pop(system, None) is not None:
                log.info("api_budget_resumed", system=system)
            return
        reason = str(decision.reason)
        if self._paused_logged.get(system) != reason:
            self._paused_logged[system] = reason
            log.warning(
                "api_budget_paused",
                system=system,
                reason=reason,
                own_cap=decision.own_cap,
                resume_at=decision.resume_at.isoformat() if decision.resume_at else None,
            )
        resume = decision.resume_at
        wait_s = (resume - self._clock()).total_seconds() if resume else self._recheck_s
        raise errors.BudgetExhaustedError(
            system=system,
            status=None,
            code="BUDGET_PAUSED",
            message=(
                f"{system} paused ({reason}) until "
                f"{resume.isoformat() if resume else 'later'}; raise sync.api_budget_share "
                "to allow more calls"
            ),
            retry_after_s=max(0.0, wait_s),
        )

    def resume_at(self, system: str) -> datetime | None:
        """When `system` may be tried again (None: it is not paused)."""
        decision = self.decision(system)
        return None if decision.allowed else decision.resume_at

    def figures(self) -> list[SideFigures]:
        """Both sides' budget figures."""
        out = []
        for system in SYSTEMS:
            usage = self._usage(system)
            decision = rules.decide(
                usage, share=self.share, now=self._clock(), recheck_s=self._recheck_s
            )
            out.append(
                SideFigures(
                    system=system,
                    own_calls_24h=usage.own_calls_24h,
                    daily_limit=usage.daily_limit,
                    own_cap=decision.own_cap,
                    remaining=decision.remaining,
                    org_used=usage.org_used,
                    paused=not decision.allowed,
                    reason=str(decision.reason),
                    resume_at=decision.resume_at,
                )
            )
        return out

    # -- sharing through the store ---------------------------------------------------------------

    async def sync(self) -> None:
        """Add the calls counted here to the store and read back every process's 24-hour total."""
        if self._store is None:
            return
        pending, self._pending = self._pending, defaultdict(int)
        now = self._clock()
        try:
            await self._store_sync(pending, now)
        except Exception:
            # Counting must never stop the sync; keep the counts for the next attempt.
            for key, n in pending.items():
                self._pending[key] += n
            raise

    async def _store_sync(self, pending: dict[tuple[str, datetime], int], now: datetime) -> None:
        store = self._store
        async with store.transaction() as tx:
            for (system, hour), n in pending.items():
                await store.usage.add(tx, system, n, at=hour)
            for system in SYSTEMS:
                org = self._org.get(system)
                if org is not None:
                    await store.usage.record_org(
                        tx, system, used=org[0], limit=org[1], observed_at=org[2]
                    )
                exceeded = self._exceeded_at.get(system)
                if exceeded is not None:
                    await store.kv.set(
                        tx, f"budget.exceeded_at.{system}", exceeded.isoformat(), now=now
                    )
            for system in SYSTEMS:
                self._stored_24h[system] = int(await store.usage.last_24h(tx, system, now=now))
                stored = await store.kv.get(tx, f"budget.exceeded_at.{system}")
                if isinstance(stored, str):
                    at = datetime.fromisoformat(stored)
                    mine = self._exceeded_at.get(system)
                    if mine is None or at > mine:
                        self._exceeded_at[system] = at
                if system == "salesforce" and self._org.get(system) is None:
                    seen = await store.usage.org(tx, system)
                    if seen is not None:
                        self._org[system] = (seen.used, seen.limit, seen.observed_at)
