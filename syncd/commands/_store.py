"""Opening the store for the read-only commands (`status`, `errors`, `history`) without creating it.

`Store.open` creates a missing SQLite file (the daemon needs that); a command that only reads
must not leave an empty `syncd.db` behind when `database.url` points at the wrong place, so it
says where it looked and what to run instead.
"""

from __future__ import annotations

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
