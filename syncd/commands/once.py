"""`syncd once [--dry-run]`: poll every feed once, drain the queue, print one summary line.

Burst mode (arq's): items are claimed batch after batch until none is due, then the command
returns. Exit 0, or 1 when any item is in the sync error queue (`syncd errors list`) or a feed
could not be read (named in the summary; the other feeds and the queue are still processed).
`--dry-run` reads both sides and prints every plan, and writes nothing: no API write, no queue,
cursor or link change in the store.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from syncd import errors, logs
from syncd.domain.models import thaw
from syncd.domain.plan import Plan
from syncd.runtime.pipeline import Pipeline, RunStats
from syncd.runtime.pollers import Pollers, PollStats
from syncd.runtime.wiring import Runtime, build_runtime
from syncd.settings import Settings
from syncd.store.models import NewItem, QueueItem, State

log = logs.get(__name__)

MAX_BATCHES = 100_000  # a safety stop for burst mode; a real drain never gets near it


def worker_id(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


async def drain(rt: Runtime, pipeline: Pipeline) -> list[str]:
    """Claim and sync batches until none is due; returns the sides that paused on budget."""
    paused: list[str] = []
    for _ in range(MAX_BATCHES):
        try:
            claimed = await pipeline.run_batch()
        except errors.BudgetExhaustedError as exc:
            paused.append(exc.system)
            log.warning("drain_paused", system=exc.system, code=exc.code)
            break
        if claimed == 0:
            break
    return paused


def summary_line(
    stats: RunStats, polls: PollStats, rt: Runtime, error_items: int, paused: Sequence[str]
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
    return "syncd once: " + "; ".join(parts)


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
    pipeline = Pipeline(rt, worker_id="dry-run", dry_run=True)
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


async def run_once(rt: Runtime) -> tuple[RunStats, PollStats, int, list[str]]:
    """Poll once and drain; returns the statistics and the error-queue size."""
    polls = await Pollers(rt).poll_all()
    stats = RunStats()
    pipeline = Pipeline(rt, worker_id=worker_id("once"), stats=stats)
    paused = await drain(rt, pipeline)
    async with rt.store.read() as tx:
        counts = await rt.store.queue.counts(tx, now=rt.clock())
    return stats, polls, counts.error, paused


async def run(args: argparse.Namespace, settings: Settings, **runtime_options: Any) -> int:
    rt = await build_runtime(settings, **runtime_options)
    try:
        # Log in first: with the token endpoint unreachable nothing can be read (Pardot takes
        # Salesforce's token too), and one line naming salesforce.login_url and its host says
        # so better than every feed failing in turn (the CLI prints the APIError).
        await rt.auth.session()
        if getattr(args, "dry_run", False):
            return await dry_run(rt)
        stats, polls, error_items, paused = await run_once(rt)
        sys.stdout.write(summary_line(stats, polls, rt, error_items, paused) + "\n")
        return 1 if error_items or polls.failed else 0
    finally:
        await rt.aclose()
