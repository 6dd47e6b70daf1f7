"""SQLite keeps usage_months WITHOUT ROWID: the table is its primary key's b-tree, instead of
a rowid table beside a unique index holding every column but one again (half its bytes).
PostgreSQL has no such layout; nothing changes there.

Revision ID: 20261205_0023
Revises: 20261205_0022
Create Date: 2026-12-05 12:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0023"
down_revision = "20261205_0022"
branch_labels = None
depends_on = None


def _rebuild(*, with_rowid: bool) -> None:
    """Copy usage_months into a table of the wanted layout (SQLite cannot alter it in place)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        "usage_months_rebuilt",
        sa.Column("account_id", sa.Integer(), nullable=False),
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
        sqlite_with_rowid=with_rowid,
    )
    op.execute(
        'INSERT INTO usage_months_rebuilt (account_id, month, "user", days) '
        'SELECT account_id, month, "user", days FROM usage_months'
    )
    op.drop_table("usage_months")
    op.rename_table("usage_months_rebuilt", "usage_months")


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)
