"""`syncd check`: config valid, database reachable and migrated, a `syncd run` heartbeat fresh.

The container HEALTHCHECK and a monitoring probe: exit 0 when healthy, 1 otherwise, with ONE line
saying what is wrong (or what is fine); `--json` prints `{"healthy": ..., "message": ...}` on
stdout instead (same exit status). A live daemon whose login is being refused is unhealthy:
`syncd run` keeps that state in the store beside its heartbeat (`syncd.runtime.login`).
It reads the store only: no API call, no write, and a
missing SQLite file is reported rather than created. Settings are loaded here rather than by the
CLI so that bad configuration is exit 1 too (Docker reserves exit 2 for health checks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from syncd import logs
from syncd.errors import ConfigError, StoreError
from syncd.runtime.login import LOGIN_FAILING_KV
from syncd.runtime.snapshot import RUN_ROLE, read_snapshot
from syncd.settings import Settings, load_settings
from syncd.store import Store
from syncd.store import engine as engines

CHECK_TIMEOUT_S = 10.0


async def _login_failing(store: Store) -> dict[str, Any] | None:
    """The failing-login entry a live `syncd run` keeps in the store, if any."""
    async with store.read() as tx:
        value = await store.kv.get(tx, LOGIN_FAILING_KV)
    return value if isinstance(value, dict) else None


async def run(args: argparse.Namespace, settings: Settings | None) -> int:
    problem, ok_line = await _check(args, settings)
    if getattr(args, "json", False):
        healthy = problem is None
        print(json.dumps({"healthy": healthy, "message": ok_line if healthy else problem}))
        return 0 if healthy else 1
    if problem is not None:
        print(f"syncd check: {problem}", file=sys.stderr)
        return 1
    print(ok_line)
    return 0


async def _check(args: argparse.Namespace, settings: Settings | None) -> tuple[str | None, str]:
    try:
        settings = settings or load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        first = str(exc).replace("\n", " ").replace("   ", " ")
        return f"configuration invalid: {first}", ""
    logs.configure(settings.log.level, settings.log.format)
    url = settings.database.url
    path = engines.sqlite_file(url)
    if path is not None and not path.is_file():
        return f"database file {path.resolve()} does not exist: start `syncd run` here", ""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await _check_store(settings)
    except TimeoutError:
        return f"database did not answer within {CHECK_TIMEOUT_S:.0f} s", ""
    except StoreError as exc:
        return f"store error: {logs.redact(str(exc))}", ""


async def _check_store(settings: Settings) -> tuple[str | None, str]:
    store = await Store.open(
        settings.database.url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        migrate=False,
        check_schema=False,
    )
    try:
        # The schema first: an empty (reachable) database has no tables for the snapshot.
        current, head = await store.migration_state()
        if current != head:
            return (
                f"database not migrated: schema at {current or 'none (empty)'}, this syncd "
                f"needs {head}: run `syncd migrate` (or start `syncd run` with "
                "database.auto_migrate)",
                "",
            )
        stale_s = settings.ops.heartbeat_stale_s
        snap = await read_snapshot(store, now=datetime.now(UTC), stale_s=stale_s)
        failing = await _login_failing(store)
    finally:
        await store.aclose()
    live = snap.live(RUN_ROLE)
    if not live:
        runs = [h for h in snap.processes if h.role == RUN_ROLE]
        if not runs:
            return "no `syncd run` heartbeat: the daemon is not running on this database", ""
        age_s = (snap.now - runs[0].last_beat_at).total_seconds()
        return (
            f"`syncd run` heartbeat is stale: last beat {age_s:.0f} s ago (limit "
            f"{stale_s:.0f} s, ops.heartbeat_stale_s) from {runs[0].host} pid {runs[0].pid}",
            "",
        )
    if failing is not None and failing.get("process_id") in {h.process_id for h in live}:
        return (
            f"login refused: {failing.get('system')} refused syncd's login "
            f"{failing.get('refusals')} time(s) in a row since {failing.get('since')} "
            f"({failing.get('code')}: {failing.get('message')}); fix the credentials",
            "",
        )
    freshest = (snap.now - live[0].last_beat_at).total_seconds()
    return None, (
        f"ok: schema {snap.schema_current}, {len(live)} live `syncd run` process(es), "
        f"freshest heartbeat {freshest:.0f} s ago"
    )
