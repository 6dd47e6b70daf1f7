"""Backfill: page through a CRM's existing records and feed them through the pipeline.

Each page's events go into the inbox (native documents of source "backfill": their values are
the CRM's; deduplicated by the record version) in the same transaction that moves the cursor,
so an interrupted backfill resumes exactly where it stopped and a repeated one stores nothing
twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from connector.native import to_native
from webhooks.clock import utcnow
from webhooks.connections import Connection
from webhooks.errors import NotConfigured
from webhooks.inbox_kinds import BACKFILL_SOURCE
from webhooks.progress import Progress
from webhooks.store import backfills, inbox
from webhooks.store.db import SessionFactory

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class BackfillReport:
    pages: int = 0
    events: int = 0
    stored: int = 0
    skipped_types: list[str] = field(default_factory=list)


async def run_backfill(
    *,
    sessions: SessionFactory,
    connection: Connection,
    object_types: Sequence[str] | None = None,
    restart: bool = False,
    progress: Progress | None = None,
) -> BackfillReport:
    connector = connection.connector
    if connector is None:
        raise NotConfigured(f"connection {connection.name!r} has no CRM credentials to read with")
    types = list(object_types or connector.backfill_objects)
    unknown = sorted(set(types) - set(connector.backfill_objects))
    if unknown:
        raise ValueError(
            f"{connector.name} cannot backfill {unknown}; "
            f"choose from {list(connector.backfill_objects)}"
        )
    if restart:
        async with sessions() as session, session.begin():
            await backfills.reset(session, connection=connection.name)
    report = BackfillReport()
    for object_type in types:
        async with sessions() as session:
            held = await backfills.cursor(
                session, connection=connection.name, object_type=object_type
            )
        if held is not None and held.done:
            report.skipped_types.append(object_type)
            continue
        after = None if held is None else held.after
        while True:
            page = await connector.list_backfill_page(object_type=object_type, after=after)
            documents = [(key, to_native(event)) for key, event in page.events]
            new = [
                inbox.NewEvent(dedup_key=f"backfill:{key}", kind=doc["type"], payload=doc)
                for key, doc in documents
            ]
            now = utcnow()
            async with sessions() as session, session.begin():
                stored = await inbox.insert_events(
                    session, source=BACKFILL_SOURCE, connection=connection.name, events=new,
                    received_at=now,
                )  # fmt: skip
                await backfills.advance(
                    session, connection=connection.name, object_type=object_type,
                    after=page.next_after, events=stored, now=now,
                )  # fmt: skip
            report.pages += 1
            report.events += len(new)
            report.stored += stored
            if progress is not None:
                progress.update(report.events, detail=f"{object_type} (page {report.pages})")
            log.info(
                "backfill_page", connection=connection.name, object_type=object_type,
                events=len(new), stored=stored,
            )  # fmt: skip
            if page.next_after is None:
                break
            after = page.next_after
    if progress is not None:
        progress.finish()
    return report
