"""Inbox bodies stored as text: a request kept whole (a Segment batch) is split by the worker.

Revision ID: 20261123_0005
Revises: 20261123_0004
Create Date: 2026-11-23 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_0005"
down_revision = "20261123_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbox_events", sa.Column("body", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox_events") as batch:
        batch.drop_column("body")
