"""Links: when the linked prospect was found in Pardot's recycle bin (`syncd status` shows them).

Revision ID: 0003_recycled
Revises: 0002_console
Create Date: 2026-12-04

`links.recycled_at` is set when a sync skips the prospect because it is in Pardot's recycle bin
(or syncd sent it there under `sync.crm_delete_action = "recycle"`) and cleared when it syncs
again after being restored. A partial index holds only the recycled links, so `syncd status`
counts them without reading the whole table. Batch mode on SQLite (env.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_recycled"
down_revision: str | None = "0002_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recycled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_links_recycled",
            ["prospect_id"],
            unique=False,
            sqlite_where=sa.text("recycled_at IS NOT NULL"),
            postgresql_where=sa.text("recycled_at IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_recycled")
        batch_op.drop_column("recycled_at")
