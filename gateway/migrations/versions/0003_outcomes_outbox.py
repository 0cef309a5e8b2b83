"""Outcomes, the referral workflow status, and the outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the workflow columns and the two tables."""
    op.add_column(
        "referrals",
        sa.Column("workflow_status", sa.String(30), nullable=False, server_default="requested"),
    )
    op.add_column(
        "referrals",
        sa.Column(
            "cancellation_requested", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )
    op.create_table(
        "outcomes",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.id"), nullable=False),
        sa.Column("outcome_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(100), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", stamp, nullable=False),
        sa.UniqueConstraint("referral_id", "outcome_id"),
    )
    op.create_index("ix_outcomes_referral_id", "outcomes", ["referral_id"])
    op.create_table(
        "outbox",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.id"), nullable=False),
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=False, unique=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", stamp, nullable=False),
        sa.Column("lease_until", stamp),
        sa.Column("last_error", sa.Text()),
        sa.Column("response", sa.Text()),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("delivered_at", stamp),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_order", "outbox", ["referral_id", "destination", "id"])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("outbox")
    op.drop_table("outcomes")
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("cancellation_requested")
        batch.drop_column("workflow_status")
