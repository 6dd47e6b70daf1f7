"""Health history keeps no driver texts: nothing read them back, and they were about half of
each row, kept for the fact retention (two years by default). The account row holds its current
drivers; those of a past moment follow from the facts and the configuration version, both kept.
A downgrade brings the column back empty.

Revision ID: 20261205_0024
Revises: 20261205_0023
Create Date: 2026-12-05 16:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0024"
down_revision = "20261205_0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot drop a column, so there the table is copied.
    with op.batch_alter_table("health_history") as batch:
        batch.drop_column("drivers")


def downgrade() -> None:
    with op.batch_alter_table("health_history") as batch:
        batch.add_column(
            sa.Column("drivers", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
