"""Customers only, and enough evidence: whether an account is a customer by the configured
customer rule (others are listed as "not a customer", unscored, unalerted, their CRM health
fields empty), and the earliest time any event told about the account (a zero count is
evidence only for windows the account has been visible in).

Revision ID: 20261205_0015
Revises: 20261205_0014
Create Date: 2026-12-05 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0015"
down_revision = "20261205_0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every account was scored as a customer so far; the next rescore applies the rule.
    op.add_column(
        "accounts",
        sa.Column("customer", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    # NULL: only `created_at` is known (accounts stored before this revision).
    op.add_column("accounts", sa.Column("first_seen_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("first_seen_at")
        batch.drop_column("customer")
