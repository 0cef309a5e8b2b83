"""The audit trail: every record read and operator action, appended, outliving purges.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create audit_events with its time and target indexes."""
    op.create_table(
        "audit_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target_kind", sa.String(40), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=True),
        sa.Column("address", sa.String(100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_at", "audit_events", ["at"])
    op.create_index("ix_audit_target", "audit_events", ["target_kind", "target_id"])


def downgrade() -> None:
    """Drop the audit trail (only for a downgrade of the whole store)."""
    op.drop_index("ix_audit_target", table_name="audit_events")
    op.drop_index("ix_audit_at", table_name="audit_events")
    op.drop_table("audit_events")
