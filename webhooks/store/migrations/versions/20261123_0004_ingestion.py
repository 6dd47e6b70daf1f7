"""Ingestion: product groups and users (account mapping), parked product events (inbox
match key), account domains, API keys.

Revision ID: 20261123_0004
Revises: 20261123_0003
Create Date: 2026-11-23 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from connector.segment import normalised_domain

revision = "20261123_0004"
down_revision = "20261123_0003"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "product_groups",
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("match_value", sa.String(length=500), nullable=True),
        sa.Column("crm_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection", "group_id", name=op.f("pk_product_groups")),
    )
    op.create_index(
        "ix_product_groups_match", "product_groups", ["connection", "match_value"], unique=False
    )
    op.create_table(
        "product_users",
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection", "user_id", name=op.f("pk_product_users")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.add_column("inbox_events", sa.Column("match_key", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_inbox_events_match_key",
        "inbox_events",
        ["connection", "match_key"],
        unique=False,
        sqlite_where=sa.text("match_key IS NOT NULL"),
        postgresql_where=sa.text("match_key IS NOT NULL"),
    )
    op.add_column("accounts", sa.Column("domain", sa.String(length=255), nullable=True))
    op.create_index("ix_accounts_domain", "accounts", ["connection", "domain"], unique=False)
    _fill_account_domains()


def _fill_account_domains() -> None:
    """Accounts already hold their domain among their attributes; copy it to the column."""
    accounts = sa.table(
        "accounts", sa.column("id", _BIG_ID), sa.column("attributes", sa.JSON()),
        sa.column("domain", sa.String()),
    )  # fmt: skip
    bind = op.get_bind()
    found = []
    for account_id, attributes in bind.execute(sa.select(accounts.c.id, accounts.c.attributes)):
        value = ((attributes or {}).get("domain") or {}).get("value")
        domain = normalised_domain(value) if isinstance(value, str) else None
        if domain:
            found.append({"account_id": account_id, "new_domain": domain})
    if found:
        bind.execute(
            accounts.update()
            .where(accounts.c.id == sa.bindparam("account_id"))
            .values(domain=sa.bindparam("new_domain")),
            found,
        )


def downgrade() -> None:
    op.drop_index("ix_accounts_domain", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("domain")
    op.drop_index("ix_inbox_events_match_key", table_name="inbox_events")
    with op.batch_alter_table("inbox_events") as batch:
        batch.drop_column("match_key")
    op.drop_table("api_keys")
    op.drop_table("product_users")
    op.drop_index("ix_product_groups_match", table_name="product_groups")
    op.drop_table("product_groups")
