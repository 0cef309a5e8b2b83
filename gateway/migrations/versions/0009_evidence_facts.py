"""Evidence facts: one row per referral and per wellbeing score, kept up by a cursor refresh,
so the commissioners' measures are a GROUP BY instead of a read of every record.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the evidence fact tables (filled by the first refresh, not here)."""
    op.create_table(
        "evidence_referrals",
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.id"), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("practice", sa.String(20), nullable=True),
        sa.Column("person", sa.String(32), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("declined", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("first_contact", sa.DateTime(timezone=True), nullable=True),
        sa.Column("contact_days", sa.Float(), nullable=True),
    )
    op.create_index("ix_evidence_referrals_received_at", "evidence_referrals", ["received_at"])
    op.create_table(
        "evidence_scores",
        sa.Column("ordinal", BigId, primary_key=True, autoincrement=False),
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.id"), nullable=False),
        sa.Column("instrument", sa.String(100), nullable=False),
        sa.Column("taken", sa.Date(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
    )
    op.create_index("ix_evidence_scores_referral_id", "evidence_scores", ["referral_id"])
    op.create_table(
        "evidence_series",
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.id"), primary_key=True),
        sa.Column("instrument", sa.String(100), primary_key=True),
        sa.Column("first_ordinal", sa.BigInteger(), nullable=False),
        sa.Column("last_ordinal", sa.BigInteger(), nullable=False),
        sa.Column("scores", sa.Integer(), nullable=False),
    )
    op.create_table(
        "evidence_practice_pcns",
        sa.Column("practice", sa.String(20), primary_key=True),
        sa.Column("pcn", sa.String(20), nullable=False),
    )
    op.create_table(
        "evidence_cursors",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    """Drop the evidence facts (they are rebuilt from the store by the next refresh)."""
    op.drop_table("evidence_cursors")
    op.drop_table("evidence_practice_pcns")
    op.drop_table("evidence_series")
    op.drop_index("ix_evidence_scores_referral_id", table_name="evidence_scores")
    op.drop_table("evidence_scores")
    op.drop_index("ix_evidence_referrals_received_at", table_name="evidence_referrals")
    op.drop_table("evidence_referrals")
