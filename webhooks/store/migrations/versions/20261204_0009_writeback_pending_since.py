"""Write-backs know since when their values wait, and none ends failed for a transient cause.

`pending_since` is when the values now owed were first owed unsent (an outage's age, for
`crm-health status`, /metrics and the admin page's sync panel). Rows the old attempt cap ended
`failed` were mostly outages; they go back to pending once, under the new policy in which only
a per-record refusal of the CRM ends a row (a refusal comes back at the first try).

Revision ID: 20261204_0009
Revises: 20261123_0008
Create Date: 2026-12-04 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261204_0009"
down_revision = "20261123_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "crm_writeback", sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE crm_writeback SET pending_since = available_at "
        "WHERE status IN ('pending', 'sending', 'failed')"
    )
    op.execute(
        "UPDATE crm_writeback SET status = 'pending', attempts = 0, available_at = "
        "CURRENT_TIMESTAMP WHERE status = 'failed'"
    )


def downgrade() -> None:
    with op.batch_alter_table("crm_writeback") as batch:
        batch.drop_column("pending_since")
