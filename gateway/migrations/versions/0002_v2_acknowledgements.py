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
    """Add the columns and indexes."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("control_id", sa.String(200)))
        batch.add_column(sa.Column("dedup_key", sa.String(600)))
        batch.add_column(sa.Column("response", sa.LargeBinary()))
        batch.create_index("ix_messages_source_control", ["source", "control_id"])
        batch.create_unique_constraint("uq_messages_source_dedup", ["source", "dedup_key"])


def downgrade() -> None:
    """Remove them."""
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint("uq_messages_source_dedup", type_="unique")
        batch.drop_index("ix_messages_source_control")
        batch.drop_column("response")
        batch.drop_column("dedup_key")
        batch.drop_column("control_id")
