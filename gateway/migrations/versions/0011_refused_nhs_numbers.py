"""The NHS numbers in refused messages' bodies, for the console's NHS number search.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The same rule as gateway/store/refused_numbers.py (a migration keeps its own copy).
_RUN = re.compile(rb"(?<![0-9])([0-9]{3})[ -]?([0-9]{3})[ -]?([0-9]{4})(?![0-9])")


def upgrade() -> None:
    """Create refused_nhs_numbers and fill it from the refused messages already kept."""
    table = op.create_table(
        "refused_nhs_numbers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", BigId, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("nhs_number", sa.String(10), nullable=False),
    )
    conn = op.get_bind()
    refused = conn.execute(sa.text("SELECT id, body FROM messages WHERE status <> 'accepted'"))
    batch: list[dict[str, object]] = []
    for message_id, body in refused:
        seen: dict[str, None] = {}
        for match in _RUN.finditer(bytes(body or b"")):
            seen.setdefault(b"".join(match.groups()).decode("ascii"))
            if len(seen) >= 50:
                break
        batch += [{"message_id": message_id, "nhs_number": n} for n in seen]
        if len(batch) >= 5000:
            op.bulk_insert(table, batch)
            batch = []
    if batch:
        op.bulk_insert(table, batch)
    op.create_index("ix_refused_nhs_numbers_number", "refused_nhs_numbers", ["nhs_number"])


def downgrade() -> None:
    """Drop the table."""
    op.drop_index("ix_refused_nhs_numbers_number", "refused_nhs_numbers")
    op.drop_table("refused_nhs_numbers")
