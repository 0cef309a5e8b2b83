"""HL7 v2 duplicates and acknowledgements: control id, dedup key, stored response.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the columns and indexes (no table rebuild, so existing rows and keys stay put)."""
    op.add_column("messages", sa.Column("control_id", sa.String(200)))
    op.add_column("messages", sa.Column("dedup_key", sa.String(600)))
    op.add_column("messages", sa.Column("response", sa.LargeBinary()))
    op.create_index("ix_messages_source_control", "messages", ["source", "control_id"])
    op.create_index("uq_messages_source_dedup", "messages", ["source", "dedup_key"], unique=True)


def downgrade() -> None:
    """Remove them."""
    op.drop_index("uq_messages_source_dedup", "messages")
    op.drop_index("ix_messages_source_control", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("response")
        batch.drop_column("dedup_key")
        batch.drop_column("control_id")
