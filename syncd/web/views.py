"""What each console page shows, as plain data: read from the store, no HTML here.

The JSON API returns these dicts; the pages render them. The overview's numbers come from the
same code as `syncd status --json` (`read_snapshot` + `ApiBudget.figures` + `status_json`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from syncd.commands.errors import item_dict
from syncd.commands.history import line_dict
from syncd.commands.status import operator_pause, recycle_bin, status_json
from syncd.domain.fieldmap import FieldMap
from syncd.runtime.budget import ApiBudget
from syncd.runtime.login import LOGIN_FAILING_KV
from syncd.runtime.ops import Check, OpsHandlers
from syncd.runtime.snapshot import read_snapshot
from syncd.settings import Settings
from syncd.store import NewItem, Reason, Store
from syncd.store.console import OUTCOMES, days_back
from syncd.store.control import SIDES
from syncd.web import rollup

HISTORY_LIMIT = 500
GROUP_PAGE = 100
EXPORT_LIMIT = 100_000
RETRY_CHUNK = 5_000
MASK = "•••••••• (set)"


@dataclass
class ConsoleContext:
    """What the console needs: the store, the settings, a clock, and the daemon's live checks.

    `login_state` (daemon only) says per side whether its API answered: "ok", "refused" (the
    credentials were refused) or "no successful call yet"; `syncd console` has no API clients
    and leaves it None.
    """

    store: Store
    settings: Settings
    clock: Callable[[], datetime]
    handlers: OpsHandlers
    mode: str = "daemon"  # or "console" (`syncd console`: the store alone)
    login_state: Callable[[], dict[str, str]] | None = None
    field_map: FieldMap | None = None
    on_change: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def warm_up(self) -> None:
        """Count the settled hours of the last 30 days now, not on the first page view."""
        await rollup.hours(self.store, now=self.clock(), settle=self.settle())

    def settle(self) -> timedelta:
        """How long after an hour ends its audit lines are final (see `syncd.web.rollup`)."""
        return timedelta(seconds=self.settings.sync.lease_s + 300)

    def fields(self) -> FieldMap:
        return self.field_map or FieldMap.default().with_overrides(self.settings.fields)


# -- overview ---------------------------------------------------------------------------------


async def status(ctx: ConsoleContext) -> dict[str, Any]:
    """Exactly what `syncd status --json` prints (the paused sides included)."""
    now = ctx.clock()
    snap = await read_snapshot(ctx.store, now=now, stale_s=ctx.settings.ops.heartbeat_stale_s)
    budget = ApiBudget(
        share=ctx.settings.sync.api_budget_share,
        pardot_daily_limit=ctx.settings.pardot.daily_api_limit,
        clock=lambda: now,
        store=ctx.store,
    )
    await budget.sync()
    async with ctx.store.read() as tx:
        paused = await ctx.store.control.paused(tx)
    return status_json(snap, budget.figures(), recycled=await recycle_bin(ctx.store), paused=paused)


def _buckets(start: datetime, step: timedelta, n: int, width: int) -> list[tuple[str, datetime]]:
    fmt = "%Y-%m-%d %H:%M:%S"
    return [((start + step * i).strftime(fmt)[:width], start + step * i) for i in range(n)]


async def overview(ctx: ConsoleContext) -> dict[str, Any]:
    """The overview page: status, per-side state, throughput charts, error groups."""
    doc = await status(ctx)
    now = ctx.clock()
    hour_start = now.replace(minute=(now.minute // 10) * 10, second=0, microsecond=0)
    hour_start -= timedelta(minutes=50)
    day_start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    async with ctx.store.read() as tx:
        per_10min = await ctx.store.console.synced_per_bucket(tx, since=hour_start, width=15)
        groups = await ctx.store.console.error_groups(tx)
    per_hour = await rollup.hours(ctx.store, now=now, settle=ctx.settle())
    hour = [
        (at, per_10min.get(key, 0))
        for key, at in _buckets(hour_start, timedelta(minutes=10), 6, 15)
    ]
    day = [
        (at, int(per_hour.get(key, {}).get("p", 0)))
        for key, at in _buckets(day_start, timedelta(hours=1), 24, 13)
    ]
    login = ctx.login_state() if ctx.login_state is not None else await _reported_logins(ctx)
    sides = []
    for side in SIDES:
        api = doc["api"][side]
        feeds = [f for f in doc["feeds"] if f["feed"].split(".", 1)[0] == side]
        problems = []
        if side in doc["paused"]:
            problems.append(operator_pause(doc["paused"][side]))
        if api["paused"]:
            problems.append(f"API budget: {api['reason']}")
        if login.get(side) == "refused":
            problems.append("login refused: fix the [salesforce] credentials")
        sides.append(
            {
                "side": side,
                "login": login.get(
                    side, "no refusal reported (syncd console makes no API calls itself)"
                ),
                "feeds": feeds,
                "api": api,
                "paused": side in doc["paused"],
                "problems": problems,
            }
        )
    return {
        "status": doc,
        "sides": sides,
        "hour": hour,
        "day": day,
        "synced_hour": sum(n for _, n in hour),
        "synced_day": sum(n for _, n in day),
        "groups": groups,
    }


async def _reported_logins(ctx: ConsoleContext) -> dict[str, str]:
    """`syncd console`: a refused login reported by a `syncd run` on this store (its kv entry)."""
    async with ctx.store.read() as tx:
        failing = await ctx.store.kv.get(tx, LOGIN_FAILING_KV)
    if isinstance(failing, dict) and isinstance(failing.get("system"), str):
        return {failing["system"]: "refused"}
    return {}


# -- errors -------------------------------------------------------------------------------------


async def errors_page(ctx: ConsoleContext, code: str | None, page: int) -> dict[str, Any]:
    async with ctx.store.read() as tx:
        groups = await ctx.store.console.error_groups(tx)
        items = []
        if code is not None:
            items = await ctx.store.console.errors_by_code(
                tx, code, limit=GROUP_PAGE, offset=page * GROUP_PAGE
            )
        revived_total, revived = await ctx.store.console.revived(tx, limit=20)
    selected = next((g for g in groups if g.code == code), None)
    return {
        "groups": groups,
        "code": code,
        "group": selected,
        "items": items,
        "page": page,
        "pages": 0 if selected is None else (selected.count + GROUP_PAGE - 1) // GROUP_PAGE,
        "revived_total": revived_total,
        "revived": revived,
        "total": sum(g.count for g in groups),
    }


async def error_rows(ctx: ConsoleContext, code: str | None) -> list[dict[str, Any]]:
    async with ctx.store.read() as tx:
        items = await ctx.store.console.errors_by_code(tx, code, limit=EXPORT_LIMIT)
    return [item_dict(i) for i in items]


def rows_csv(rows: list[dict[str, Any]]) -> str:
    cols = [
        "id",
        "prospect_id",
        "crm_id",
        "email",
        "code",
        "message",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "reasons",
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(cols)
    for r in rows:
        writer.writerow([_csv_safe(" ".join(r[c]) if c == "reasons" else r[c]) for c in cols])
    return out.getvalue()


def _csv_safe(value: Any) -> Any:
    """Cells starting with = + - @ are formulas to a spreadsheet: quote them as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


