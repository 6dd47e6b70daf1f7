"""What each CRM said about record owners (e-mail, name), so alerts can go to the account
owner without asking the CRM for every alert.

Revision ID: 20261205_0020
Revises: 20261205_0019
Create Date: 2026-12-05 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0020"
down_revision = "20261205_0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_owners",
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection", "owner_id", name=op.f("pk_crm_owners")),
    )


def downgrade() -> None:
    op.drop_table("crm_owners")
