"""Routing and consent: the hub each referral (and each version) went to, or why it is held.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add hub and held_reason to referrals, hub to record_versions, and the feed's index."""
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("hub", sa.String(100), nullable=True))
        batch.add_column(sa.Column("held_reason", sa.String(500), nullable=True))
    with op.batch_alter_table("record_versions") as batch:
        batch.add_column(sa.Column("hub", sa.String(100), nullable=True))
    # Versions stored before routing existed were open to every platform.
    op.execute("UPDATE referrals SET hub = '*'")
    op.execute("UPDATE record_versions SET hub = '*'")
    op.create_index("ix_record_versions_hub_seq", "record_versions", ["hub", "seq"])


def downgrade() -> None:
    """Drop the routing columns and index."""
    op.drop_index("ix_record_versions_hub_seq", "record_versions")
    with op.batch_alter_table("record_versions") as batch:
        batch.drop_column("hub")
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("held_reason")
        batch.drop_column("hub")
