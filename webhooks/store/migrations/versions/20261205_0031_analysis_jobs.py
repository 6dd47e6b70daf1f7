"""Analysis jobs: backtests and suggestions, computed in the background with their progress
and kept with their result, so a large book never holds a request and any process serves the
answer.

Revision ID: 20261205_0031
Revises: 20261205_0030
Create Date: 2026-12-05 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0031"
down_revision = "20261205_0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_analysis_jobs"),
    )
    op.create_index(
        "ix_analysis_jobs_connection_created", "analysis_jobs", ["connection", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_analysis_jobs_connection_created", table_name="analysis_jobs")
    op.drop_table("analysis_jobs")
