"""`syncd demo [--once]`: both simulators in-process with generated data, the daemon on SQLite.

The first thing a newcomer runs (`make run`). It builds a realistic world (see
`syncd.simulators.generate`), points a real syncd runtime at the simulators through in-process
transports, polls every feed, drains the queue with a progress bar, and prints what it did, checked
against what the simulated Salesforce and Pardot now hold. Without `--once` it then keeps going:
every few seconds a simulated user edits a prospect or a CRM record, and syncd syncs it, until
Ctrl-C.

The drain is `syncd.runtime.worker` in burst mode, as in `syncd once` and `syncd run`: the same
failure handling and the same stop. The first Ctrl-C (or SIGTERM) lets the batches in flight
finish within `DEMO_GRACE_S`, then releases them; a second one stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from random import Random
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from syncd import logs
from syncd.commands import console as console_command
from syncd.runtime.ops import OpsServer, parse_listen
from syncd.runtime.pipeline import RunStats, Work
from syncd.runtime.pollers import Pollers
from syncd.runtime.signals import Stop, StopSignals
from syncd.runtime.wiring import Runtime, build_runtime
from syncd.runtime.worker import (
    Worker,
    close_runtime,
    run_workers,
    unless_stopped,
    wait_any,
)
from syncd.settings import Settings
from syncd.simulators.generate import Shape, generate_seed
from syncd.simulators.world import World
from syncd.web.app import build_app
from syncd.web.views import ConsoleContext

DEFAULT_DB = "demo.db"
DEMO_POLL_INTERVAL_S = 5.0
DEMO_WORKERS = 2
DEMO_GRACE_S = 10.0  # the first Ctrl-C waits this long for the batches in flight
DEMO_LISTEN = "127.0.0.1:9108"


def _demo_settings(world: World, database_url: str) -> Settings:
    overrides: dict[str, Any] = world.settings_overrides()
    overrides["database"] = {"url": database_url}
    overrides["sync"] = {
        "poll_interval_s": DEMO_POLL_INTERVAL_S,
        "workers": DEMO_WORKERS,
        "shutdown_grace_s": DEMO_GRACE_S,
    }
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


async def _drain(
    rt: Runtime, stats: RunStats, stop: Stop, progress: Progress | None, task: Any
) -> None:
    """Burst workers until nothing is due (or a stop), advancing the progress bar."""
    # The bar counts what the summary table counts (queue items processed, `stats.items`):
    # items queued during the drain (follow-ups, records the sync itself touched) grow the
    # total instead of leaving the bar short of the table.
    total = await _pending(rt)
    before = stats.items
    if progress is not None:
        progress.update(task, total=total, completed=0)

    def settled(_works: Sequence[Work], _retried: int, _failed: int) -> None:
        nonlocal total
        done = stats.items - before
        total = max(total, done)
        if progress is not None:
            progress.update(task, total=total, completed=done)

    workers = [
        Worker(rt, worker_id=f"demo-{n}", stop=stop, burst=True, stats=stats, on_settled=settled)
        for n in range(DEMO_WORKERS)
    ]
    await run_workers(workers, stop, grace_s=rt.settings.sync.shutdown_grace_s)
    if progress is not None and not stop.is_requested:
        done = stats.items - before
        progress.update(task, total=done, completed=done)


def _syncd_command() -> str:
    """How the reader runs syncd from here: the executable that is running now, as a path."""
    exe = Path(sys.argv[0])
    if exe.name != "syncd" or not exe.is_file():
        candidate = Path(sys.executable).parent / "syncd"
        if not candidate.is_file():
            return f"{shlex.quote(sys.executable)} -m syncd"
        exe = candidate
    exe = Path(os.path.abspath(exe))  # not resolve(): keep the path through a symlinked venv
    try:
        shown = str(exe.relative_to(Path.cwd()))
    except ValueError:
        return shlex.quote(str(exe))
    return shlex.quote(shown if "/" in shown else f"./{shown}")


async def _example_prospect(rt: Runtime, world: World) -> int | None:
    """A prospect this run linked (one that got a new Lead if any), for the closing hint."""
    ids = sorted(int(p["id"]) for p in world.pardot.prospects())[:500]
    async with rt.store.read() as tx:
        links = await rt.store.links.by_prospect_ids(tx, ids)
    if not links:
        return None
    return next((i for i, link in links.items() if link.crm_type == "Lead"), min(links))


async def _links(rt: Runtime, limit: int) -> list[tuple[int, str]]:
    """Live links from syncd's store: the one source of truth for prospect <-> CRM record (the
    prospect's own link fields are read-only in Pardot and never written: RULES.md 2a)."""
    async with rt.store.read() as tx:
        return await rt.store.links.live(tx, limit=limit)


