"""Engine setup: the SQLite file's mode; clear errors for bad paths, locks, unreachable servers."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from syncd.errors import StoreError
from syncd.store import NewItem, Reason, Store

from .conftest import T0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_sqlite_file_is_created_with_mode_0600(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/syncd.db", migrate=True)
    finally:
        os.umask(old)
    try:
        async with store.transaction() as tx:
            await store.kv.set(tx, "k", "v", now=T0)
        assert _mode(tmp_path / "syncd.db") == 0o600
        wal = tmp_path / "syncd.db-wal"
        assert wal.exists(), "WAL mode is on"
        assert _mode(wal) == 0o600  # SQLite gives its side files the database's mode
    finally:
        await store.aclose()


async def test_relative_sqlite_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await Store.open("sqlite+aiosqlite:///syncd.db", migrate=True)
    await store.aclose()
    assert (tmp_path / "syncd.db").is_file()


async def test_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    store = await Store.open(f"sqlite+aiosqlite:///{path}", migrate=True)
    await store.aclose()
    assert _mode(path) == 0o640


async def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist") as info:
        await Store.open(f"sqlite+aiosqlite:///{tmp_path}/nope/syncd.db")
    assert str(tmp_path / "nope") in str(info.value)
    assert "database.url" in str(info.value)


async def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/sys/syncd-test.db"  # even root cannot create files in sysfs
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = f"{locked}/syncd.db"
    with pytest.raises(StoreError, match=r"cannot create|not writable"):
        await Store.open(f"sqlite+aiosqlite:///{target}")


async def test_unsupported_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="sqlite\\+aiosqlite"):
        await Store.open("mysql+aiomysql://localhost/syncd")


async def test_sqlite_lock_held_by_another_process_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=50, migrate=True)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreError, match="database is locked by another process"):
            async with store.transaction() as tx:
                await store.queue.enqueue(tx, [NewItem.for_prospect(1, Reason.REPROCESS)], now=T0)
        # Readers never wait for the writer in WAL mode.
        async with store.read() as tx:
            assert (await store.queue.counts(tx, now=T0)).pending == 0
        other.execute("ROLLBACK")
        async with store.transaction() as tx:
            await store.queue.enqueue(tx, [NewItem.for_prospect(1, Reason.REPROCESS)], now=T0)
    finally:
        other.close()
        await store.aclose()


async def test_a_short_lock_is_waited_out(tmp_path: Path) -> None:
    """A writer holding the lock briefly costs a wait, not an error (busy timeout + retries)."""
    import asyncio

    path = tmp_path / "syncd.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=2_000, migrate=True)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, other.execute, "COMMIT")
        async with store.transaction() as tx:
            await store.kv.set(tx, "k", 1, now=T0)
        async with store.read() as tx:
            assert await store.kv.get(tx, "k") == 1
    finally:
        other.close()
        await store.aclose()


@pytest.mark.postgres
async def test_unreachable_postgres_is_explained() -> None:
    with pytest.raises(StoreError, match="cannot connect") as info:
        await Store.open("postgresql+asyncpg://syncd:s3cret-pw@127.0.0.1:1/syncd")
    assert "s3cret-pw" not in str(info.value)


@pytest.mark.postgres
async def test_missing_postgres_database_is_explained(pg_admin_url: str) -> None:
    base = pg_admin_url.rpartition("/")[0]
    with pytest.raises(StoreError, match="does not exist"):
        await Store.open(f"{base}/syncd_no_such_db")
