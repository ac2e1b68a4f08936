"""`syncd demo [--once]`: both simulators in-process with generated data, the daemon on SQLite.

The first thing a newcomer runs (`make run`). It builds a realistic world (see
`syncd.simulators.generate`), points a real syncd runtime at the simulators through in-process
transports, polls every feed, drains the queue with a progress bar, and prints what it did, checked
against what the simulated Salesforce and Pardot now hold. Without `--once` it then keeps going:
every few seconds a simulated user edits a prospect or a CRM record, and syncd syncs it, until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from random import Random
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from syncd import errors, logs
from syncd.commands import console as console_command
from syncd.runtime.ops import OpsServer, parse_listen
from syncd.runtime.pipeline import Pipeline, RunStats
from syncd.runtime.pollers import Pollers
from syncd.runtime.wiring import Runtime, build_runtime
from syncd.settings import Settings
from syncd.simulators.generate import generate_seed
from syncd.simulators.world import World
from syncd.web.app import build_app
from syncd.web.views import ConsoleContext

DEFAULT_DB = "demo.db"
DEMO_POLL_INTERVAL_S = 5.0
DEMO_WORKERS = 2
DEMO_LISTEN = "127.0.0.1:9108"


def _demo_settings(world: World, database_url: str) -> Settings:
    overrides: dict[str, Any] = world.settings_overrides()
    overrides["database"] = {"url": database_url}
    overrides["sync"] = {"poll_interval_s": DEMO_POLL_INTERVAL_S, "workers": DEMO_WORKERS}
    overrides["log"] = {"level": "warning"}
    return Settings(**overrides)


def _fresh_sqlite(url: str) -> None:
    """The demo's data is generated anew each run, so its store starts empty too."""
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix):
        return
    path = Path(url[len(prefix) :])
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


async def _pending(rt: Runtime) -> int:
    async with rt.store.read() as tx:
        counts = await rt.store.queue.counts(tx, now=rt.clock())
    return int(counts.pending + counts.claimed)


async def _batch(pipeline: Pipeline) -> int:
    """One batch; 0 while a side is paused (from the console, or for its API budget)."""
    try:
        return await pipeline.run_batch()
    except errors.BudgetExhaustedError:
        return 0


async def _serve_console(rt: Runtime, console: Console) -> OpsServer | None:
    """The web console on `ops.listen` (default 127.0.0.1:9108, else a free port)."""
    handlers = console_command.handlers_for(rt.store, rt.settings)
    ctx = ConsoleContext(
        store=rt.store,
        settings=rt.settings,
        clock=rt.clock,
        handlers=handlers,
        field_map=rt.field_map,
    )
    host, port = parse_listen(rt.settings.ops.listen or DEMO_LISTEN)
    for attempt in (port, 0):
        server = OpsServer(
            handlers, host=host, port=attempt, app=build_app(ctx), warm_up=ctx.warm_up
        )
        try:
            await server.start()
        except OSError:
            continue
        console.print(f"Web console: http://{host}:{server.port}/", markup=False, highlight=False)
        return server
    console.print(f"(no web console: cannot listen on {host})", markup=False)
    return None


async def _drain(rt: Runtime, stats: RunStats, progress: Progress | None, task: Any) -> None:
    total = await _pending(rt)
    if progress is not None:
        progress.update(task, total=total, completed=0)

    async def worker(n: int) -> None:
        pipeline = Pipeline(rt, worker_id=f"demo-{n}", stats=stats)
        while await _batch(pipeline):
            if progress is not None:
                progress.update(task, completed=total - await _pending(rt))

    await asyncio.gather(*(worker(n) for n in range(DEMO_WORKERS)))
    if progress is not None:
        progress.update(task, completed=total)


