"""The scoring configuration each stored health was computed under: on the account (its
current band and score) and on every health history row. NULL: computed before this revision.

Revision ID: 20261205_0016
Revises: 20261205_0015
Create Date: 2026-12-05 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0016"
down_revision = "20261205_0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("config_version", sa.String(length=16), nullable=True))
    op.add_column(
        "health_history", sa.Column("config_version", sa.String(length=16), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("health_history") as batch:
        batch.drop_column("config_version")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("config_version")
