"""Outcome ARR: the ARR a renewal kept or a churn lost (outcomes.arr), where the source gives
it (native `outcome` events, `crm-health import outcomes`). Outcomes already held keep none
(NULL: not known).

Revision ID: 20261205_0030
Revises: 20261205_0029
Create Date: 2026-12-05 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0030"
down_revision = "20261205_0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outcomes", sa.Column("arr", sa.Float(), nullable=True))


def downgrade() -> None:
    # SQLite drops a column by rebuilding the table.
    with op.batch_alter_table("outcomes") as batch:
        batch.drop_column("arr")
