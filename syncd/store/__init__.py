"""The sync-state store: queue, cursors, links, email activities, audit, API usage, heartbeats, kv.

SQLite (default, `sqlite+aiosqlite:///syncd.db`) for one process; PostgreSQL
(`postgresql+asyncpg://...`) for several processes or hosts. Nothing may be lost here: every
write happens in a transaction the caller controls, and the queue keeps an item until it is
completed or parked in the error queue.

Usage::

    store = await Store.open(settings.database.url,
                             busy_timeout_ms=settings.database.busy_timeout_ms, migrate=True)
    async with store.transaction() as tx:          # one atomic unit (BEGIN IMMEDIATE on SQLite)
        await store.queue.enqueue(tx, items, now=now)
        await store.cursors.save(tx, "pardot.prospects", cursor, now=now)
    async with store.read() as tx:                 # read-only; never waits for writers
        counts = await store.queue.counts(tx, now=now)
    items = await store.run(lambda tx: store.queue.claim(tx, worker_id=w, limit=200,
                                                         lease_s=300, now=now))
    await store.aclose()

Public surface (all repo methods take the connection first and keyword `now` where time matters;
no repository reads a clock):

- `Store.open(url, *, busy_timeout_ms=10_000, migrate=False, check_schema=True) -> Store`
- `store.transaction()` / `store.read()`: async context managers yielding an `AsyncConnection`
  in a transaction, committed on normal exit, rolled back on an exception. Opening retries
  transient failures (lock timeout, connection reset) a few times; DB failures surface as
  `StoreError` with a message saying what to fix.
- `store.run(fn, *, write=True)`: run `fn(tx)` in a transaction, retrying the WHOLE transaction
  on a transient failure (use it for self-contained units such as a claim).
- `store.migration_state() -> (current, head)`, `store.aclose()`, `store.engine`, `store.dialect`.
- `store.queue: QueueRepo` enqueue / claim / complete / extend / retry / fail / release / reap /
  reprocess / retry_errors / get / by_key / errors / counts (see `syncd.store.queue`).
- `store.cursors: CursorRepo` get / all / save.
- `store.links: LinkRepo` by_prospect_ids / by_crm_ids / by_emails / upsert_many / move /
  mark_crm_deleted / delete.
- `store.activities: ActivityRepo` reserve / mark_done / release / get / for_emails / pending_for.
- `store.audit: AuditRepo` append / history / history_for_crm.
- `store.usage: UsageRepo` add / last_24h / prune / record_org / org.
- `store.heartbeats: HeartbeatRepo` beat / touch / all / fresh / remove / prune.
- `store.kv: KvRepo` get / get_with_time / set / delete.
- `store.control: ControlRepo` paused / pause / resume (a side paused from the console).
- `store.console: ConsoleRepo` error_groups / errors_by_code / error_ids / revived / search /
  queue_items_of / activity / synced_per_bucket / actions / record_action.
- Values: `NewItem`, `QueueItem`, `ErrorItem` (= QueueItem in state error), `QueueCounts`,
  `Reason`, `State`, `Cursor`, `Link`, `Activity`, `ActivityKey`, `AuditLine`, `OrgUsage`,
  `Heartbeat`; key helpers `prospect_key`, `crm_key`, `email_key`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from syncd import logs
from syncd.errors import StoreError
from syncd.store import engine as engines
from syncd.store import migrate as migrations
from syncd.store.activities import ActivityKey, ActivityRepo
from syncd.store.audit import AuditRepo
from syncd.store.console import ConsoleRepo
from syncd.store.control import ControlRepo
from syncd.store.cursors import CursorRepo
from syncd.store.heartbeats import HeartbeatRepo
from syncd.store.kv import KvRepo
from syncd.store.links import LinkRepo
from syncd.store.models import (
    Activity,
    AuditLine,
    Cursor,
    Heartbeat,
    Link,
    NewItem,
    OrgUsage,
    QueueCounts,
    QueueItem,
    Reason,
    State,
    crm_key,
    email_key,
    prospect_key,
)
from syncd.store.queue import QueueRepo
from syncd.store.usage import UsageRepo

__all__ = [
    "Activity",
    "ActivityKey",
    "AuditLine",
    "Cursor",
    "ErrorItem",
    "Heartbeat",
    "Link",
    "NewItem",
    "OrgUsage",
    "QueueCounts",
    "QueueItem",
    "Reason",
    "State",
    "Store",
    "StoreError",
    "crm_key",
    "email_key",
    "prospect_key",
]

ErrorItem = QueueItem
T = TypeVar("T")
log = logs.get(__name__)

RETRY_ATTEMPTS = 4
RETRY_BASE_S = 0.05


class Store:
    """One database: an engine plus the repositories. Build it with `Store.open`."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect: str = engine.dialect.name
        self.queue = QueueRepo(self.dialect)
        self.cursors = CursorRepo(self.dialect)
        self.links = LinkRepo(self.dialect)
        self.activities = ActivityRepo(self.dialect)
        self.audit = AuditRepo()
        self.usage = UsageRepo(self.dialect)
        self.heartbeats = HeartbeatRepo(self.dialect)
        self.kv = KvRepo(self.dialect)
        self.control = ControlRepo(self.dialect)
        self.console = ConsoleRepo(self.dialect)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        busy_timeout_ms: int = 10_000,
        migrate: bool = False,
        check_schema: bool = True,
    ) -> Store:
        """Connect (creating a SQLite file with mode 0600) and optionally migrate to head.

        Args:
            url: `sqlite+aiosqlite:///path` (relative to the working directory) or
                `postgresql+asyncpg://user@host/db`.
            busy_timeout_ms: how long to wait for a lock (SQLite busy timeout, PostgreSQL
                lock_timeout) before the attempt counts as failed.
            migrate: bring the schema to head first (`database.auto_migrate`).
            check_schema: raise `StoreError` unless the schema is at head (after migrating).

        Raises:
            StoreError: unreachable, unwritable, locked or not migrated; says what to fix.
        """
        engine = engines.create_engine(url, busy_timeout_ms=busy_timeout_ms)
        store = cls(engine, url)
        try:
            if migrate:
                await store._with_retry(lambda: migrations.upgrade_engine(engine))
            if check_schema:
                current, head = await store.migration_state()
                if current != head:
                    raise StoreError(
                        f"the database schema is at revision {current or 'none (empty)'}, this "
                        f"syncd needs {head}: run `syncd migrate` (or set database.auto_migrate)"
                    )
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def migration_state(self) -> tuple[str | None, str]:
        """(the database's revision or None, the newest revision this syncd knows)."""
        async with self.read() as tx:
            current = await migrations.current_on(tx)
        return current, migrations.head()

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction: committed on exit, rolled back on an exception."""
        return self._transaction(write=True)

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A read transaction (deferred BEGIN on SQLite: it does not wait for writers)."""
        return self._transaction(write=False)

    async def run(self, fn: Callable[[AsyncConnection], Awaitable[T]], *, write: bool = True) -> T:
        """`await fn(tx)` in one transaction, retrying it whole on a transient failure."""

        async def once() -> T:
            async with self._transaction(write=write) as tx:
                return await fn(tx)

        return await self._with_retry(once)

    async def _with_retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                return await fn()
            except StoreError as exc:
                cause = exc.__cause__
                if attempt == RETRY_ATTEMPTS or cause is None or not engines.is_transient(cause):
                    raise
                await self._pause(attempt, cause)
            except engines.STORE_ERRORS as exc:
                if attempt == RETRY_ATTEMPTS or not engines.is_transient(exc):
                    raise engines.translate(exc, self.url) from exc
                await self._pause(attempt, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pause(self, attempt: int, exc: BaseException) -> None:
        log.warning("store_retry", attempt=attempt, error=type(exc).__name__)
        if self.dialect == "sqlite":
            # A task cancelled mid-transaction can leave an idle pooled connection still
            # holding SQLite's write lock (the driver finished its statement after the
            # cancellation). Closing the idle connections releases it; connections in use are
            # untouched, and a lock held by another process is unaffected.
            await self.engine.dispose(close=True)
            gc.collect()  # and an orphaned driver connection, once nothing references it
        await asyncio.sleep(RETRY_BASE_S * 2 ** (attempt - 1))

    async def _begin(self, write: bool) -> AsyncConnection:
        async def attempt() -> AsyncConnection:
            conn = await self.engine.connect()
            try:
                if not write and self.dialect == "sqlite":
                    conn = await conn.execution_options(**{engines.SQLITE_BEGIN: "DEFERRED"})
                await conn.begin()
            except BaseException as exc:
                await _end_quietly(conn, cancelled=not isinstance(exc, Exception))
                raise
            return conn

        return await self._with_retry(attempt)

    @asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        conn = await self._begin(write)
        try:
            try:
                yield conn
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    # Cancelled (or interrupted) mid-statement: the driver may still be running
                    # it, and a rollback can race it, leaving SQLite's write lock held by a
                    # pooled connection. Invalidating closes the driver connection for certain.
                    await _end_quietly(conn, cancelled=True)
                    raise
                await _rollback_quietly(conn)
                bug = engines.programming_error(exc)
                if bug is not None:  # e.g. a naive datetime: a bug to fix, not a DB failure
                    raise bug from exc
                if isinstance(exc, engines.STORE_ERRORS):
                    raise engines.translate(exc, self.url) from exc
                raise
            try:
                await conn.commit()
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    await _end_quietly(conn, cancelled=True)
                    raise
                if not isinstance(exc, engines.STORE_ERRORS):
                    raise
                await _rollback_quietly(conn)
                raise engines.translate(exc, self.url) from exc
        finally:
            await _close_quietly(conn)


async def _rollback_quietly(conn: AsyncConnection) -> None:
    try:
        await conn.rollback()
    except Exception:  # the connection is broken: drop it from the pool
        try:
            await conn.invalidate()
        except Exception:
            log.debug("store_invalidate_failed")


async def _end_quietly(conn: AsyncConnection, *, cancelled: bool) -> None:
    """Close a connection; after a cancellation, invalidate it so its driver connection (and any
    lock it holds) is closed, not returned to the pool. Shielded: it must finish even if the
    task is cancelled again."""

    async def end() -> None:
        try:
            if cancelled:
                await conn.invalidate()
            await conn.close()
        except Exception:
            log.debug("store_close_failed")

    await asyncio.shield(end())


async def _close_quietly(conn: AsyncConnection) -> None:
    try:
        await conn.close()
    except Exception:
        log.debug("store_close_failed")
