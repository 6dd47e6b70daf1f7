"""Alerts become episodes per account: the conditions of one account that hold at the same time
are reasons of one alert (`alert_reasons`), titled by the most severe. Each alert records its
severity and what caused it (live events, or history that notifies nobody).

Every existing alert becomes an episode with its one reason.

Revision ID: 20261205_0018
Revises: 20261205_0017
Create Date: 2026-12-05 03:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0018"
down_revision = "20261205_0017"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(
            sa.Column("severity", sa.String(length=8), nullable=False, server_default="medium")
        )
        # Alerts raised before this revision were raised by whatever rescored them: "live".
        batch.add_column(
            sa.Column("cause", sa.String(length=16), nullable=False, server_default="live")
        )
    op.create_table(
        "alert_reasons",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", _ID, nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_reasons_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_reasons")),
    )
    with op.batch_alter_table("alert_reasons") as batch:
        batch.create_index("ix_alert_reasons_alert", ["alert_id"], unique=False)
        batch.create_index("ix_alert_reasons_rule", ["rule"], unique=False)
    op.execute(
        "INSERT INTO alert_reasons (alert_id, rule, key, severity, title, reason, opened_at, "
        "resolved_at) SELECT id, rule, key, 'medium', title, reason, fired_at, resolved_at "
        "FROM alerts"
    )


def downgrade() -> None:
    op.drop_table("alert_reasons")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("cause")
        batch.drop_column("severity")
