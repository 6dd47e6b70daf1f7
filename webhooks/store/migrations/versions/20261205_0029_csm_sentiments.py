"""CSM sentiments: every judgement a CSM set on an account (rating, reason, note, author, end),
the latest in force until it ends; the rows are the audit of who said what, and when.

Revision ID: 20261205_0029
Revises: 20261205_0028
Create Date: 2026-12-05 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0029"
down_revision = "20261205_0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "csm_sentiments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column(
            "account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey(
                "accounts.id", ondelete="CASCADE", name="fk_csm_sentiments_account_id_accounts"
            ),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rating", sa.String(8), nullable=True),
        sa.Column("reason", sa.String(60), nullable=True),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_csm_sentiments"),
    )
    op.create_index("ix_csm_sentiments_account_time", "csm_sentiments", ["account_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_csm_sentiments_account_time", table_name="csm_sentiments")
    op.drop_table("csm_sentiments")
