"""The dialect's own INSERT (with ON CONFLICT) for the store's upserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_for(dialect: str, table: Table) -> Any:
    """`INSERT` for `dialect` ("sqlite" or "postgresql") supporting `on_conflict_do_update`.

    Typed Any: the two dialects' Insert classes share the upsert API but no common base.
    """
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
