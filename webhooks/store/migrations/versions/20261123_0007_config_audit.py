"""Configuration audit log, and each config version's predecessor (optimistic locking).

Revision ID: 20261123_0007
Revises: 20261123_0006
Create Date: 2026-11-23 21:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_0007"
down_revision = "20261123_0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A plain ADD COLUMN and a unique index: SQLite does both without rebuilding the table
    # (which recompute_jobs references).
    op.add_column("config_versions", sa.Column("previous_id", _ID, nullable=True))
    # Versions saved so far form one line: each follows the one before it, the first the
    # defaults (0).
    op.execute(
        "UPDATE config_versions SET previous_id = COALESCE("
        "(SELECT MAX(earlier.id) FROM config_versions AS earlier"
        " WHERE earlier.id < config_versions.id), 0)"
    )
    op.create_index(
        "ix_config_versions_previous_id", "config_versions", ["previous_id"], unique=True
    )
    op.create_table(
        "config_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_version_id", _ID, nullable=True),
        sa.Column("to_version_id", _ID, nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("changed", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["to_version_id"],
            ["config_versions.id"],
            name=op.f("fk_config_audit_to_version_id_config_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_audit")),
    )


def downgrade() -> None:
    op.drop_table("config_audit")
    op.drop_index("ix_config_versions_previous_id", table_name="config_versions")
    with op.batch_alter_table("config_versions", schema=None) as batch_op:
        batch_op.drop_column("previous_id")
