"""Usage kept per user and month, the active days as a bitmask (usage_months), instead of one
row per user and day (usage_days): the same facts, a thirtieth of the rows and index entries.

Revision ID: 20261205_0021
Revises: 20261205_0020
Create Date: 2026-12-05 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0021"
down_revision = "20261205_0020"
branch_labels = None
depends_on = None

_ACCOUNT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Each (account, day, user) row is one distinct day, so summing its bit is OR-ing them.
_FILL = {
    "postgresql": """
        INSERT INTO usage_months (account_id, month, "user", days)
        SELECT account_id, CAST(date_trunc('month', day) AS DATE), "user",
               CAST(sum(1 << (CAST(extract(day FROM day) AS INTEGER) - 1)) AS INTEGER)
        FROM usage_days
        GROUP BY account_id, CAST(date_trunc('month', day) AS DATE), "user"
    """,
    "sqlite": """
        INSERT INTO usage_months (account_id, month, "user", days)
        SELECT account_id, date(day, 'start of month'), "user",
               sum(1 << (CAST(strftime('%d', day) AS INTEGER) - 1))
        FROM usage_days
        GROUP BY account_id, date(day, 'start of month'), "user"
    """,
}
# One usage_days row per set bit: the days of the month are the numbers 1..31.
_UNFOLD = {
    "postgresql": """
        INSERT INTO usage_days (account_id, day, "user")
        SELECT account_id, month + (d - 1), "user"
        FROM usage_months CROSS JOIN generate_series(1, 31) AS d
        WHERE days & (1 << (d - 1)) <> 0
    """,
    "sqlite": """
        WITH RECURSIVE numbers(d) AS (SELECT 1 UNION ALL SELECT d + 1 FROM numbers WHERE d < 31)
        INSERT INTO usage_days (account_id, day, "user")
        SELECT account_id, date(month, '+' || (d - 1) || ' days'), "user"
        FROM usage_months CROSS JOIN numbers
        WHERE days & (1 << (d - 1)) <> 0
    """,
}


def upgrade() -> None:
    op.create_table(
        "usage_months",
        sa.Column("account_id", _ACCOUNT_ID, nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_usage_months_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "month", "user", name=op.f("pk_usage_months")),
    )
    op.execute(_FILL[op.get_bind().dialect.name])
    op.drop_table("usage_days")


def downgrade() -> None:
    op.create_table(
        "usage_days",
        sa.Column("account_id", _ACCOUNT_ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_usage_days_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", "user", name=op.f("pk_usage_days")),
    )
    op.execute(_UNFOLD[op.get_bind().dialect.name])
    op.drop_table("usage_months")
