"""The store's schema: SQLAlchemy Core tables, the single source the Alembic history must match.

A test (tests/integration/store/test_migrations.py) checks that the migrated schema and these
tables agree on SQLite and PostgreSQL, so any change here needs a new revision in
`migrations/versions/`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

# Named constraints keep SQLite batch migrations (copy-and-move) able to address them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases.

    PostgreSQL stores `timestamptz`. SQLite has no time zones: the value is stored as naive UTC
    text in a fixed-width format, so text order is time order, and read back as aware UTC.
    A naive datetime is rejected: the store cannot guess what zone it meant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given to the store; pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
BigId = BigInteger().with_variant(Integer, "sqlite")
# SQL NULL for None, so `IS NULL` and COALESCE work on the column.
Json: Any = JSON(none_as_null=True)

CRM_ID = 18  # Salesforce ids are 15 (case-sensitive) or 18 characters
EMAIL = 320

queue_items = Table(
    "queue_items",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(400), nullable=False),
    Column("prospect_id", BigInteger),
    Column("crm_id", String(CRM_ID)),
    Column("email", String(EMAIL)),
    Column("reasons", Integer, nullable=False),
    Column("snapshot", Json),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("available_at", UTCDateTime, nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("enqueued_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime),
    Column("claimed_by", String(200)),
    Column("last_error_code", String(100)),
    Column("last_error_message", Text),
    Column("first_failed_at", UTCDateTime),
    Column("last_failed_at", UTCDateTime),
    CheckConstraint("state IN ('pending', 'claimed', 'error')", name="state"),
    # One waiting (pending or error) row per key: the target of the coalescing upsert.
    Index(
        "uq_queue_items_waiting_key",
        "key",
        unique=True,
        sqlite_where=text("state IN ('pending', 'error')"),
        postgresql_where=text("state IN ('pending', 'error')"),
    ),
    # At most one claimed row per key: two workers never hold one prospect.
    Index(
        "uq_queue_items_claimed_key",
        "key",
        unique=True,
        sqlite_where=text("state = 'claimed'"),
        postgresql_where=text("state = 'claimed'"),
    ),
    # The claim scan: due pending rows in order.
    Index(
        "ix_queue_items_due",
        "available_at",
        "id",
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
    # The reaper: claimed rows by lease end.
    Index(
        "ix_queue_items_lease",
        "lease_until",
        sqlite_where=text("state = 'claimed'"),
        postgresql_where=text("state = 'claimed'"),
    ),
    Index("ix_queue_items_state", "state"),
    Index("ix_queue_items_prospect_id", "prospect_id"),
)

feed_cursors = Table(
    "feed_cursors",
    metadata,
    Column("feed", String(100), primary_key=True),
    Column("position", UTCDateTime, nullable=False),
    Column("last_id", String(100)),
    Column("extra", Json),
    Column("updated_at", UTCDateTime, nullable=False),
)

links = Table(
    "links",
    metadata,
    Column("prospect_id", BigInteger, primary_key=True, autoincrement=False),
    Column("crm_type", String(16), nullable=False),
    Column("crm_id", String(CRM_ID), nullable=False),
    Column("email", String(EMAIL)),
    Column("base", Json, nullable=False),
    Column("crm_deleted", Boolean, nullable=False, server_default=text("false")),
    Column("synced_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Set while the prospect is in Pardot's recycle bin (found there by a sync, or sent there
    # under crm_delete_action = recycle); cleared when it syncs again (migration 0003).
    Column("recycled_at", UTCDateTime),
    CheckConstraint("crm_type IN ('Lead', 'Contact')", name="crm_type"),
    # Not unique: Pardot may hold two prospects with one email that match one CRM record.
    Index("ix_links_crm_id", "crm_id"),
    Index("ix_links_email", "email"),
    Index(
        "ix_links_recycled",
        "prospect_id",
        sqlite_where=text("recycled_at IS NOT NULL"),
        postgresql_where=text("recycled_at IS NOT NULL"),
    ),
)

activities_synced = Table(
    "activities_synced",
    metadata,
    Column("email_id", BigInteger, nullable=False),
    Column("crm_id", String(CRM_ID), nullable=False),
    Column("prospect_id", BigInteger),
    Column("state", String(16), nullable=False),
    Column("task_id", String(CRM_ID)),
    Column("reserved_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime),
    # A pending pair is being created by one worker until then; after it, anyone may take over.
    Column("held_until", UTCDateTime),
    PrimaryKeyConstraint("email_id", "crm_id"),
    CheckConstraint("state IN ('pending', 'done')", name="state"),
    Index("ix_activities_synced_pending", "state", "reserved_at"),
)

audit_lines = Table(
    "audit_lines",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("prospect_id", BigInteger),
    Column("crm_id", String(CRM_ID)),
    Column("at", UTCDateTime, nullable=False),
    Column("action", String(64), nullable=False),
    Column("field", String(200)),
    Column("old", Json),
    Column("new", Json),
    Column("policy", String(32)),
    Column("reason", Text),
    Column("detail", Json),
    Index("ix_audit_lines_prospect", "prospect_id", "id"),
    Index("ix_audit_lines_crm", "crm_id", "id"),
    # The console's activity counts and throughput chart read time ranges; its list of
    # actions reads the few `console.*` lines by action.
    Index("ix_audit_lines_at", "at"),
    Index("ix_audit_lines_action_at", "action", "at"),
)

api_usage = Table(
    "api_usage",
    metadata,
    Column("system", String(32), nullable=False),
    Column("hour", UTCDateTime, nullable=False),
    Column("calls", BigInteger, nullable=False),
    PrimaryKeyConstraint("system", "hour"),
)

api_limits = Table(
    "api_limits",
    metadata,
    Column("system", String(32), primary_key=True),
    Column("used", BigInteger, nullable=False),
    Column("limit", BigInteger, nullable=False),
    Column("observed_at", UTCDateTime, nullable=False),
)

worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("process_id", String(100), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(64), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_beat_at", UTCDateTime, nullable=False),
)

kv = Table(
    "kv",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Json),
    Column("updated_at", UTCDateTime, nullable=False),
)
