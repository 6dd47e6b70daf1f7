"""Inbox dedup keys in their own table (inbox_dedup), and on PostgreSQL an inbox partitioned
by UTC day of received_at, with a DEFAULT partition.

The unique (source, connection, dedup_key) index on the hot inbox cost a random-page write for
the insert and for each of the two status updates of every event; inbox_dedup holds each key
once, and retention can drop a past day of the inbox whole.

Revision ID: 20261205_0022
Revises: 20261205_0021
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "20261205_0022"
down_revision = "20261205_0021"
branch_labels = None
depends_on = None

# Fixed here (not imported from webhooks.store.inbox): a migration keeps what it did.
_PREFIX = "inbox_events_p"
_DAYS_AHEAD = 3
_FILLFACTOR = 70
_UNIQUE = "uq_inbox_events_source_connection_dedup_key"
_COLUMNS = (
    "id, source, connection, dedup_key, kind, payload, received_at, status, attempts, "
    "available_at, lease_until, processed_at, last_error, body, match_key"
)
_PG_COLUMNS = """
    id BIGINT NOT NULL DEFAULT nextval('inbox_events_id_seq'::regclass),
    source VARCHAR(32) NOT NULL,
    connection VARCHAR(64) NOT NULL,
    dedup_key VARCHAR(255) NOT NULL,
    kind VARCHAR(128) NOT NULL,
    payload JSON NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    available_at TIMESTAMP WITH TIME ZONE NOT NULL,
    lease_until TIMESTAMP WITH TIME ZONE,
    processed_at TIMESTAMP WITH TIME ZONE,
    last_error TEXT,
    body TEXT,
    match_key VARCHAR(255)"""


def upgrade() -> None:
    op.create_table(
        "inbox_dedup",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "connection", "dedup_key", name=op.f("pk_inbox_dedup")),
        # SQLite: the key is the table's own b-tree, not a second index beside a rowid table.
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_inbox_dedup_received_at", "inbox_dedup", ["received_at"], postgresql_using="brin"
    )
    op.execute(
        "INSERT INTO inbox_dedup (source, connection, dedup_key, received_at) "
        "SELECT source, connection, dedup_key, min(received_at) FROM inbox_events "
        "GROUP BY source, connection, dedup_key"
    )
    if op.get_bind().dialect.name == "postgresql":
        _partition()
    else:
        with op.batch_alter_table("inbox_events") as batch:
            batch.drop_constraint(_UNIQUE, type_="unique")


def _day_range(day: date) -> str:
    return f"FROM ('{day.isoformat()} 00:00:00+00') TO ('{day + timedelta(days=1)} 00:00:00+00')"


def _partition() -> None:
    """The plain table becomes a partitioned one of the same columns and id sequence: one
    partition per day the inbox holds plus today and the days ahead, and a default."""
    bind = op.get_bind()
    # The sequence outlives the old table and keeps counting for the new one.
    op.execute("ALTER SEQUENCE inbox_events_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE inbox_events RENAME TO inbox_events_old")
    op.execute("ALTER TABLE inbox_events_old RENAME CONSTRAINT pk_inbox_events TO pk_inbox_old")
    op.execute(f"ALTER TABLE inbox_events_old DROP CONSTRAINT {_UNIQUE}")
    op.execute("DROP INDEX ix_inbox_events_claim")
    op.execute("DROP INDEX ix_inbox_events_match_key")
    op.execute(
        f"CREATE TABLE inbox_events ({_PG_COLUMNS},\n"
        "    CONSTRAINT pk_inbox_events PRIMARY KEY (id, received_at)\n"
        ") PARTITION BY RANGE (received_at)"
    )
    op.execute(
        f"CREATE TABLE inbox_events_default PARTITION OF inbox_events DEFAULT "
        f"WITH (fillfactor = {_FILLFACTOR})"
    )
    today = datetime.now(UTC).date()
    days = {today + timedelta(days=n) for n in range(_DAYS_AHEAD + 1)}
    days.update(
        row[0]
        for row in bind.execute(
            sa.text(
                "SELECT DISTINCT CAST(received_at AT TIME ZONE 'UTC' AS date) FROM inbox_events_old"
            )
        )
    )
    for day in sorted(days):
        op.execute(
            f"CREATE TABLE {_PREFIX}{day:%Y%m%d} PARTITION OF inbox_events "
            f"FOR VALUES {_day_range(day)} WITH (fillfactor = {_FILLFACTOR})"
        )
    op.execute(f"INSERT INTO inbox_events ({_COLUMNS}) SELECT {_COLUMNS} FROM inbox_events_old")  # noqa: S608
    op.execute("DROP TABLE inbox_events_old")
    op.execute("ALTER SEQUENCE inbox_events_id_seq OWNED BY inbox_events.id")
    # Only events still waiting: settling one then adds no entry to it.
    op.execute(
        "CREATE INDEX ix_inbox_events_claim ON inbox_events (status, available_at) "
        "WHERE status IN ('pending', 'processing', 'unmatched', 'dead')"
    )
    op.execute(
        "CREATE INDEX ix_inbox_events_match_key ON inbox_events (connection, match_key) "
        "WHERE match_key IS NOT NULL"
    )


# Downgrade restores the unique constraint; a key sent again after retention pruned its dedup
# row can be in the inbox twice, and every copy is kept under a suffixed key.
_RENAME_COPIES = (
    "UPDATE inbox_events SET dedup_key = substr(dedup_key, 1, 200) || ':copy:' || "
    "CAST(id AS VARCHAR(20)) WHERE id NOT IN (SELECT min(id) FROM inbox_events "
    "GROUP BY source, connection, dedup_key)"
)


def downgrade() -> None:
    op.execute(_RENAME_COPIES)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE inbox_events_id_seq OWNED BY NONE")
        op.execute("ALTER TABLE inbox_events RENAME TO inbox_events_old")
        op.execute("ALTER TABLE inbox_events_old RENAME CONSTRAINT pk_inbox_events TO pk_inbox_old")
        op.execute("DROP INDEX ix_inbox_events_claim")
        op.execute("DROP INDEX ix_inbox_events_match_key")
        op.execute(
            f"CREATE TABLE inbox_events ({_PG_COLUMNS},\n"
            "    CONSTRAINT pk_inbox_events PRIMARY KEY (id),\n"
            f"    CONSTRAINT {_UNIQUE} UNIQUE (source, connection, dedup_key)\n"
            ")"
        )
        op.execute(f"INSERT INTO inbox_events ({_COLUMNS}) SELECT {_COLUMNS} FROM inbox_events_old")  # noqa: S608
        op.execute("DROP TABLE inbox_events_old")
        op.execute("ALTER SEQUENCE inbox_events_id_seq OWNED BY inbox_events.id")
        op.execute("CREATE INDEX ix_inbox_events_claim ON inbox_events (status, available_at)")
        op.execute(
            "CREATE INDEX ix_inbox_events_match_key ON inbox_events (connection, match_key) "
            "WHERE match_key IS NOT NULL"
        )
    else:
        with op.batch_alter_table("inbox_events") as batch:
            batch.create_unique_constraint(_UNIQUE, ["source", "connection", "dedup_key"])
    op.drop_index("ix_inbox_dedup_received_at", table_name="inbox_dedup")
    op.drop_table("inbox_dedup")
