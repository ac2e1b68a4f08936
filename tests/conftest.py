"""Shared fixtures: a clean environment, the store URLs (SQLite file, fresh PostgreSQL db), and
the whole-run read-only check (`_written_check`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

# The whole-run check that no test makes syncd send a read-only Pardot field (issue 11).
from _written_check import (  # noqa: F401  (pytest hooks, found by name in this module)
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_unconfigure,
)

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PG_START_HINT = (
    "PostgreSQL is not reachable at {url}; start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or point SYNCD_TEST_POSTGRES_URL at a server"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's SYNCD_* settings (except the test database URL)."""
    for key in list(os.environ):
        if key.startswith("SYNCD_") and key != "SYNCD_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    yield


def postgres_admin_url() -> str:
    return os.environ.get("SYNCD_TEST_POSTGRES_URL", DEFAULT_PG)


async def _pg_reachable(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def require_postgres() -> str:
    """The admin URL, or skip (locally) / fail (CI=true) when PostgreSQL is not reachable."""
    url = postgres_admin_url()
    # In a thread: this also runs from async fixtures, where asyncio.run() would refuse.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reachable = pool.submit(asyncio.run, _pg_reachable(url)).result()
    if not reachable:
        msg = PG_START_HINT.format(url=url)
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return url


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return require_postgres()


async def create_database(admin_url: str) -> str:
    """Create a uniquely named empty database on the admin URL's server; returns its URL."""
    import asyncpg

    name = f"syncd_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


async def drop_database(admin_url: str, url: str) -> None:
    import asyncpg

    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    url = await create_database(pg_admin_url)
    yield url
    await drop_database(pg_admin_url, url)


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    """A SQLite database file in the test's own directory."""
    return f"sqlite+aiosqlite:///{tmp_path}/syncd.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> AsyncIterator[str]:
    """Each store test runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/syncd.db"
        return
    admin = require_postgres()
    url = await create_database(admin)
    yield url
    await drop_database(admin, url)
