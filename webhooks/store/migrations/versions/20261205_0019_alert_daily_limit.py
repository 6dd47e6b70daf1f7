"""A daily limit per alert channel: deliveries held back for the channel's overflow digest, the
messages each channel was given leave to send per UTC day; and `alerts.notified` true only for
alerts one of whose deliveries was sent.

Revision ID: 20261205_0019
Revises: 20261205_0018
Create Date: 2026-12-05 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0019"
down_revision = "20261205_0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.add_column(
            sa.Column("overflow", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "alert_channel_budgets",
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "day", name=op.f("pk_alert_channel_budgets")),
    )
    # Alerts used to be inserted as notified whether or not anyone was told (a rule naming no
    # channel, deliveries that failed): only those with a sent delivery were.
    op.execute(
        "UPDATE alerts SET notified = false WHERE notified AND NOT EXISTS ("
        "SELECT 1 FROM alert_deliveries WHERE alert_deliveries.alert_id = alerts.id "
        "AND alert_deliveries.status = 'sent')"
    )


def downgrade() -> None:
    op.drop_table("alert_channel_budgets")
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_column("overflow")
