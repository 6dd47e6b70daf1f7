"""Health history keeps score, band and configuration version only: its signal scores and
coverage were, like the driver texts before them (0024), written and never read back, and
were about half of what is left of each row, kept for the fact retention (two years by
default). The account row holds its current signals and coverage; those of a past moment
follow from the facts and the configuration version, both kept. A downgrade brings the
columns back with no signals and no coverage.

Revision ID: 20261205_0025
Revises: 20261205_0024
Create Date: 2026-12-05 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0025"
down_revision = "20261205_0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot drop a column, so there the table is copied.
    with op.batch_alter_table("health_history") as batch:
        batch.drop_column("signals")
        batch.drop_column("coverage")


def downgrade() -> None:
    with op.batch_alter_table("health_history") as batch:
        batch.add_column(
            sa.Column("signals", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(
            sa.Column("coverage", sa.Float(), nullable=False, server_default=sa.text("0"))
        )
