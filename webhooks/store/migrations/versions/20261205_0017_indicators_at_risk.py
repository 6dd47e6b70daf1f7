"""The indicators each account's last scoring found at or past their at-risk threshold: an
indicator rule raises only when one of them was fine before (a loss, not a thing never had).

Revision ID: 20261205_0017
Revises: 20261205_0016
Create Date: 2026-12-05 03:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0017"
down_revision = "20261205_0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL until the next scoring: no loss is read from before the upgrade.
    op.add_column("accounts", sa.Column("indicators_at_risk", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("indicators_at_risk")
