"""Alembic environment for syncd: one history for SQLite and PostgreSQL, async engines.

syncd runs migrations in code (`syncd migrate`, `syncd.store.migrate.upgrade`): it opens the
connection itself, takes the migration lock and passes the connection in
`config.attributes["connection"]`. Without one (a developer running `alembic` by hand with
`sqlalchemy.url` set), this file opens an async engine itself. SQLite uses batch mode
(copy-and-move), since it cannot ALTER most things in place.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from syncd.store.engine import create_engine
from syncd.store.tables import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=False,
    )


def run_migrations(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=bool(url and url.startswith("sqlite")),
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online_async() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url (or use `syncd migrate`, which sets it)")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(run_migrations)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    run_migrations(shared)
else:
    asyncio.run(run_online_async())
