"""Configuration changes limited to one connection: the connection a version's change was
limited to (NULL: a global admin's change), and recompute jobs that rescore one connection.

Revision ID: 20261205_0013
Revises: 20261205_0012
Create Date: 2026-12-05 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0013"
down_revision = "20261205_0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("config_versions", sa.Column("scope", sa.String(length=64), nullable=True))
    op.add_column("recompute_jobs", sa.Column("connection", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recompute_jobs") as batch:
        batch.drop_column("connection")
    with op.batch_alter_table("config_versions") as batch:
        batch.drop_column("scope")
