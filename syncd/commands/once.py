"""`syncd once [--dry-run] [--wait-budget]`: poll every feed, drain the queue, print a summary.

The drain is `syncd.runtime.worker.Worker` in burst mode (arq's): the same loop, and the same
failure handling, as `syncd run` and `syncd demo`; items are claimed batch after batch until none
is due, then the command returns. Exit codes (docs/interfaces.md):

- 3: it stopped with work left because a side's API budget is spent (the summary says how many
  items wait and until when); 3 wins over 1. `--wait-budget` waits for the budget instead.
- 1: an item is in the sync error queue (`syncd errors list`), or a feed could not be read
  (named in the summary; the other feeds and the queue are still processed).
- 128 + N: stopped by signal N. The first SIGTERM or SIGINT claims nothing new and lets the
  batch in flight finish within `sync.shutdown_grace_s` (then releases it); a second one stops
  at once. Either way no item stays claimed if the store answers.
- 0: otherwise.

`--dry-run` reads both sides and prints every plan, and writes nothing: no API write, no queue,
cursor or link change in the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd import logs
from syncd.domain.models import thaw
from syncd.domain.plan import Plan
from syncd.runtime.pipeline import Pipeline, RunStats
from syncd.runtime.pollers import Pollers, PollStats
from syncd.runtime.signals import Stop, StopSignals
from syncd.runtime.wiring import Runtime, build_runtime
from syncd.runtime.worker import (
    BUDGET_WAIT_MAX_S,
    RELEASE_TIMEOUT_S,
    Worker,
    close_runtime,
    run_workers,
    unless_stopped,
    wait_any,
)
from syncd.settings import Settings
from syncd.store.models import NewItem, QueueCounts, QueueItem, State

log = logs.get(__name__)

EXIT_WORK_LEFT = 3


def worker_id(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


@dataclass
class OnceResult:
    """What one `syncd once` did, and what it left."""

    stats: RunStats
    polls: PollStats
    paused: list[str]  # sides whose budget stopped the drain or a feed
    counts: QueueCounts | None  # the queue afterwards (None: the store did not answer)
    stop: Stop

    @property
    def error_items(self) -> int:
        return self.counts.error if self.counts is not None else 0

    @property
    def items_left(self) -> int | None:
        c = self.counts
        return None if c is None else c.pending + c.claimed

    @property
    def exit_code(self) -> int:
        if self.stop.is_forced and self.stop.exit_code:
            return self.stop.exit_code  # 128 + the signal that forced it
        if self.stop.signal is not None:
            return 128 + int(self.stop.signal)
        if self.paused and (self.items_left or self.polls.paused):
            return EXIT_WORK_LEFT  # a side is still paused for its budget, with work left
        return 1 if self.error_items or self.polls.failed else 0


def summary_line(
    stats: RunStats,
    polls: PollStats,
    rt: Runtime,
    error_items: int,
    paused: Sequence[str],
    *,
    result: OnceResult | None = None,
) -> str:
    """The one summary line of `syncd once`."""
    calls = rt.budget.calls_made
    parts = [
        f"{stats.items} items processed",
        f"{stats.leads_created} leads created",
        f"{stats.linked} records linked",
        f"{stats.crm_fields} CRM fields updated",
        f"{stats.pardot_fields} Pardot fields updated",
        f"{stats.tasks} tasks logged",
        f"{stats.owners_changed} owners changed",
    ]
    if stats.prospects_created:
        parts.append(f"{stats.prospects_created} prospects created")
    if stats.marked_deleted:
        parts.append(f"{stats.marked_deleted} marked crm_deleted")
    if stats.retried:
        parts.append(f"{stats.retried} to retry later")
    parts.append(f"{error_items} in the error queue")
    parts.append(
        f"API calls: salesforce {calls.get('salesforce', 0)}, pardot {calls.get('pardot', 0)}"
    )
    sides = sorted({*paused, *polls.paused})
    if sides:
        parts.append(f"paused for API budget: {', '.join(sides)}")
    for feed, why in sorted(polls.failed.items()):
        parts.append(f"feed {feed} not read ({why[:200]})")
    if result is not None:
        parts.extend(_left_parts(rt, result))
    return "syncd once: " + "; ".join(parts)


def summary_json(rt: Runtime, result: OnceResult) -> dict[str, Any]:
    """The summary of `syncd once --json`: the same facts as the line, under stable keys."""
    stats, calls = result.stats, rt.budget.calls_made
    return {
        "items_processed": stats.items,
        "leads_created": stats.leads_created,
        "records_linked": stats.linked,
        "crm_fields_updated": stats.crm_fields,
        "pardot_fields_updated": stats.pardot_fields,
        "tasks_logged": stats.tasks,
        "owners_changed": stats.owners_changed,
        "prospects_created": stats.prospects_created,
        "marked_crm_deleted": stats.marked_deleted,
        "to_retry_later": stats.retried,
        "error_items": result.error_items,
        "items_left": result.items_left,
        "api_calls": {"salesforce": calls.get("salesforce", 0), "pardot": calls.get("pardot", 0)},
        "paused_for_budget": sorted({*result.paused, *result.polls.paused}),
        "feeds_not_read": dict(sorted(result.polls.failed.items())),
        "feeds": {
            feed: {
                "read": n,
                "queued": result.polls.queued.get(feed, 0),
                "echoes": result.polls.echoes.get(feed, 0),
            }
            for feed, n in sorted(result.polls.read.items())
        },
        "stopped_by": result.stop.signal.name if result.stop.signal is not None else None,
        "exit_code": result.exit_code,
        "summary": summary_line(
            stats, result.polls, rt, result.error_items, result.paused, result=result
        ),
    }


def _left_parts(rt: Runtime, result: OnceResult) -> list[str]:
    """Why the run ended early and how much it left, when it did."""
    left = result.items_left
    count = "an unknown number of" if left is None else f"{left:,}"
    if result.stop.signal is not None:
        return [f"stopped by {result.stop.signal.name}: {count} items left in the queue"]
    if result.exit_code != EXIT_WORK_LEFT:
        return []
    until = []
    for side in sorted(result.paused):
        at = rt.budget.resume_at(side)
        until.append(f"{side} until {at.isoformat(timespec='minutes')}" if at else side)
    unread = " and feeds not read" if result.polls.paused else ""
    return [
        f"stopped with work left: {count} items waiting{unread}, because the API budget is "
        f"spent ({', '.join(until)}); run again then, or with --wait-budget to wait for it "
        "(or raise sync.api_budget_share)"
    ]


def _pseudo_items(new_items: Sequence[NewItem], now: datetime) -> list[QueueItem]:
    """What the pollers would have queued, coalesced by key, as queue items (dry run)."""
    by_key: dict[str, QueueItem] = {}
    for n, item in enumerate(new_items):
        prev = by_key.get(item.key)
        snapshot = item.snapshot if item.snapshot is not None else (prev.snapshot if prev else None)
        reasons = set(prev.reasons) if prev else set()
        reasons.update(r.name.lower() for r in type(item.reasons) if r in item.reasons and r.name)
        by_key[item.key] = QueueItem(
            id=-(n + 1),
            key=item.key,
            prospect_id=item.prospect_id,
            crm_id=item.crm_id or (prev.crm_id if prev else None),
            email=item.email or (prev.email if prev else None),
            reasons=frozenset(reasons),
            snapshot=snapshot,
            state=State.PENDING,
            attempts=0,
            available_at=now,
            first_seen_at=now,
            enqueued_at=now,
            updated_at=now,
        )
    return list(by_key.values())


class _Rollback(Exception):
    """Raised to roll back the dry run's peek at the queue."""


