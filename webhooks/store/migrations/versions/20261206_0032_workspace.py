"""The CS workspace: an account's ARR and renewal date as columns of their own (copies of the
`arr` and `renewal_date` attributes, like segment and owner), so the portfolio sums ARR by band
and the accounts list sorts and filters by ARR and renewal in SQL; when a contact was first
seen (contacts gained on the account's timeline); and each user's preferences (the owner whose
accounts are "my accounts").

Revision ID: 20261206_0032
Revises: 20261205_0031
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import sqlalchemy as sa
from alembic import op

from connector import bounds

revision = "20261206_0032"
down_revision = "20261205_0031"
branch_labels = None
depends_on = None

_BATCH = 5_000


def _value(attributes: Any, name: str) -> str | None:
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    entry = (attributes or {}).get(name)
    value = entry.get("value") if isinstance(entry, dict) else None
    return None if value is None or value == "" else str(value)


def _arr(value: str | None) -> float | None:
    try:
        number = None if value is None else float(value)
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def _renewal(value: str | None) -> date | None:
    # Read as the service reads it at intake (one parser); an unreadable one stays NULL, the
    # attribute itself is kept as it was.
    try:
        return None if value is None else bounds.calendar_date(value)
    except ValueError:
        return None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("arr", sa.Float(), nullable=True))
    op.add_column("accounts", sa.Column("renewal_date", sa.Date(), nullable=True))
    op.create_index("ix_accounts_renewal", "accounts", ["connection", "renewal_date"])
    op.add_column("contacts", sa.Column("first_seen_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE contacts SET first_seen_at = updated_at")
    op.create_table(
        "user_preferences",
        sa.Column("connection", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(200), primary_key=True),
        sa.Column("preferences", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    bind = op.get_bind()
    accounts = sa.table(
        "accounts",
        sa.column("id", sa.BigInteger),
        sa.column("attributes", sa.JSON),
        sa.column("arr", sa.Float),
        sa.column("renewal_date", sa.Date),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(accounts.c.id, accounts.c.attributes)
            .where(accounts.c.id > last)
            .order_by(accounts.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        changes = []
        for row_id, attributes in rows:
            arr = _arr(_value(attributes, "arr"))
            renewal = _renewal(_value(attributes, "renewal_date"))
            if arr is not None or renewal is not None:
                changes.append({"row_id": row_id, "new_arr": arr, "new_renewal": renewal})
        if changes:
            bind.execute(
                accounts.update()
                .where(accounts.c.id == sa.bindparam("row_id"))
                .values(arr=sa.bindparam("new_arr"), renewal_date=sa.bindparam("new_renewal")),
                changes,
            )


def downgrade() -> None:
    op.drop_table("user_preferences")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("first_seen_at")
    op.drop_index("ix_accounts_renewal", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("renewal_date")
        batch.drop_column("arr")
