"""Group commit for the inbox: the events of requests arriving together are written in one
transaction, and each request is answered once that transaction is durable.

A commit is the dearest step of intake (an fsync on SQLite, a WAL flush on PostgreSQL);
sharing it among concurrent requests is what keeps acknowledgements fast under load. A request
alone is written at once: nothing waits for company.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from webhooks.errors import StorageUnavailable
from webhooks.store import inbox

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class _Request:
    source: str
    connection: str
    events: Sequence[inbox.NewEvent]
    received_at: datetime
    done: asyncio.Future[int]


class InboxWriter:
    def __init__(self, engine: AsyncEngine, *, max_events: int = 5000) -> None:
        self._engine = engine
        self._max_events = max_events
        self._waiting: list[_Request] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def write(
        self,
        *,
        source: str,
        connection: str,
        events: Sequence[inbox.NewEvent],
        received_at: datetime,
    ) -> int:
        """Store the events (skipping dedup keys already stored); how many were new. Returns
        only once they are committed; raises StorageUnavailable when they could not be."""
        if not events:
            return 0
        request = _Request(
            source=source,
            connection=connection,
            events=events,
            received_at=received_at,
            done=asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(request)
        self._wake.set()
        if self._task is None or self._task.done():
            # A fresh context: the task outlives the request that happened to start it, and
            # must not log under that request's id.
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())
        # Shielded: a client that hangs up must not cancel the commit other requests share.
        return await asyncio.shield(request.done)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                group = self._take()
                await self._commit(group)
            if self._closing:
                return

    def _take(self) -> list[_Request]:
        group: list[_Request] = []
        size = 0
        while self._waiting and (
            not group or size + len(self._waiting[0].events) <= self._max_events
        ):
            request = self._waiting.pop(0)
            group.append(request)
            size += len(request.events)
        return group

    async def _commit(self, group: list[_Request]) -> None:
        try:
            # A plain connection, not an ORM session: on this path its overhead was a third of
            # the cost of storing a request.
            async with self._engine.begin() as connection:
                stored = await inbox.insert_grouped(
                    connection,
                    groups=[(r.source, r.connection, r.events, r.received_at) for r in group],
                )
        except Exception as exc:
            log.exception("inbox_write_failed", requests=len(group))
            for request in group:
                if not request.done.done():
                    request.done.set_exception(
                        StorageUnavailable(f"events could not be stored, send them again: {exc!r}")
                    )
            return
        for request, count in zip(group, stored, strict=True):
            if not request.done.done():
                request.done.set_result(count)

    async def aclose(self) -> None:
        """Finish what was handed over, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
