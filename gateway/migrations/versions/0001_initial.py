"""Initial tables: messages, referrals, record versions, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "referrals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("referral_identifier", sa.String(200), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
        sa.UniqueConstraint("source", "referral_identifier"),
    )
    op.create_table(
        "messages",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("received_at", stamp, nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("content_type", sa.String(200)),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_truncated", sa.Boolean(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(200)),
        sa.Column("correlation_id", sa.String(200)),
        sa.Column("source_message_id", sa.String(200)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("diagnostics", sa.Text()),
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.id")),
        sa.Column("record_version", sa.Integer()),
    )
    op.create_index("ix_messages_received_at", "messages", ["received_at"])
    op.create_index("ix_messages_source", "messages", ["source"])
    op.create_index("ix_messages_status", "messages", ["status"])
    op.create_index("ix_messages_source_body", "messages", ["source", "body_sha256"])
    op.create_table(
        "record_versions",
        sa.Column("seq", big_id, primary_key=True, autoincrement=True),
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("received_at", stamp, nullable=False),
        sa.Column("message_id", big_id, sa.ForeignKey("messages.id"), nullable=False),
        sa.UniqueConstraint("referral_id", "version"),
    )
    op.create_index("ix_record_versions_referral_id", "record_versions", ["referral_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("principal", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("revoked_at", stamp),
    )


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("api_keys")
    op.drop_table("record_versions")
    op.drop_table("messages")
    op.drop_table("referrals")