async def retry_errors(
    ctx: ConsoleContext, *, code: str | None, ids: list[int], who: str
) -> list[int]:
    """Revive the error items of a group (code) or the selected ids; audited with who."""
    now = ctx.clock()
    async with ctx.store.transaction() as tx:
        wanted = ids if code is None else await ctx.store.console.error_ids(tx, code)
        revived: list[int] = []
        for start in range(0, len(wanted), RETRY_CHUNK):  # within every driver's parameter cap
            part = wanted[start : start + RETRY_CHUNK]
            revived += await ctx.store.queue.retry_errors(tx, part, now=now)
        if revived:
            pids: list[int | None] = list(await ctx.store.console.prospects_of_items(tx, revived))
            await ctx.store.console.record_action(
                tx,
                "retry",
                who=who,
                now=now,
                prospect_ids=pids or [None],
                detail={"items": len(revived), **({"code": code} if code else {})},
            )
    return revived


# -- prospects ----------------------------------------------------------------------------------


async def search(ctx: ConsoleContext, text: str) -> list[int]:
    async with ctx.store.read() as tx:
        return await ctx.store.console.search(tx, text)


async def prospect(ctx: ConsoleContext, prospect_id: int) -> dict[str, Any] | None:
    """A prospect's link, queue rows and timeline; None when the store never heard of it."""
    async with ctx.store.read() as tx:
        links = await ctx.store.links.by_prospect_ids(tx, [prospect_id])
        items = await ctx.store.console.queue_items_of(tx, prospect_id)
        lines = await ctx.store.audit.history(tx, prospect_id, limit=HISTORY_LIMIT)
    link = links.get(prospect_id)
    if link is None and not items and not lines:
        return None
    return {
        "prospect_id": prospect_id,
        "link": None
        if link is None
        else {
            "crm_type": link.crm_type,
            "crm_id": link.crm_id,
            "email": link.email,
            "crm_deleted": link.crm_deleted,
            "synced_at": link.synced_at.isoformat(),
            "fields": {k: v for k, v in sorted(link.base.items()) if not k.startswith("_")},
        },
        "queue": [item_dict(i) | {"available_at": i.available_at.isoformat()} for i in items],
        "timeline": [line_dict(x) for x in lines],
    }


