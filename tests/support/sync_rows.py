"""A mix of write-back rows and dead letters in every state, for the sync status tests (store,
service, API, CLI, metrics): one seed, one set of expected figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, update

from webhooks.store import accounts, inbox
from webhooks.store.db import SessionFactory
from webhooks.store.models import InboxEvent, WritebackItem, core_table

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
LONG_ERROR = "field health_band rejects the value " + "x" * 1000

# (connection, crm id) -> (status, attempts, last_error, pending_since ago, written_at ago,
# available_at from NOW)
WRITEBACKS: dict[tuple[str, str], tuple[str, int, str | None, timedelta | None, timedelta | None, timedelta]] = {  # noqa: E501
    ("default", "1"): ("done", 0, None, None, timedelta(hours=1), -timedelta(hours=1)),
    ("default", "2"): ("done", 0, None, None, timedelta(minutes=10), -timedelta(minutes=10)),
    ("default", "3"): ("pending", 0, None, timedelta(minutes=2), None, timedelta(0)),
    ("default", "4"): (
        "pending", 3, "HTTP 503 Service Unavailable", timedelta(minutes=40),
        timedelta(hours=2), timedelta(minutes=5),
    ),
    ("default", "5"): ("sending", 1, "timeout", timedelta(minutes=30), None, -timedelta(minutes=1)),
    ("default", "6"): (
        "failed", 1, "record 6 was deleted in the CRM", timedelta(hours=1), None,
        -timedelta(hours=1),
    ),
    ("emea", "7"): ("failed", 1, LONG_ERROR, timedelta(hours=3), None, -timedelta(hours=3)),
    ("emea", "8"): ("pending", 0, None, timedelta(minutes=1), None, timedelta(0)),
}  # fmt: skip
# connection -> statuses of its inbox events
INBOX = {"default": ["dead", "dead", "done", "pending"], "segment": ["dead"]}


async def seed(sessions: SessionFactory, *, prefix: str = "") -> dict[tuple[str, str], int]:
    """Store the rows, each connection's name after `prefix` (to keep them apart from other
    rows of a shared database); returns the account id of each (connection, crm id)."""
    async with sessions() as session, session.begin():
        locked = await accounts.lock_accounts(
            session, keys=[(prefix + c, "hubspot", crm_id) for c, crm_id in WRITEBACKS], now=NOW
        )
        ids = {(c, crm_id): locked[prefix + c, "hubspot", crm_id].id for c, crm_id in WRITEBACKS}
        rows = []
        for key, (status, attempts, error, since, written, due) in WRITEBACKS.items():
            rows.append(
                {
                    "account_id": ids[key],
                    "connection": prefix + key[0],
                    "record_id": key[1],
                    "fields": {"health_score": 50},
                    "fields_hash": "h",
                    "version": 1,
                    "status": status,
                    "attempts": attempts,
                    "available_at": NOW + due,
                    "lease_until": NOW + timedelta(minutes=1) if status == "sending" else None,
                    "last_error": error,
                    "written_version": None if written is None else 1,
                    "written_at": None if written is None else NOW - written,
                    "pending_since": None if since is None else NOW - since,
                }
            )
        await session.execute(insert(core_table(WritebackItem)), rows)
        for name, statuses in INBOX.items():
            connection = prefix + name
            events = [
                inbox.NewEvent(dedup_key=f"{connection}-{i}", kind="usage", payload={})
                for i in range(len(statuses))
            ]
            await inbox.insert_events(
                session, source="native", connection=connection, events=events, received_at=NOW
            )
            for i, status in enumerate(statuses):
                await session.execute(
                    update(InboxEvent)
                    .where(InboxEvent.dedup_key == f"{connection}-{i}")
                    .values(status=status, last_error="boom" if status == "dead" else None)
                )
    return ids
