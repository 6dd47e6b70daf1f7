"""Accounts API: segment and owner as indexed columns, and the rest of the latest health
(trend, signals, drivers, coverage) on the account row; filled from what is already stored.

Revision ID: 20261123_0008
Revises: 20261123_0007
Create Date: 2026-11-23 21:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "20261123_0008"
down_revision = "20261123_0007"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CHUNK = 1000


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("segment", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("trend_30d", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("signals", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("drivers", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("coverage", sa.JSON(), nullable=True))
    op.create_index("ix_accounts_segment", "accounts", ["connection", "segment"], unique=False)
    op.create_index("ix_accounts_owner", "accounts", ["connection", "owner"], unique=False)
    op.create_index("ix_accounts_score", "accounts", ["connection", "score"], unique=False)
    _fill()


_accounts = sa.table(
    "accounts", sa.column("id", _BIG_ID), sa.column("attributes", sa.JSON()),
    sa.column("segment", sa.String()), sa.column("owner", sa.String()),
    sa.column("trend_30d", sa.Integer()), sa.column("signals", sa.JSON()),
    sa.column("drivers", sa.JSON()), sa.column("coverage", sa.JSON()),
)  # fmt: skip
_history = sa.table(
    "health_history", sa.column("id", _BIG_ID), sa.column("account_id", _BIG_ID),
    sa.column("computed_at", sa.DateTime(timezone=True)), sa.column("signals", sa.JSON()),
    sa.column("drivers", sa.JSON()), sa.column("coverage", sa.Float()),
)  # fmt: skip
_writeback = sa.table(
    "crm_writeback", sa.column("account_id", _BIG_ID), sa.column("fields", sa.JSON())
)


def _attribute(attributes: Any, name: str) -> str | None:
    entry = (attributes or {}).get(name)
    value = entry.get("value") if isinstance(entry, dict) else None
    return None if value in (None, "") else str(value)[:255]


def _fill() -> None:
    """Attributes JSON -> columns; newest history row -> signals, drivers, coverage ratio (the
    signal and indicator lists come with the next rescore); the trend last owed to the CRM."""
    bind = op.get_bind()
    after = 0
    while True:
        chunk = bind.execute(
            sa.select(_accounts.c.id, _accounts.c.attributes)
            .where(_accounts.c.id > after)
            .order_by(_accounts.c.id)
            .limit(_CHUNK)
        ).all()
        if not chunk:
            return
        ids = [row[0] for row in chunk]
        after = ids[-1]
        newest = (
            sa.select(_history.c.account_id, sa.func.max(_history.c.computed_at).label("at"))
            .where(_history.c.account_id.in_(ids))
            .group_by(_history.c.account_id)
            .subquery()
        )
        latest: dict[int, Any] = {}
        for row in bind.execute(
            sa.select(_history.c.account_id, _history.c.signals, _history.c.drivers,
                      _history.c.coverage)
            .join(newest, (_history.c.account_id == newest.c.account_id)
                  & (_history.c.computed_at == newest.c.at))
            .order_by(_history.c.id)
        ):  # fmt: skip
            latest[row[0]] = row
        trends: dict[int, Any] = {
            account_id: (fields or {}).get("health_trend_30d")
            for account_id, fields in bind.execute(
                sa.select(_writeback.c.account_id, _writeback.c.fields).where(
                    _writeback.c.account_id.in_(ids)
                )
            )
        }
        rows = []
        for account_id, attributes in chunk:
            found = latest.get(account_id)
            trend = trends.get(account_id)
            rows.append(
                {
                    "account_id": account_id,
                    "new_segment": _attribute(attributes, "segment"),
                    "new_owner": _attribute(attributes, "owner"),
                    "new_trend": int(trend) if isinstance(trend, int | float) else None,
                    "new_signals": None if found is None else found[1],
                    "new_drivers": None if found is None else found[2],
                    "new_coverage": None
                    if found is None
                    else {"ratio": found[3], "signals": [], "indicators": []},
                }
            )
        bind.execute(
            _accounts.update()
            .where(_accounts.c.id == sa.bindparam("account_id"))
            .values(
                segment=sa.bindparam("new_segment"),
                owner=sa.bindparam("new_owner"),
                trend_30d=sa.bindparam("new_trend"),
                signals=sa.bindparam("new_signals", type_=sa.JSON(none_as_null=True)),
                drivers=sa.bindparam("new_drivers", type_=sa.JSON(none_as_null=True)),
                coverage=sa.bindparam("new_coverage", type_=sa.JSON(none_as_null=True)),
            ),
            rows,
        )


def downgrade() -> None:
    op.drop_index("ix_accounts_score", table_name="accounts")
    op.drop_index("ix_accounts_owner", table_name="accounts")
    op.drop_index("ix_accounts_segment", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        for column in ("coverage", "drivers", "signals", "trend_30d", "owner", "segment"):
            batch.drop_column(column)
