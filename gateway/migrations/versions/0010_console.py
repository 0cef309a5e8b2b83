"""The operator console: what its message search reads, and the link from a reprocess.

A reprocessed message is a new messages row whose ``reprocessed_from`` names the stored
message it ran again (the original keeps its status). The search answers newest first from
indexes: by source and time, by refused status and time (partial: refused rows only), by
the sender's message id, referrals by their identifier and by being held (partial), and
record versions by the NHS number in their record (an expression index, SQLite only).
Three of them (source and time, the sender's message id, the NHS number) are written on
every commit.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOT_ACCEPTED = sa.text("status <> 'accepted'")
HAS_SENDER_ID = sa.text("source_message_id IS NOT NULL")
REPROCESSED = sa.text("reprocessed_from IS NOT NULL")
HELD = sa.text("held_reason IS NOT NULL")
#: The NHS number inside a record version's JSON, as the search writes it. An expression
#: index, on SQLite only: Alembic's model comparison skips expression indexes there, while
#: on PostgreSQL it would need one declared in models.py per dialect (the search works
#: there without it, reading every record).
NHS_NUMBER = sa.text("json_extract(record, '$.person.nhs_number')")


def _where(clause: sa.TextClause) -> dict[str, Any]:
    return {"sqlite_where": clause, "postgresql_where": clause}


def upgrade() -> None:
    """Add messages.reprocessed_from and the console's search indexes."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reprocessed_from", BigId, nullable=True))
    op.create_index("ix_messages_source_received", "messages", ["source", "received_at"])
    op.create_index(
        "ix_messages_refused_received",
        "messages",
        ["status", "received_at"],
        **_where(NOT_ACCEPTED),
    )
    op.create_index(
        "ix_messages_sender_id", "messages", ["source_message_id"], **_where(HAS_SENDER_ID)
    )
    op.create_index(
        "ix_messages_reprocessed_from", "messages", ["reprocessed_from"], **_where(REPROCESSED)
    )
    op.create_index("ix_referrals_identifier", "referrals", ["referral_identifier"])
    op.create_index("ix_referrals_held", "referrals", ["held_reason"], **_where(HELD))
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_record_versions_nhs_number", "record_versions", [NHS_NUMBER])


def downgrade() -> None:
    """Drop the console's indexes and the reprocess link."""
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_record_versions_nhs_number", "record_versions")
    op.drop_index("ix_referrals_held", "referrals")
    op.drop_index("ix_referrals_identifier", "referrals")
    op.drop_index("ix_messages_reprocessed_from", "messages")
    op.drop_index("ix_messages_sender_id", "messages")
    op.drop_index("ix_messages_refused_received", "messages")
    op.drop_index("ix_messages_source_received", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("reprocessed_from")
