"""`syncd migrate`: bring the database schema to the newest revision and say what changed."""

from __future__ import annotations

import argparse

from syncd.settings import Settings
from syncd.store import migrate


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Upgrade the configured database to head; prints `from -> to` (exit 0)."""
    before, after = await migrate.upgrade(
        settings.database.url, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    if before == after:
        print(f"database schema is up to date (revision {after})")
    else:
        print(f"database schema migrated: {before or 'empty'} -> {after}")
    return 0
