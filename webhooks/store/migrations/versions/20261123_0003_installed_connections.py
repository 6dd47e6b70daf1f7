"""Connections created by OAuth installs, with encrypted credentials.

Revision ID: 20261123_0003
Revises: 20261123_0002
Create Date: 2026-11-23 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_0003"
down_revision = "20261123_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "installed_connections",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("crm", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_installed_connections")),
        sa.UniqueConstraint(
            "crm", "external_id", name=op.f("uq_installed_connections_crm_external_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("installed_connections")
