"""Engine setup and database failures: SQLite pragmas and BEGIN IMMEDIATE, PostgreSQL, StoreError.

SQLite (`sqlite+aiosqlite:///path`, relative to the working directory):
- the file is created with mode 0600 before SQLite touches it (it holds refresh tokens and
  personal data); a missing or unwritable directory is a `StoreError` naming the path;
- WAL journal, `busy_timeout`, foreign keys on, `synchronous=FULL` (a committed queue item or
  cursor survives power loss, not just a crash);
- the driver's own transaction handling is switched off and SQLAlchemy emits BEGIN itself
  (SQLAlchemy's documented aiosqlite recipe): write transactions start with `BEGIN IMMEDIATE`,
  so the write lock is taken up front and two claimers queue on the busy timeout instead of
  reading the same due rows and failing (or double-claiming) on lock upgrade. Reads use a plain
  (deferred) BEGIN and never wait for writers in WAL mode.

PostgreSQL (`postgresql+asyncpg://`): `lock_timeout` follows `busy_timeout_ms`; pre-ping.

`translate` turns a driver exception into a `StoreError` whose message says what to fix, and
`is_transient` says whether trying again can help (lock timeout, connection reset, deadlock).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from syncd.errors import StoreError

# Execution option read by the begin hook: "IMMEDIATE" (default) or "DEFERRED".
SQLITE_BEGIN = "syncd_sqlite_begin"

# PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock, lock timeout,
# admin shutdown / crash recovery, and the connection-exception class.
_PG_TRANSIENT = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
_PG_TRANSIENT_CLASS = "08"


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory or non-SQLite URLs)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    db = u.database or ""
    if db in ("", ":memory:") or db.startswith("file:"):
        return None
    return Path(db)


def prepare_sqlite_file(path: Path) -> None:
    """Create the database file with mode 0600 if it does not exist; check its directory.

    Raises:
        StoreError: the directory is missing or not writable (SQLite also needs to create the
            `-wal` and `-shm` files beside the database), or the file cannot be opened.
    """
    parent = path.parent if str(path.parent) else Path(".")
    where = parent.resolve()
    if not parent.is_dir():
        raise StoreError(
            f"the directory of the SQLite database does not exist: {where}; create it "
            "or point database.url (SYNCD_DATABASE__URL) at a writable location"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"the directory of the SQLite database is not writable: {where}; SQLite writes "
            "its -wal and -shm files there: give the syncd user write access or change "
            "database.url (SYNCD_DATABASE__URL)"
        )
    try:
        # O_EXCL: only a file we create gets our mode; an existing file keeps the owner's.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(
                f"the SQLite database {path.resolve()} is not readable and writable by this "
                "user; fix its owner or mode (0600 recommended)"
            ) from None
        return
    except OSError as exc:
        raise StoreError(
            f"cannot create the SQLite database {path.resolve()}: {exc.strerror}; check the "
            "path and permissions or change database.url (SYNCD_DATABASE__URL)"
        ) from None
    os.close(fd)


def create_engine(url: str, *, busy_timeout_ms: int = 10_000) -> AsyncEngine:
    """An `AsyncEngine` for a `sqlite+aiosqlite://` or `postgresql+asyncpg://` URL.

    For a SQLite file the file is created first (mode 0600). Raises `StoreError` for an
    unusable path or an unsupported URL.
    """
    try:
        u = make_url(url)
    except SQLAlchemyError as exc:
        raise StoreError(f"database.url is not a valid URL: {exc}") from None
    backend, driver = u.get_backend_name(), u.get_driver_name()
    if backend == "sqlite" and driver == "aiosqlite":
        path = sqlite_file(u)
        if path is not None:
            prepare_sqlite_file(path)
        return _sqlite_engine(u, busy_timeout_ms)
    if backend == "postgresql" and driver == "asyncpg":
        return create_async_engine(
            u,
            pool_pre_ping=True,
            connect_args={
                "server_settings": {
                    "application_name": "syncd",
                    "lock_timeout": str(int(busy_timeout_ms)),
                },
            },
        )
    raise StoreError(
        f"unsupported database URL scheme {u.drivername!r}: use sqlite+aiosqlite:///syncd.db "
        "or postgresql+asyncpg://user@host/db in database.url"
    )


# Prepared statements each SQLite connection keeps (sqlite3's default is 128). The store's
# `IN (...)` lists have as many placeholders as ids, so each length is a statement of its own,
# up to ~150 KB for 1,000 ids: 128 of them held ~18 MB a connection, and with the pool's
# connections that was most of the growth of a 500,000-prospect backfill's memory (the
# connections' malloc arenas grew from 8 to 20 MB each). Re-preparing costs microseconds.
SQLITE_STATEMENT_CACHE = 16


def _sqlite_engine(u: URL, busy_timeout_ms: int) -> AsyncEngine:
    engine = create_async_engine(
        u,
        connect_args={
            # sqlite3's own busy handler; the PRAGMA below says the same in milliseconds.
            "timeout": busy_timeout_ms / 1000,
            "cached_statements": SQLITE_STATEMENT_CACHE,
        },
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the driver from issuing BEGIN itself; the "begin" hook below does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    return engine


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None) or exc
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _sqlite_busy(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def is_transient(exc: BaseException) -> bool:
    """True when trying the same transaction again may succeed."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return True
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.OperationalError) or (
        orig is not None and type(orig).__module__.startswith("sqlalchemy.dialects.sqlite")
    ):
        return _sqlite_busy(exc)
    if isinstance(exc, DBAPIError):
        state = _sqlstate(exc)
        if state is not None:
            return state in _PG_TRANSIENT or state.startswith(_PG_TRANSIENT_CLASS)
        cause = getattr(orig, "__cause__", None)
        if isinstance(cause, ConnectionError | OSError):
            return True
        return _sqlite_busy(exc) if "sqlite" in type(orig).__module__ else False
    return False


