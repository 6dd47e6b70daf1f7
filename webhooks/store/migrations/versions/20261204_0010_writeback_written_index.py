"""An index on write-backs' (connection, written_at): a connection's last success is one index
lookup for `crm-health status`, /metrics and the sync panel, not a scan of every account's row.

Revision ID: 20261204_0010
Revises: 20261204_0009
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

from alembic import op

revision = "20261204_0010"
down_revision = "20261204_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crm_writeback") as batch:
        batch.create_index("ix_crm_writeback_written", ["connection", "written_at"])


def downgrade() -> None:
    with op.batch_alter_table("crm_writeback") as batch:
        batch.drop_index("ix_crm_writeback_written")
