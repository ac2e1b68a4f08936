"""`syncd run`: the daemon. Build the runtime, serve until SIGTERM/SIGINT, stop gracefully.

The first SIGTERM or SIGINT stops claiming and lets in-flight items finish (or be released)
within `sync.shutdown_grace_s`, then exits 0; a second one stops at once (exit 128 + signal),
even on a store locked by another process (`syncd.runtime.signals`: the backstop). Refused
credentials end it with exit 2 and one `login refused` line (`syncd.runtime.login`).
Under systemd (`Type=notify`) it reports READY=1, STATUS=, STOPPING=1 and WATCHDOG=1.
"""

from __future__ import annotations

import argparse

from syncd import logs
from syncd.runtime.sdnotify import Notifier
from syncd.runtime.service import Service
from syncd.runtime.signals import StopSignals
from syncd.runtime.wiring import build_runtime
from syncd.runtime.worker import close_runtime
from syncd.settings import Settings

log = logs.get(__name__)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    notifier = Notifier()
    notifier.status("starting: opening the store")
    rt = await build_runtime(settings)
    try:
        service = Service(rt, notifier=notifier)
    except BaseException:
        await rt.aclose()
        raise
    # The handlers (and their backstop) cover the closing too: it may wait on the store.
    grace_s = settings.sync.shutdown_grace_s
    with StopSignals.for_stop(service.stop, backstop_grace_s=grace_s) as stops:
        try:
            stops.exit_code = await service.run()
            return stops.exit_code
        finally:
            await close_runtime(rt, service.stop)