async def _peek_due(rt: Runtime) -> list[QueueItem]:
    """The items due now, read by claiming them in a transaction that is then rolled back."""
    found: list[QueueItem] = []
    try:
        async with rt.store.transaction() as tx:
            found = await rt.store.queue.claim(
                tx, worker_id="dry-run", limit=100_000, lease_s=1.0, now=rt.clock()
            )
            raise _Rollback
    except _Rollback:
        pass
    return found


def describe_plan(plan: Plan) -> str:
    """A plan as a few readable lines."""
    who = f"prospect {plan.prospect_id}" if plan.prospect_id is not None else "CRM-only record"
    target = f"{plan.crm_type} {plan.crm_id}" if plan.crm_id else str(plan.crm_type or "")
    lines = [f"{who}: {plan.action.value} {target}".rstrip()]
    if plan.skip_reason:
        lines.append(f"  why: {plan.skip_reason}")
    if plan.create_lead is not None:
        lines.append(f"  create Lead: {json.dumps(thaw(plan.create_lead), ensure_ascii=False)}")
        if plan.auto_assign:
            lines.append("  owner: the active assignment rule (Sforce-Auto-Assign: TRUE)")
    if plan.pardot_create is not None:
        body = json.dumps(thaw(plan.pardot_create), ensure_ascii=False)
        lines.append(f"  create prospect: {body}")
    if plan.crm_update:
        lines.append(f"  CRM update: {json.dumps(thaw(plan.crm_update), ensure_ascii=False)}")
    if plan.pardot_update:
        body = json.dumps(thaw(plan.pardot_update), ensure_ascii=False)
        lines.append(f"  Pardot update: {body}")
    for task in plan.tasks:
        lines.append(f"  Task: {task.subject!r} on {task.activity_date.isoformat()}")
    for d in plan.decisions:
        if d.field:
            lines.append(f"  - {d.action} {d.field}: {d.old!r} -> {d.new!r} ({d.reason})")
        else:
            lines.append(f"  - {d.action}: {d.reason}")
    return "\n".join(lines)


