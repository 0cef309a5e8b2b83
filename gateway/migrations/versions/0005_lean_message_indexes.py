"""Leaner indexes on the intake path: every index is a page written on every commit.

Drops two indexes that others already cover (messages.source, by the (source, ...)
indexes; record_versions.referral_id, by the unique (referral_id, version)), and makes three
partial, so that rows they would not find are not indexed: the status index holds only
messages that were not accepted (what operators look for), and the control-id and
de-duplication indexes only messages that have one (HL7 v2). A referral's commit writes
about 19 pages (79 KB) to the WAL before this and about 14 (58 KB) after it, measured with
bench/wal_pages.py.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOT_ACCEPTED = sa.text("status <> 'accepted'")
HAS_CONTROL_ID = sa.text("control_id IS NOT NULL")
HAS_DEDUP_KEY = sa.text("dedup_key IS NOT NULL")


def _where(clause: sa.TextClause) -> dict[str, Any]:
    return {"sqlite_where": clause, "postgresql_where": clause}


def upgrade() -> None:
    """Drop the covered indexes; rebuild three as partial indexes."""
    op.drop_index("ix_messages_source", "messages")
    op.drop_index("ix_record_versions_referral_id", "record_versions")
    op.drop_index("ix_messages_status", "messages")
    op.create_index("ix_messages_not_accepted", "messages", ["status"], **_where(NOT_ACCEPTED))
    op.drop_index("ix_messages_source_control", "messages")
    op.create_index(
        "ix_messages_source_control", "messages", ["source", "control_id"], **_where(HAS_CONTROL_ID)
    )
    op.drop_index("uq_messages_source_dedup", "messages")
    op.create_index(
        "uq_messages_source_dedup",
        "messages",
        ["source", "dedup_key"],
        unique=True,
        **_where(HAS_DEDUP_KEY),
    )


def downgrade() -> None:
    """Put the full indexes back."""
    op.drop_index("uq_messages_source_dedup", "messages")
    op.create_index("uq_messages_source_dedup", "messages", ["source", "dedup_key"], unique=True)
    op.drop_index("ix_messages_source_control", "messages")
    op.create_index("ix_messages_source_control", "messages", ["source", "control_id"])
    op.drop_index("ix_messages_not_accepted", "messages")
    op.create_index("ix_messages_status", "messages", ["status"])
    op.create_index("ix_record_versions_referral_id", "record_versions", ["referral_id"])
    op.create_index("ix_messages_source", "messages", ["source"])
