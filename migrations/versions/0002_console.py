"""Console: index the audit by time (activity per day, throughput per hour).

Revision ID: 0002_console
Revises: 0001
Create Date: 2026-12-03

The web console counts audit lines per day and outcome over 30 days and synced prospects per
hour over a day; without an index on `at` each page would scan the whole audit. The list of
console actions (`console.retry`, ...) reads by (action, at).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_console"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_lines", schema=None) as batch_op:
        batch_op.create_index(op.f("ix_audit_lines_at"), ["at"], unique=False)
        batch_op.create_index(op.f("ix_audit_lines_action_at"), ["action", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_lines", schema=None) as batch_op:
        batch_op.drop_index(op.f("ix_audit_lines_action_at"))
        batch_op.drop_index(op.f("ix_audit_lines_at"))