def _summary(console: Console, world: World, rt: Runtime, stats: RunStats, wall_s: float) -> None:
    sf, pd = world.salesforce, world.pardot
    prospects = pd.prospects()
    linked = sum(1 for p in prospects if p.get("salesforceId"))
    table = Table(title="What syncd did", show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("count", justify="right")
    rows = [
        ("queue items processed (prospects, CRM records)", stats.items),
        ("leads created in Salesforce", stats.leads_created),
        ("prospects linked to a CRM record", stats.linked),
        ("CRM fields updated", stats.crm_fields),
        ("Pardot fields updated", stats.pardot_fields),
        ("emails logged as Tasks", stats.tasks),
        ("owners changed (CRM owner is master)", stats.owners_changed),
        ("skipped (unassigned with no match, CRM-only)", stats.skipped),
        ("items in the error queue", stats.errors),
    ]
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    console.print(table)
    calls = rt.budget.calls_made
    console.print(
        f"Salesforce now holds {len(sf.records('Lead')):,} Leads, "
        f"{len(sf.records('Contact')):,} Contacts and {len(sf.records('Task')):,} Tasks; "
        f"{linked:,} of {len(prospects):,} prospects carry a Salesforce id."
    )
    console.print(
        f"API calls: Salesforce {calls.get('salesforce', 0):,}, Pardot {calls.get('pardot', 0):,}"
        f" in {wall_s:.1f} s.",
        markup=False,
    )
    console.print(
        "Why was each decision made? "
        f"SYNCD_DATABASE__URL={rt.settings.database.url} syncd history <prospect id>",
        markup=False,
        highlight=False,
    )


def _user_edits(world: World, rng: Random) -> str:
    """A simulated user changes something on one side; returns what, for the console."""
    prospects = [p for p in world.pardot.prospects() if p.get("salesforceId")]
    if not prospects:
        return "nothing to edit yet"
    p = rng.choice(prospects)
    if rng.random() < 0.5:
        title = rng.choice(["VP Sales", "Director", "Architect", "CEO", "Consultant"])
        world.pardot.edit_prospect(p["id"], {"jobTitle": title, "score": rng.randrange(200)})
        return f"a marketer edited prospect {p['id']} in Pardot (jobTitle={title!r}, score)"
    crm_id = p["salesforceId"]
    sobject = "Contact" if crm_id.startswith("003") else "Lead"
    phone = f"+1 555 {rng.randrange(1000, 9999)}"
    world.salesforce.modify(sobject, crm_id, {"Phone": phone})
    return f"a rep changed the phone of {sobject} {crm_id} in Salesforce to {phone}"


async def run(args: argparse.Namespace, settings: Settings | None) -> int:
    console = Console()
    logs.configure("warning")
    n = max(10, int(args.prospects))
    console.print(f"[bold]syncd demo[/]: generating {n:,} prospects and their CRM twins ...")
    world = World(generate_seed(n))
    url = args.database or f"sqlite+aiosqlite:///{DEFAULT_DB}"
    if not args.database:
        _fresh_sqlite(url)
    demo_settings = _demo_settings(world, url)
    rt = await build_runtime(demo_settings, transports=world.transports())
    stats = RunStats()
    started = time.monotonic()
    web = await _serve_console(rt, console)
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            polling = progress.add_task("polling Pardot and Salesforce", total=None)
            polls = await Pollers(rt).poll_all()
            progress.update(polling, total=1, completed=1)
            syncing = progress.add_task("syncing prospects", total=polls.total_queued or 1)
            await _drain(rt, stats, progress, syncing)
        _summary(console, world, rt, stats, time.monotonic() - started)
        if args.once:
            return 0
        console.print(
            f"\nKeeping the sync running (a poll every {DEMO_POLL_INTERVAL_S:.0f} s); "
            "simulated users make changes. Ctrl-C to stop."
        )
        rng = Random(11)
        while True:
            await asyncio.sleep(DEMO_POLL_INTERVAL_S)
            console.print(f"  {_user_edits(world, rng)}")
            before = stats.crm_fields + stats.pardot_fields
            await Pollers(rt).poll_all()
            await _drain(rt, stats, None, None)
            console.print(
                f"  synced: {stats.crm_fields + stats.pardot_fields - before} field(s) updated"
            )
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("stopped.")
        return 0
    finally:
        if web is not None:
            await web.aclose()
        await rt.aclose()
