"""Pull watermarks: how far each polled FHIR source has been read.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the table."""
    op.create_table(
        "pull_watermarks",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("watermark", stamp, nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("pull_watermarks")
