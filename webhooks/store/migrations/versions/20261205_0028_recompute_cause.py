"""Recompute jobs say why they rescore: a configuration change, or time passing (the scheduled
rescore of every account, so an account that sends nothing still ages: its recency, its
windows, its onboarding and a CSM sentiment's expiry move on).

Revision ID: 20261205_0028
Revises: 20261205_0027
Create Date: 2026-12-05 20:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0028"
down_revision = "20261205_0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "recompute_jobs",
        sa.Column(
            "cause", sa.String(16), nullable=False, server_default=sa.text("'configuration'")
        ),
    )


def downgrade() -> None:
    # Scheduled rescores are the only jobs of the other cause: nothing else needs them.
    op.execute("DELETE FROM recompute_jobs WHERE cause <> 'configuration'")
    with op.batch_alter_table("recompute_jobs") as batch:
        batch.drop_column("cause")
