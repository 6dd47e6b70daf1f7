"""Accounts the CRM does not have: when a write-back found no such record (404) and why. Such
an account is neither scored, listed nor written back until the CRM sends its record.

Revision ID: 20261205_0014
Revises: 20261205_0013
Create Date: 2026-12-05 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0014"
down_revision = "20261205_0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("not_found_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("accounts", sa.Column("not_found_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("not_found_reason")
        batch.drop_column("not_found_at")
