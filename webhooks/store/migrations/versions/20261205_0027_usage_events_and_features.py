"""Usage depth: how many events each user's active days held (usage_months.events), and the
same roll-up per product feature (feature_months), for events per active user, key-feature
adoption and usage-based custom indicators. Months already held keep no count (NULL: not
known), so depth is measured from windows wholly after the upgrade.

Revision ID: 20261205_0027
Revises: 20261205_0026
Create Date: 2026-12-05 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0027"
down_revision = "20261205_0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_months", sa.Column("events", sa.Integer(), nullable=True))
    op.create_table(
        "feature_months",
        sa.Column(
            "account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey(
                "accounts.id", ondelete="CASCADE", name="fk_feature_months_account_id_accounts"
            ),
            nullable=False,
        ),
        sa.Column("feature", sa.String(200), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "feature", "month", "user", name="pk_feature_months"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("feature_months")
    # Not batch mode: its copy of the table would lose SQLite's WITHOUT ROWID (0023); SQLite
    # drops a column in place since 3.35.
    op.execute("ALTER TABLE usage_months DROP COLUMN events")
