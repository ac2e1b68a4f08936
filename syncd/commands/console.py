"""`syncd console [--listen H:P]`: the web console and its JSON API from the store alone.

No pollers, no workers, no API calls: it reads (and, for the console's actions, writes) the
store, so it can watch a fleet of workers sharing one PostgreSQL, or a stopped daemon's state.
`--listen` overrides `ops.listen` (default 127.0.0.1:9108). Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from syncd import logs
from syncd.runtime.metrics import SyncdMetrics
from syncd.runtime.ops import Check, OpsHandlers, OpsServer, parse_listen
from syncd.runtime.snapshot import read_snapshot
from syncd.runtime.wiring import open_store, utc_now
from syncd.settings import Settings
from syncd.store import Store
from syncd.web.app import build_app
from syncd.web.views import ConsoleContext

log = logs.get(__name__)
DEFAULT_LISTEN = "127.0.0.1:9108"


def handlers_for(store: Store, settings: Settings) -> OpsHandlers:
    """/healthz, /readyz and /metrics of a console with no daemon: judged from the store."""
    metrics = SyncdMetrics()

    def healthz() -> Check:
        return Check(True, {"mode": "console"})

    async def readyz() -> Check:
        try:
            async with asyncio.timeout(5.0):
                current, head = await store.migration_state()
        except Exception as exc:
            return Check(False, {"store": f"unreachable: {type(exc).__name__}"})
        ok = current == head
        return Check(ok, {"store": "ok" if ok else f"schema {current}, needs {head}"})

    async def render() -> str:
        now = utc_now()
        snap = await read_snapshot(store, now=now, stale_s=settings.ops.heartbeat_stale_s)
        q = snap.queue
        metrics.queue_items.replace(
            [({"state": s}, n) for s, n in
             (("pending", q.pending), ("claimed", q.claimed), ("error", q.error))]
        )  # fmt: skip
        metrics.oldest_pending_age.set(snap.oldest_pending_age_s() or 0.0)
        metrics.poll_lag.replace([({"feed": f.feed}, f.lag_s(now)) for f in snap.feeds])
        metrics.live_processes.set(len(snap.live()))
        return metrics.render()

    return OpsHandlers(healthz, readyz, render)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    listen = args.listen or settings.ops.listen or DEFAULT_LISTEN
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        sys.stderr.write(f"syncd console: {exc}\n")
        return 2
    store = await open_store(settings, migrate=False)
    try:
        handlers = handlers_for(store, settings)
        ctx = ConsoleContext(
            store=store, settings=settings, clock=utc_now, handlers=handlers, mode="console"
        )
        server = OpsServer(
            handlers,
            host=host,
            port=port,
            app=build_app(ctx),
            warm_up=ctx.warm_up,
            tls=settings.ops.tls(),
            trusted_proxies=settings.ops.proxies(),
        )
        try:
            await server.start()
        except OSError as exc:
            sys.stderr.write(
                f"syncd console: cannot listen on {listen} ({exc.strerror}); choose a free "
                "port with --listen\n"
            )
            return 2
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if settings.ops.tls() else "http"
        sys.stdout.write(f"syncd console on {scheme}://{shown}:{server.port}/\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            await server.aclose()
        log.info("console_stopped")
        return 0
    finally:
        await store.aclose()
