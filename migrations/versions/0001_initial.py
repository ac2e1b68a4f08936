"""Initial schema: queue, cursors, links, email activities, audit, API usage, heartbeats, kv.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Written for both databases: SQLite gets the partial indexes through `sqlite_where`, PostgreSQL
through `postgresql_where`. Datetimes are `timestamptz` on PostgreSQL and UTC text on SQLite
(see `syncd.store.tables.UTCDateTime`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activities_synced",
        sa.Column("email_id", sa.BigInteger(), nullable=False),
        sa.Column("crm_id", sa.String(length=18), nullable=False),
        sa.Column("prospect_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=18), nullable=True),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'done')", name=op.f("ck_activities_synced_state")),
        sa.PrimaryKeyConstraint("email_id", "crm_id", name=op.f("pk_activities_synced")),
    )
    with op.batch_alter_table("activities_synced", schema=None) as batch_op:
        batch_op.create_index(
            "ix_activities_synced_pending", ["state", "reserved_at"], unique=False
        )

    op.create_table(
        "api_limits",
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("system", name=op.f("pk_api_limits")),
    )
    op.create_table(
        "api_usage",
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("system", "hour", name=op.f("pk_api_usage")),
    )
    op.create_table(
        "audit_lines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("prospect_id", sa.BigInteger(), nullable=True),
        sa.Column("crm_id", sa.String(length=18), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=True),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        sa.Column("policy", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_lines")),
    )
    with op.batch_alter_table("audit_lines", schema=None) as batch_op:
        batch_op.create_index("ix_audit_lines_crm", ["crm_id", "id"], unique=False)
        batch_op.create_index("ix_audit_lines_prospect", ["prospect_id", "id"], unique=False)

    op.create_table(
        "feed_cursors",
        sa.Column("feed", sa.String(length=100), nullable=False),
        sa.Column("position", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_id", sa.String(length=100), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("feed", name=op.f("pk_feed_cursors")),
    )
    op.create_table(
        "kv",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_kv")),
    )
    op.create_table(
        "links",
        sa.Column("prospect_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("crm_type", sa.String(length=16), nullable=False),
        sa.Column("crm_id", sa.String(length=18), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("crm_deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("crm_type IN ('Lead', 'Contact')", name=op.f("ck_links_crm_type")),
        sa.PrimaryKeyConstraint("prospect_id", name=op.f("pk_links")),
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_index("ix_links_crm_id", ["crm_id"], unique=False)
        batch_op.create_index("ix_links_email", ["email"], unique=False)

    op.create_table(
        "queue_items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("prospect_id", sa.BigInteger(), nullable=True),
        sa.Column("crm_id", sa.String(length=18), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("reasons", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("last_error_code", sa.String(length=100), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'claimed', 'error')", name=op.f("ck_queue_items_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_items")),
    )
    with op.batch_alter_table("queue_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_items_due",
            ["available_at", "id"],
            unique=False,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index(
            "ix_queue_items_lease",
            ["lease_until"],
            unique=False,
            sqlite_where=sa.text("state = 'claimed'"),
            postgresql_where=sa.text("state = 'claimed'"),
        )
        batch_op.create_index("ix_queue_items_prospect_id", ["prospect_id"], unique=False)
        batch_op.create_index("ix_queue_items_state", ["state"], unique=False)
        batch_op.create_index(
            "uq_queue_items_claimed_key",
            ["key"],
            unique=True,
            sqlite_where=sa.text("state = 'claimed'"),
            postgresql_where=sa.text("state = 'claimed'"),
        )
        batch_op.create_index(
            "uq_queue_items_waiting_key",
            ["key"],
            unique=True,
            sqlite_where=sa.text("state IN ('pending', 'error')"),
            postgresql_where=sa.text("state IN ('pending', 'error')"),
        )

    op.create_table(
        "worker_heartbeats",
        sa.Column("process_id", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("process_id", name=op.f("pk_worker_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
    op.drop_table("queue_items")
    op.drop_table("links")
    op.drop_table("kv")
    op.drop_table("feed_cursors")
    op.drop_table("audit_lines")
    op.drop_table("api_usage")
    op.drop_table("api_limits")
    op.drop_table("activities_synced")
