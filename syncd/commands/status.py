"""`syncd status`: the queue, the feeds, API usage against the budget, the sides an operator
paused, the live processes, and the linked prospects in Pardot's recycle bin.

Reads the store only (no API call): a readable table by default, `--json` for scripts. API
usage per side is syncd's own calls in the last 24 hours (all processes on this database) against
its share of the daily limit, and the org-wide usage the API last reported. The recycle bin
figure counts the links a sync found recycled (skipped, never an error; issue 15) and not yet
restored: the text shows the count and the first few ids, `--json` the count and up to
`RECYCLED_IDS_JSON` ids. A side paused from the console (`syncd.store.control`) shows in the API
table's state column, who paused it and since when (`--json`: `paused`, {side: {by, at}}).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from syncd.commands._store import open_existing_store
from syncd.runtime.budget import ApiBudget, SideFigures
from syncd.runtime.login import LOGIN_FAILING_KV
from syncd.runtime.snapshot import Snapshot, read_snapshot
from syncd.settings import Settings
from syncd.store import Store

RECYCLED_IDS_TEXT = 5
RECYCLED_IDS_JSON = 1000


async def run(args: argparse.Namespace, settings: Settings) -> int:
    store = await open_existing_store(settings)
    try:
        now = datetime.now(UTC)
        snap = await read_snapshot(store, now=now, stale_s=settings.ops.heartbeat_stale_s)
        budget = ApiBudget(
            share=settings.sync.api_budget_share,
            pardot_daily_limit=settings.pardot.daily_api_limit,
            clock=lambda: now,
            store=store,
        )
        await budget.sync()  # reads the shared 24-hour counts and org usage; nothing to add
        figures = budget.figures()
        login = await _login_failing(store, snap)
        recycled = await recycle_bin(store)
        async with store.read() as tx:
            paused = await store.control.paused(tx)
    finally:
        await store.aclose()
    if getattr(args, "json", False):
        print(json.dumps(status_json(snap, figures, login, recycled, paused), indent=2))
    else:
        render(snap, figures, Console(), login, recycled, paused)
    return 0


async def recycle_bin(store: Store) -> dict[str, Any]:
    """`{"count": n, "prospect_ids": [...]}`: linked prospects in Pardot's recycle bin (the
    first `RECYCLED_IDS_JSON` ids, lowest first)."""
    async with store.read() as tx:
        count, ids = await store.links.recycled(tx, limit=RECYCLED_IDS_JSON)
    return {"count": count, "prospect_ids": ids}


async def _login_failing(store: Store, snap: Snapshot) -> dict[str, Any] | None:
    """The refused login a live `syncd run` reports (`syncd.runtime.login`), if any."""
    async with store.read() as tx:
        entry = await store.kv.get(tx, LOGIN_FAILING_KV)
    live = {h.process_id for h in snap.live(role=None)}
    return entry if isinstance(entry, dict) and entry.get("process_id") in live else None


def status_json(
    snap: Snapshot,
    figures: list[SideFigures],
    login: dict[str, Any] | None = None,
    recycled: dict[str, Any] | None = None,
    paused: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole status as a JSON-ready dict (`login_refused`: null, or the failing side;
    `recycle_bin`: `recycle_bin()`, null when not read; `paused`: the sides an operator
    paused, {side: {"by", "at"}})."""
    out = snap.to_json()
    out["login_refused"] = login
    out["recycle_bin"] = recycled
    out["paused"] = dict(paused or {})
    out["api"] = {
        f.system: {
            "own_calls_24h": f.own_calls_24h,
            "daily_limit": f.daily_limit,
            "budget": f.own_cap,
            "remaining": f.remaining,
            "org_used": _org_used(snap, f),
            "org_limit": _org_limit(snap, f),
            "org_observed_at": _org_seen(snap, f),
            "paused": f.paused,
            "reason": f.reason,
            "resume_at": f.resume_at.isoformat() if f.resume_at else None,
        }
        for f in figures
    }
    return out


def _org_used(snap: Snapshot, f: SideFigures) -> int | None:
    org = snap.org_usage.get(f.system)
    return org.used if org is not None else f.org_used


def _org_limit(snap: Snapshot, f: SideFigures) -> int | None:
    org = snap.org_usage.get(f.system)
    return org.limit if org is not None else None


