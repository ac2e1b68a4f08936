"""Schema migrations: run the Alembic history (shipped as `syncd.migrations`) from code.

No alembic.ini: the Config is built here, and the script directory is found with
`importlib.resources`, so migrations run the same from a checkout and from an installed wheel.
An upgrade runs in ONE transaction (PostgreSQL and SQLite both have transactional DDL) under a
lock (a PostgreSQL advisory lock, SQLite's write lock via BEGIN IMMEDIATE), so two processes
starting together with `auto_migrate` neither collide nor half-migrate.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from syncd import logs
from syncd.errors import StoreError
from syncd.store import engine as engines

log = logs.get(__name__)

# pg_advisory_xact_lock key for migrations: "syncd" as ASCII bytes.
MIGRATION_LOCK_KEY = 0x73796E6364


def script_location() -> Path:
    """The directory of the Alembic scripts (`migrations/` in a checkout)."""
    return Path(str(importlib.resources.files("syncd.migrations")))


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config built in code (the URL only matters to offline/CLI use)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head() -> str:
    """The newest revision this syncd knows."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if rev is None:  # pragma: no cover - the history ships with the package
        raise RuntimeError("the migration history is empty")
    return rev


def known_revisions() -> set[str]:
    """Every revision in the shipped history."""
    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def _current_sync(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade_sync(conn: Connection, cfg: Config) -> None:
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def current_on(conn: AsyncConnection) -> str | None:
    """The revision the database is at (None for an empty database)."""
    return await conn.run_sync(_current_sync)


async def upgrade_engine(engine: AsyncEngine) -> tuple[str | None, str]:
    """Bring the schema behind `engine` to head; returns (from, to) revisions."""
    target = head()
    async with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        before = await current_on(conn)
        if before is not None and before not in known_revisions():
            raise StoreError(
                f"the database schema is at revision {before}, which this syncd does not "
                "know (written by a newer syncd?): upgrade syncd before running it"
            )
        if before != target:
            await conn.run_sync(_upgrade_sync, alembic_config())
    if before != target:
        log.info("schema_migrated", from_revision=before, to_revision=target)
    return before, target


async def upgrade(url: str, *, busy_timeout_ms: int = 10_000) -> tuple[str | None, str]:
    """Bring the database at `url` to the newest schema; returns (from, to) revisions.

    Raises:
        StoreError: the database cannot be reached or written; the message says what to fix.
    """
    engine = engines.create_engine(url, busy_timeout_ms=busy_timeout_ms)
    try:
        return await upgrade_engine(engine)
    except engines.STORE_ERRORS as exc:
        raise engines.translate(exc, url) from exc
    finally:
        await engine.dispose()


async def current(url: str, *, busy_timeout_ms: int = 10_000) -> str | None:
    """The revision the database at `url` is at (None when never migrated)."""
    engine = engines.create_engine(url, busy_timeout_ms=busy_timeout_ms)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**{engines.SQLITE_BEGIN: "DEFERRED"})
            return await current_on(conn)
    except engines.STORE_ERRORS as exc:
        raise engines.translate(exc, url) from exc
    finally:
        await engine.dispose()
