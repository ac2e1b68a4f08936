"""One Alembic history for both databases: it migrates an empty database and matches the models."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from syncd.commands import migrate as migrate_command
from syncd.errors import StoreError
from syncd.settings import Settings
from syncd.store import Store, migrate
from syncd.store.engine import create_engine
from syncd.store.tables import metadata


def _diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


async def test_migrate_up_from_empty_then_no_op(db_url: str) -> None:
    assert await migrate.current(db_url) is None
    assert await migrate.upgrade(db_url) == (None, migrate.head())
    assert await migrate.current(db_url) == migrate.head()
    assert await migrate.upgrade(db_url) == (migrate.head(), migrate.head())
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert set(metadata.tables) <= names


async def test_models_match_the_migrated_schema(db_url: str) -> None:
    await migrate.upgrade(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == []


async def test_the_comparison_can_fail(db_url: str) -> None:
    """Guard for the test above: a schema missing an index is reported."""
    await migrate.upgrade(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DROP INDEX ix_links_email")
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert any("ix_links_email" in str(d) for d in diff)


async def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    await migrate.upgrade(db_url)
    engine = create_engine(db_url)

    def down(conn: Connection) -> None:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")

    try:
        async with engine.begin() as conn:
            await conn.run_sync(down)
    finally:
        await engine.dispose()
    assert await migrate.current(db_url) is None
    assert await migrate.upgrade(db_url) == (None, migrate.head())


async def test_open_refuses_an_unmigrated_database(db_url: str) -> None:
    with pytest.raises(StoreError, match="syncd migrate"):
        await Store.open(db_url)
    store = await Store.open(db_url, migrate=True)
    try:
        assert await store.migration_state() == (migrate.head(), migrate.head())
    finally:
        await store.aclose()


async def test_migrate_command_prints_from_and_to(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.model_validate({"database": {"url": db_url}})
    assert await migrate_command.run(argparse.Namespace(), settings) == 0
    out = capsys.readouterr().out.strip().splitlines()  # unconfigured structlog also prints here
    assert out[-1] == f"database schema migrated: empty -> {migrate.head()}"
    assert await migrate_command.run(argparse.Namespace(), settings) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"database schema is up to date (revision {migrate.head()})"
    )


def test_scripts_are_found_as_a_package_resource() -> None:
    location = migrate.script_location()
    assert (location / "env.py").is_file()
    assert (location / "script.py.mako").is_file()
    assert migrate.head() == "0003_recycled"


async def test_0003_keeps_the_links_of_a_0002_database(db_url: str) -> None:
    """A database at 0002 with links: 0003 adds `recycled_at` (empty) and keeps every row."""
    engine = create_engine(db_url)

    def to(revision: str) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

        return run

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0002_console"))
            await conn.exec_driver_sql(
                "INSERT INTO links (prospect_id, crm_type, crm_id, email, base, crm_deleted,"
                " synced_at, created_at, updated_at) VALUES (7, 'Lead', '00Q000000000001AAA',"
                " 'a@x.io', '{}', false, '2026-12-01 00:00:00+00:00',"
                " '2026-12-01 00:00:00+00:00', '2026-12-01 00:00:00+00:00')"
            )
    finally:
        await engine.dispose()
    assert await migrate.upgrade(db_url) == ("0002_console", migrate.head())
    store = await Store.open(db_url)
    try:
        async with store.read() as tx:
            links = await store.links.by_prospect_ids(tx, [7])
            assert await store.links.recycled(tx, limit=5) == (0, [])
    finally:
        await store.aclose()
    assert links[7].crm_id == "00Q000000000001AAA" and links[7].recycled_at is None
