"""The reconcile schedule: one row that says when the last reconcile of the CRMs' health fields
ended, how far the one under way got, and which worker holds it (a lease).

Revision ID: 20261204_0011
Revises: 20261204_0010
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261204_0011"
down_revision = "20261204_0010"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reconcile_schedule",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("connection", sa.String(length=64), nullable=True),
        sa.Column("after_account_id", _ID, nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_counts", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reconcile_schedule")),
    )


def downgrade() -> None:
    op.drop_table("reconcile_schedule")
