"""The service's worker prunes on its retention schedule (settings), and not when retention is
turned off."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, insert, select

from webhooks.clock import utcnow
from webhooks.store.models import InboxEvent


async def old_processed_event(service) -> None:
    at = utcnow() - timedelta(days=20)
    async with service.runtime.sessions() as session, session.begin():
        await session.execute(
            insert(InboxEvent),
            [{"source": "native", "connection": "default", "dedup_key": "old", "kind": "usage",
              "payload": {}, "received_at": at, "status": "done", "attempts": 0,
              "available_at": at, "processed_at": at}],
        )  # fmt: skip


async def inbox_rows(service) -> int:
    async with service.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(InboxEvent)) or 0)


async def passes(service, count: int) -> None:
    for _ in range(count):
        await service.runtime.pipeline.run_once()
        await asyncio.sleep(0.05)


async def test_the_worker_prunes_on_the_retention_schedule(service_factory) -> None:
    service = await service_factory(retention_interval_seconds=0.01)
    await old_processed_event(service)
    await passes(service, 20)
    assert await inbox_rows(service) == 0


async def test_no_scheduled_prune_when_retention_is_off(service_factory) -> None:
    service = await service_factory(retention_interval_seconds=0.01, retention_enabled=False)
    await old_processed_event(service)
    await passes(service, 5)
    assert await inbox_rows(service) == 1
