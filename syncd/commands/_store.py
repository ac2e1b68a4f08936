"""The store as the commands meet it: read-only opens that create nothing, and `run`'s lock.

`Store.open` creates a missing SQLite file (the daemon needs that); a command that only reads
(`status`, `errors`, `history`) must not leave an empty `syncd.db` behind when `database.url`
points at the wrong place, so it says where it looked and what to run instead. `RunLock` keeps a
second `syncd run` off a SQLite database that one already serves.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from syncd.errors import StoreError
from syncd.settings import Settings
from syncd.store import Store
from syncd.store import engine as engines


def shown_url(url: str) -> str:
    """The database URL with any password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


async def open_existing_store(settings: Settings) -> Store:
    """The migrated store named by `database.url`; never creates or migrates it.

    Raises:
        StoreError: no SQLite file there, the database is unreachable, or not migrated.
    """
    url = settings.database.url
    path = engines.sqlite_file(url)
    if path is not None and not path.is_file():
        raise StoreError(
            f"no database at {path.resolve()}: run `syncd migrate` (or start `syncd run`) "
            "first, or point database.url (SYNCD_DATABASE__URL) at the existing database"
        )
    return await Store.open(
        url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        migrate=False,
        check_schema=True,
    )


class RunLock:
    """An exclusive lock that one `syncd run` holds on its SQLite database for its lifetime.

    SQLite serves one daemon: a second `syncd run` on the same file would poll every feed twice
    and fight the first for the write lock. The lock is `flock` on a small file beside the
    database (`<database>-run.lock`, mode 0600, holding the holder's pid for the message); the
    kernel releases it when the process ends, however it ends, so it is never stale. Not on
    the database file itself: on NFS `flock` is emulated with the byte-range locks SQLite uses.
    PostgreSQL needs no such lock: several `syncd run` processes on one database is the
    scale-out design.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, url: str) -> RunLock | None:
        """Take the lock for the SQLite database at `url` (None for PostgreSQL).

        Raises:
            StoreError: another process holds it; the message names its pid and the way out.
        """
        db = engines.sqlite_file(url)
        if db is None:
            return None
        path = db.with_name(db.name + "-run.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None  # an unwritable directory: Store.open says so, with the fix
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"another `syncd run` (pid {holder}) is already running on the SQLite database "
                f"{db.resolve()}; a SQLite store serves one daemon: stop the other one first, "
                "or use PostgreSQL (database.url) to run several"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        """Let go of the lock (the file stays: removing it would race with a new holder)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
