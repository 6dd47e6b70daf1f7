"""Initial schema: inbox, accounts, activity days, health history, write-back outbox.

Revision ID: 20261123_0001
Revises:
Create Date: 2026-11-23 11:24:05.203453
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("crm", sa.String(length=32), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.Column("health_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("connection", "crm_id", name=op.f("uq_accounts_connection_crm_id")),
    )
    op.create_table(
        "inbox_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint(
            "source",
            "connection",
            "dedup_key",
            name=op.f("uq_inbox_events_source_connection_dedup_key"),
        ),
    )
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_events_claim", ["status", "available_at"], unique=False)

    op.create_table(
        "activity_days",
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_activity_days_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_activity_days")),
    )
    op.create_table(
        "crm_writeback",
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("fields_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("written_version", sa.Integer(), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_crm_writeback_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_crm_writeback")),
    )
    with op.batch_alter_table("crm_writeback", schema=None) as batch_op:
        batch_op.create_index("ix_crm_writeback_claim", ["status", "available_at"], unique=False)

    op.create_table(
        "health_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("drivers", sa.JSON(), nullable=False),
        sa.Column("coverage", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_health_history_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_history")),
    )
    with op.batch_alter_table("health_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_health_history_account_time", ["account_id", "computed_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("health_history", schema=None) as batch_op:
        batch_op.drop_index("ix_health_history_account_time")

    op.drop_table("health_history")
    with op.batch_alter_table("crm_writeback", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_writeback_claim")

    op.drop_table("crm_writeback")
    op.drop_table("activity_days")
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_events_claim")

    op.drop_table("inbox_events")
    op.drop_table("accounts")