async def dry_run(rt: Runtime) -> int:
    pollers = Pollers(rt, dry_run=True)
    polls = await pollers.poll_all()
    due = await _peek_due(rt)
    items = {i.key: i for i in _pseudo_items(pollers.collected, rt.clock())}
    for item in due:
        items.setdefault(item.key, item)
    pipeline = Pipeline(rt, worker_id="dry-run")
    plans: list[Plan] = []
    batch = rt.settings.sync.batch_size
    ordered = list(items.values())
    for start in range(0, len(ordered), batch):
        plans.extend(await pipeline.plan_only(ordered[start : start + batch]))
    out = sys.stdout
    for plan in plans:
        out.write(describe_plan(plan) + "\n")
    writes = sum(p.writes for p in plans)
    calls = rt.budget.calls_made
    out.write(
        f"syncd once --dry-run: {len(items)} items, {len(plans)} plans, {writes} writes "
        f"planned (none made); API calls: salesforce {calls.get('salesforce', 0)}, "
        f"pardot {calls.get('pardot', 0)}"
        + (f"; paused: {', '.join(polls.paused)}" if polls.paused else "")
        + "\n"
    )
    return 0


async def run_once(
    rt: Runtime, *, stop: Stop | None = None, wait_budget: bool = False
) -> OnceResult:
    """Poll once and drain; with `wait_budget`, wait for a spent budget and go on until done."""
    stop = stop or Stop()
    stats, polls, paused = RunStats(), PollStats(), set[str]()
    while not stop.is_requested:
        round_ = await _poll(rt, stop)
        _merge(polls, round_)
        worker = Worker(
            rt,
            worker_id=worker_id("once"),
            stop=stop,
            burst=True,
            stats=stats,
            wait_budget=wait_budget,
        )
        await run_workers([worker], stop, grace_s=rt.settings.sync.shutdown_grace_s)
        paused.update(worker.paused, round_.paused)
        if not wait_budget:
            break
        still = _still_paused(rt, paused)
        if not still or not (round_.paused or await _work_left(rt)):
            break
        await _wait_for_budget(rt, still, stop)  # then poll what it skipped, drain again
    counts = None
    wait_s = None if not stop.is_requested else 0.5 if stop.is_forced else RELEASE_TIMEOUT_S
    try:
        async with asyncio.timeout(wait_s), rt.store.read() as tx:
            counts = await rt.store.queue.counts(tx, now=rt.clock())
    except Exception as exc:
        if not stop.is_requested:
            raise
        log.warning("queue_count_failed", error=type(exc).__name__)
    # a side paused earlier but allowed again now (the budget moved on) left no work behind
    return OnceResult(stats, polls, _still_paused(rt, paused), counts, stop)