def _org_seen(snap: Snapshot, f: SideFigures) -> str | None:
    org = snap.org_usage.get(f.system)
    return org.observed_at.isoformat() if org is not None else None


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=round(seconds)))


def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    return f"{at.strftime('%Y-%m-%d %H:%M:%S')}Z ({_age((now - at).total_seconds())} ago)"


def render(
    snap: Snapshot,
    figures: list[SideFigures],
    console: Console,
    login: dict[str, Any] | None = None,
    recycled: dict[str, Any] | None = None,
    paused: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Print the status as tables (and the recycle bin line)."""
    q = snap.queue
    queue = Table(title="Queue", show_header=True, header_style="bold")
    for col in ("pending", "due now", "claimed", "errors", "expired leases", "oldest pending"):
        queue.add_column(col, justify="right")
    queue.add_row(
        str(q.pending),
        str(q.due),
        str(q.claimed),
        str(q.error),
        str(q.expired_leases),
        _age(snap.oldest_pending_age_s()),
    )
    console.print(queue)

    feeds = Table(title="Feeds", header_style="bold")
    feeds.add_column("feed")
    feeds.add_column("cursor")
    feeds.add_column("last successful poll")
    for feed in snap.feeds:
        cursor = feed.position.strftime("%Y-%m-%d %H:%M:%S") + "Z"
        if feed.last_id:
            cursor += f" / {feed.last_id}"
        feeds.add_row(feed.feed, cursor, _when(feed.last_poll_at, snap.now))
    if not snap.feeds:
        feeds.add_row("(none yet)", "-", "never")
    console.print(feeds)

    api = Table(title="API usage (last 24 h)", header_style="bold")
    for col in ("side", "own calls", "budget", "remaining", "org usage last seen", "state"):
        api.add_column(col, justify="left" if col in ("side", "state") else "right")
    for f in figures:
        org_used, org_limit = _org_used(snap, f), _org_limit(snap, f)
        org = "-" if org_used is None else f"{org_used}" + (f" / {org_limit}" if org_limit else "")
        states = []
        if paused and f.system in paused:
            states.append(operator_pause(paused[f.system]))
        if f.paused:
            states.append(f"paused: {f.reason}")
        if login is not None and login.get("system") == f.system:
            states.append(f"login refused since {login.get('since')} ({login.get('code')})")
        state = "; ".join(states) or "ok"
        api.add_row(
            f.system,
            str(f.own_calls_24h),
            "-" if f.own_cap is None else str(f.own_cap),
            "-" if f.remaining is None else str(f.remaining),
            org,
            state,
        )
    console.print(api)

    procs = Table(title="Processes", header_style="bold")
    for col in ("process", "host", "pid", "role", "started", "last heartbeat", "live"):
        procs.add_column(col)
    live = {h.process_id for h in snap.live(role=None)}
    for h in snap.processes:
        procs.add_row(
            h.process_id,
            h.host,
            str(h.pid),
            h.role,
            _when(h.started_at, snap.now),
            _when(h.last_beat_at, snap.now),
            "yes" if h.process_id in live else "stale",
        )
    if not snap.processes:
        procs.add_row("(no syncd run has registered)", "", "", "", "", "", "")
    console.print(procs)

    if recycled is not None:
        console.print(recycle_bin_line(recycled))


def operator_pause(entry: dict[str, Any]) -> str:
    """`paused by <who> since <when>`: a side paused from the console (no feed read, no batch
    claimed until it is resumed there)."""
    return f"paused by {entry.get('by') or 'an operator'} since {entry.get('at') or '?'}"


def recycle_bin_line(recycled: dict[str, Any]) -> str:
    """One line: how many linked prospects are in Pardot's recycle bin, and the first ids."""
    count = int(recycled.get("count") or 0)
    if count == 0:
        return "Pardot recycle bin: no linked prospect (none skipped)"
    ids = [str(i) for i in recycled.get("prospect_ids", [])[:RECYCLED_IDS_TEXT]]
    more = f", ... ({count - len(ids)} more)" if count > len(ids) else ""
    return (
        f"Pardot recycle bin: {count} linked prospect{'s' if count != 1 else ''} skipped "
        f"until restored: {', '.join(ids)}{more}"
    )
