"""A referral's identity is its source, identifier value and identifier system.

Adds referrals.referral_identifier_system ("" when the sender gave none, which is also
what every referral stored before this migration gets) and replaces the unique
(source, referral_identifier) with (source, referral_identifier, referral_identifier_system),
so that the same value under two identifier systems makes two referrals and never merges
one person's referral into another's. A referral whose current record states its
identifier's system gets that system; the others (stored before the record had the item)
get "".

The old constraint was created without a name: PostgreSQL named it
``referrals_source_referral_identifier_key``; on SQLite the table is rebuilt (batch mode)
and the reflected constraint is given a name by the naming convention below so it can be
dropped.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

IDENTITY = "uq_referrals_identity"
OLD = "referrals_source_referral_identifier_key"  # PostgreSQL's name for the unnamed one
#: Names the unnamed constraint SQLite reflects, so batch mode can drop it.
CONVENTION = {"uq": "%(table_name)s_%(column_0_N_name)s_key"}
#: The record's referral.identifier_system, per dialect (records are JSON text).
BACKFILL = {
    "sqlite": "json_extract(v.record, '$.referral.identifier_system')",
    "postgresql": "v.record::json #>> '{referral,identifier_system}'",
}


def upgrade() -> None:
    """Add the identifier system column and make it part of the referral's identity."""
    with op.batch_alter_table("referrals", naming_convention=CONVENTION) as batch:
        batch.add_column(
            sa.Column(
                "referral_identifier_system",
                sa.String(500),
                nullable=False,
                server_default="",
            )
        )
        batch.drop_constraint(OLD, type_="unique")
        batch.create_unique_constraint(
            IDENTITY, ["source", "referral_identifier", "referral_identifier_system"]
        )
    # A current version that already states its identifier's system gives it to the row.
    system = BACKFILL[op.get_bind().dialect.name]
    op.execute(
        "UPDATE referrals SET referral_identifier_system = COALESCE((SELECT "
        f"{system} FROM record_versions v WHERE v.referral_id = referrals.id"
        " AND v.version = referrals.current_version), '')"
    )


def downgrade() -> None:
    """Back to (source, value); fails if two referrals share a value under two systems."""
    with op.batch_alter_table("referrals", naming_convention=CONVENTION) as batch:
        batch.drop_constraint(IDENTITY, type_="unique")
        batch.create_unique_constraint(OLD, ["source", "referral_identifier"])
        batch.drop_column("referral_identifier_system")