async def _summary(
    console: Console, world: World, rt: Runtime, stats: RunStats, wall_s: float
) -> None:
    sf, pd = world.salesforce, world.pardot
    prospects = pd.prospects()
    linked = len(await _links(rt, len(prospects) + 1))
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
        f"syncd's store links {linked:,} of {len(prospects):,} prospects to a CRM record."
    )
    console.print(
        f"API calls: Salesforce {calls.get('salesforce', 0):,}, Pardot {calls.get('pardot', 0):,}"
        f" in {wall_s:.1f} s.",
        markup=False,
    )


def _hint(console: Console, rt: Runtime, prospect_id: int | None) -> None:
    """A command the reader can paste as it is: the real executable and a real prospect id."""
    url = shlex.quote(rt.settings.database.url)
    syncd = _syncd_command()
    if prospect_id is None:
        console.print(f"See the store: SYNCD_DATABASE__URL={url} {syncd} status", markup=False)
        return
    console.print(
        f"Why was each decision made? Try:\n  SYNCD_DATABASE__URL={url} {syncd} history "
        f"{prospect_id}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


async def _user_edits(world: World, rt: Runtime, rng: Random) -> str:
    """A simulated user changes something on one side; returns what, for the console."""
    pairs = await _links(rt, 500)
    if not pairs:
        return "nothing to edit yet"
    prospect_id, crm_id = rng.choice(pairs)
    if rng.random() < 0.5:
        title = rng.choice(["VP Sales", "Director", "Architect", "CEO", "Consultant"])
        world.pardot.edit_prospect(prospect_id, {"jobTitle": title, "score": rng.randrange(200)})
        return f"a marketer edited prospect {prospect_id} in Pardot (jobTitle={title!r}, score)"
    sobject = "Contact" if crm_id.startswith("003") else "Lead"
    phone = f"+1 555 {rng.randrange(1000, 9999)}"
    world.salesforce.modify(sobject, crm_id, {"Phone": phone})
    return f"a rep changed the phone of {sobject} {crm_id} in Salesforce to {phone}"


async def run(args: argparse.Namespace, settings: Settings | None) -> int:
    console = Console()
    logs.configure("warning")
    n = max(10, int(args.prospects))
    console.print(f"[bold]syncd demo[/]: generating {n:,} prospects and their CRM twins ...")
    # The record life cycle is in the demo world too: merge losers, prospects in the recycle
    # bin, and opt-outs on one side only (5% each).
    world = World(generate_seed(n, shape=Shape.life_cycle()))
    url = args.database or f"sqlite+aiosqlite:///{DEFAULT_DB}"
    if not args.database:
        _fresh_sqlite(url)
    demo_settings = _demo_settings(world, url)
    stop = Stop()

    def graceful(sig: signal.Signals) -> None:
        console.print(
            f"stopping: finishing the batches in flight (up to {DEMO_GRACE_S:.0f} s); "
            "Ctrl-C again to stop at once"
        )
        stop.request(sig)

    with StopSignals(graceful, stop.force, backstop_grace_s=DEMO_GRACE_S) as stops:
        rt = await build_runtime(demo_settings, transports=world.transports())
        web = await _serve_console(rt, console)
        try:
            await _sync(args, console, world, rt, stop)
        except (KeyboardInterrupt, asyncio.CancelledError):
            stop.force()
        finally:
            if web is not None:
                await web.aclose()
            await close_runtime(rt, stop)
            stops.exit_code = stop.exit_code
    if stop.is_requested:
        console.print("stopped.")
    return stop.exit_code


async def _sync(
    args: argparse.Namespace, console: Console, world: World, rt: Runtime, stop: Stop
) -> None:
    """The first sync with a progress bar, then (without --once) simulated users until stopped."""
    stats = RunStats()
    started = time.monotonic()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        polling = progress.add_task("polling Pardot and Salesforce", total=None)
        polls = await unless_stopped(Pollers(rt).poll_all(), stop)
        if polls is None:
            return
        progress.update(polling, total=1, completed=1)
        syncing = progress.add_task("syncing prospects", total=polls.total_queued or 1)
        await _drain(rt, stats, stop, progress, syncing)
    if stop.is_requested:
        return
    await _summary(console, world, rt, stats, time.monotonic() - started)
    _hint(console, rt, await _example_prospect(rt, world))
    if args.once:
        return
    console.print(
        f"\nKeeping the sync running (a poll every {DEMO_POLL_INTERVAL_S:.0f} s); "
        "simulated users make changes. Ctrl-C to stop."
    )
    rng = Random(11)
    while True:
        await wait_any(stop.requested.wait(), timeout_s=DEMO_POLL_INTERVAL_S)
        if stop.requested.is_set():
            return
        console.print(f"  {await _user_edits(world, rt, rng)}")
        before = stats.crm_fields + stats.pardot_fields
        if await unless_stopped(Pollers(rt).poll_all(), stop) is None:
            return
        await _drain(rt, stats, stop, None, None)
        console.print(
            f"  synced: {stats.crm_fields + stats.pardot_fields - before} field(s) updated"
        )