def _still_paused(rt: Runtime, sides: set[str]) -> list[str]:
    return sorted(side for side in sides if rt.budget.resume_at(side) is not None)


async def _work_left(rt: Runtime) -> bool:
    async with rt.store.read() as tx:
        counts = await rt.store.queue.counts(tx, now=rt.clock())
    return bool(counts.pending or counts.claimed)


async def _poll(rt: Runtime, stop: Stop) -> PollStats:
    """One poll round; a stop cancels it and returns nothing read."""
    return await unless_stopped(Pollers(rt).poll_all(), stop) or PollStats()


def _merge(total: PollStats, round_: PollStats) -> None:
    for feed, n in round_.read.items():
        total.add(feed, n, round_.queued.get(feed, 0), round_.echoes.get(feed, 0))
    total.paused[:] = round_.paused  # the last round says what is still unread
    total.failed.update(round_.failed)


async def _wait_for_budget(rt: Runtime, systems: Sequence[str], stop: Stop) -> None:
    """Until every side in `systems` may be called again, or a stop."""
    while not stop.is_requested:
        waits = []
        for side in systems:
            at = rt.budget.resume_at(side)
            if at is not None:
                waits.append(max(0.0, (at - rt.clock()).total_seconds()))
        if not waits:
            return
        wait_s = min(max(waits), BUDGET_WAIT_MAX_S)
        log.info("budget_wait", systems=list(systems), wait_s=round(wait_s, 1))
        await wait_any(stop.requested.wait(), timeout_s=max(wait_s, 0.05))
        await rt.budget.sync()  # the 24-hour counts move on (and other processes count)


async def run(args: argparse.Namespace, settings: Settings, **runtime_options: Any) -> int:
    as_json = bool(getattr(args, "json", False))
    if as_json and getattr(args, "dry_run", False):
        sys.stderr.write("syncd once: --json is for the summary; --dry-run prints plans as text\n")
        return 2
    if getattr(args, "dry_run", False):
        rt = await build_runtime(settings, **runtime_options)
        try:
            return await dry_run(rt)
        finally:
            await rt.aclose()
    stop = Stop()
    grace_s = settings.sync.shutdown_grace_s
    with StopSignals.for_stop(stop, backstop_grace_s=grace_s) as stops:
        rt = await build_runtime(settings, **runtime_options)
        try:
            # Log in first: with the token endpoint unreachable nothing can be read (Pardot
            # takes Salesforce's token too), and one line naming salesforce.login_url and its
            # host says so better than every feed failing in turn (the CLI prints the error).
            await rt.auth.session()
            result = await run_once(
                rt, stop=stop, wait_budget=bool(getattr(args, "wait_budget", False))
            )
            if as_json:
                sys.stdout.write(json.dumps(summary_json(rt, result), indent=2) + "\n")
                return result.exit_code
            line = summary_line(
                result.stats, result.polls, rt, result.error_items, result.paused, result=result
            )
            sys.stdout.write(line + "\n")
            stops.exit_code = result.exit_code
            return result.exit_code
        finally:
            await close_runtime(rt, stop)
