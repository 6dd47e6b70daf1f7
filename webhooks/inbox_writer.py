"""Group commit for the inbox: the events of requests arriving together are written in one
transaction, and each request is answered once that transaction is durable.

A commit is the dearest step of intake (an fsync on SQLite, a WAL flush on PostgreSQL);
sharing it among concurrent requests is what keeps acknowledgements fast under load. A request
alone is written at once: nothing waits for company.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from connector import bounds
from webhooks.errors import InvalidFields, ServiceError, StorageUnavailable
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
            stored = await self._insert(group)
        except Exception as exc:
            if len(group) == 1 or _is_outage(exc):
                self._fail(group, exc)
                return
            # One request's data can fail the statement all share: each is tried on its own,
            # so only the bad one fails and the others are acknowledged.
            log.warning(
                "inbox_group_failed", requests=len(group), error=type(exc).__name__, retry="alone"
            )
            for request in group:
                try:
                    [count] = await self._insert([request])
                except Exception as alone:
                    self._fail([request], alone)
                else:
                    if not request.done.done():
                        request.done.set_result(count)
            return
        for request, count in zip(group, stored, strict=True):
            if not request.done.done():
                request.done.set_result(count)

    async def _insert(self, group: list[_Request]) -> list[int]:
        # A plain connection, not an ORM session: on this path its overhead was a third of
        # the cost of storing a request.
        async with self._engine.begin() as connection:
            return await inbox.insert_grouped(
                connection,
                groups=[(r.source, r.connection, r.events, r.received_at) for r in group],
            )

    def _fail(self, requests: list[_Request], exc: Exception) -> None:
        """Answer requests whose events were not stored. The database's message stays in the
        log: it may quote the request's values and says nothing a sender can act on."""
        log.error(
            "inbox_write_failed",
            requests=len(requests),
            sources=sorted({r.source for r in requests}),
            connections=sorted({r.connection for r in requests}),
            error=repr(exc)[:500],
        )
        for request in requests:
            if request.done.done():
                continue
            problem = _unstorable(request)
            error: ServiceError = (
                InvalidFields(f"{problem}; nothing of this request was stored")
                if problem is not None
                else StorageUnavailable("events could not be stored, send them again")
            )
            request.done.set_exception(error)

    async def aclose(self) -> None:
        """Finish what was handed over, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task


# Failures of the database itself, not of one request's values: every request fails at once.
_OUTAGES = (
    OSError,
    TimeoutError,
    sa_exc.DisconnectionError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)


def _is_outage(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGES):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


# The inbox columns a request's values go to (webhooks/store/models.InboxEvent).
_COLUMN_LIMITS = (
    ("kind", bounds.EVENT_KIND),
    ("dedup_key", bounds.DEDUP_KEY),
)


def _unstorable(request: _Request) -> str | None:
    """What in a request the inbox cannot hold, named without quoting it; None when nothing
    known (intake validation should have refused all of this: it is the last line)."""
    for index, event in enumerate(request.events):
        for name, limit in _COLUMN_LIMITS:
            value = getattr(event, name)
            if len(value) > limit:
                return f"event {index}: {name} is longer than {limit} characters"
            problem = bounds.text_problem(value)
            if problem is not None:
                return f"event {index}: {name} {problem}"
        if event.body is not None:
            problem = bounds.text_problem(event.body)
            if problem is not None:
                return f"event {index}: body {problem}"
        try:
            document = json.dumps(event.payload)
        except (TypeError, ValueError):
            return f"event {index}: payload is not JSON"
        found = bounds.unstorable_text(document, event.payload)
        if found is not None:
            return f"event {index}: payload.{found}"
    return None