def translate(exc: BaseException, url: str | URL) -> StoreError:
    """A `StoreError` saying what went wrong and what to do about it (no password shown)."""
    u = make_url(url)
    where = u.render_as_string(hide_password=True)
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else repr(exc)
    low = text.lower()
    state = _sqlstate(exc)
    if _sqlite_busy(exc) and u.get_backend_name() == "sqlite":
        return StoreError(
            f"database is locked by another process: {u.database}; another syncd (or a tool) "
            "holds the write lock longer than database.busy_timeout_ms: stop it, or use "
            "PostgreSQL for several processes"
        )
    if "no such table" in low or state == "42P01":
        return StoreError(f"the database {where} is not migrated ({text}): run `syncd migrate`")
    if "unable to open database file" in low or "readonly database" in low:
        return StoreError(
            f"cannot write the SQLite database {u.database}: {text}; check the file and its "
            "directory are writable by the syncd user"
        )
    if state == "3D000":
        return StoreError(f"the PostgreSQL database does not exist: {where}; create it first")
    if state in ("28P01", "28000"):
        return StoreError(f"PostgreSQL refused the login for {where}: check database.url")
    if state == "55P03":
        return StoreError(
            f"a PostgreSQL lock was held longer than database.busy_timeout_ms on {where}: {text}"
        )
    if isinstance(exc, OSError) or isinstance(getattr(exc, "orig", None), OSError):
        return StoreError(
            f"cannot connect to the database {where}: {text}; check database.url and that the "
            "server is running"
        )
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return StoreError(f"the connection to {where} was lost: {text}")
    return StoreError(f"database error on {where}: {text}")


STORE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)


def programming_error(exc: BaseException) -> BaseException | None:
    """The caller's own error wrapped by SQLAlchemy (a bad parameter), or None.

    A `ValueError` raised while binding a parameter (a naive datetime) is a bug in the calling
    code: it is re-raised as itself, not disguised as a database failure.
    """
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        orig = exc.orig
        if isinstance(orig, ValueError | TypeError):
            return orig
    return None