async def sync_now(ctx: ConsoleContext, prospect_id: int, *, who: str) -> None:
    """Queue the prospect now, the same as `syncd reprocess ID` (audited with who)."""
    now = ctx.clock()
    async with ctx.store.transaction() as tx:
        await ctx.store.queue.enqueue(
            tx, [NewItem.for_prospect(prospect_id, Reason.REPROCESS)], now=now
        )
        await ctx.store.console.record_action(
            tx, "sync_now", who=who, now=now, prospect_ids=[prospect_id]
        )


# -- pause / resume -----------------------------------------------------------------------------


async def set_paused(ctx: ConsoleContext, side: str, paused: bool, *, who: str) -> bool:
    now = ctx.clock()
    async with ctx.store.transaction() as tx:
        if paused:
            changed = await ctx.store.control.pause(tx, side, by=who, now=now)
        else:
            changed = await ctx.store.control.resume(tx, side)
        if changed:
            await ctx.store.console.record_action(
                tx, "pause" if paused else "resume", who=who, now=now, detail={"side": side}
            )
    return changed


# -- activity -----------------------------------------------------------------------------------


async def activity(ctx: ConsoleContext) -> dict[str, Any]:
    """Per day and outcome over the last 30 days, with 7- and 30-day totals."""
    now = ctx.clock()
    since = days_back(now, 30)
    per_day: dict[str, dict[str, int]] = {}
    for hour, counts in (await rollup.hours(ctx.store, now=now, settle=ctx.settle())).items():
        sums = per_day.setdefault(hour[:10], {})
        for action, n in counts.get("a", {}).items():
            sums[action] = sums.get(action, 0) + int(n)
    async with ctx.store.read() as tx:
        actions = await ctx.store.console.actions(tx, since=since, limit=50)
    days = [(since + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(30)]
    days.reverse()
    table: list[dict[str, Any]] = []
    for day in days:
        day_counts = per_day.get(day, {})
        table.append(
            {
                "day": day,
                **{o: sum(day_counts.get(a, 0) for a in acts) for o, acts in OUTCOMES.items()},
            }
        )
    totals = {span: {o: sum(r[o] for r in table[:span]) for o in OUTCOMES} for span in (7, 30)}
    return {
        "outcomes": list(OUTCOMES),
        "days": table,
        "totals": totals,
        "actions": [line_dict(a) for a in actions],
    }


# -- settings -----------------------------------------------------------------------------------


def _mask(value: Any, key: str) -> Any:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else "(not set)"
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if key == "url" and isinstance(value, str):
        return _mask_url(value)
    return value


def _mask_url(url: str) -> str:
    """Hide a password in a database URL (`postgresql+asyncpg://user:secret@host/db`)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:••••••••@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def settings_view(ctx: ConsoleContext) -> dict[str, Any]:
    """The effective settings with every secret masked, and the field map."""
    raw = {name: getattr(ctx.settings, name) for name in type(ctx.settings).model_fields}
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "fields":
            continue
        dumped = {k: getattr(value, k) for k in type(value).model_fields}
        sections[name] = {k: _mask(v, k) for k, v in dumped.items()}
    fields = [
        {
            "pardot": r.pardot,
            "lead": r.crm_lead,
            "contact": r.crm_contact,
            "policy": str(r.effective_policy.value),
            "configured": str(r.policy.value),
            "blank_overwrites": r.blank_overwrites,
        }
        for r in ctx.fields().rules
    ]
    return {"sections": sections, "fields": fields}


async def ready(ctx: ConsoleContext) -> Check:
    return await ctx.handlers.readyz()
