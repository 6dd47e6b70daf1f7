"""Backtest and suggestion jobs: queued by a request, run in the background by the process
that took it, their progress and result kept for any process to answer."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhooks.store.models import AnalysisJob

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
# A running job beats at least this often (each chunk of cases, and while it waits its turn):
# one silent for longer belongs to a process that stopped.
STALE_AFTER = timedelta(minutes=5)
INTERRUPTED = "interrupted: the process running it stopped; run it again"


async def create(
    session: AsyncSession,
    *,
    kind: str,
    connection: str,
    author: str,
    request: dict[str, Any],
    now: datetime,
) -> AnalysisJob:
    job = AnalysisJob(
        kind=kind,
        connection=connection,
        author=author,
        request=request,
        status=QUEUED,
        done=0,
        total=0,
        created_at=now,
        heartbeat_at=now,
    )
    session.add(job)
    await session.flush()
    return job


async def get(session: AsyncSession, *, job_id: int, connection: str) -> AnalysisJob | None:
    """The job, if it is the connection's: another connection's jobs do not exist for it."""
    return (
        await session.execute(
            select(AnalysisJob).where(
                AnalysisJob.id == job_id, AnalysisJob.connection == connection
            )
        )
    ).scalar_one_or_none()


async def list_recent(
    session: AsyncSession, *, connection: str, limit: int = 20
) -> list[AnalysisJob]:
    return list(
        (
            await session.execute(
                select(AnalysisJob)
                .where(AnalysisJob.connection == connection)
                .order_by(AnalysisJob.id.desc())
                .limit(limit)
            )
        ).scalars()
    )


async def start(session: AsyncSession, *, job_id: int, now: datetime) -> None:
    await session.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id)
        .values(status=RUNNING, started_at=now, heartbeat_at=now)
    )


async def beat(
    session: AsyncSession,
    *,
    job_id: int,
    now: datetime,
    done: int | None = None,
    total: int | None = None,
) -> None:
    """The job is alive (waiting its turn, or `done` of `total` cases)."""
    values: dict[str, Any] = {"heartbeat_at": now}
    if done is not None:
        values["done"] = done
    if total is not None:
        values["total"] = total
    await session.execute(update(AnalysisJob).where(AnalysisJob.id == job_id).values(**values))


async def finish(
    session: AsyncSession,
    *,
    job_id: int,
    result: dict[str, Any] | None,
    error: str | None,
    now: datetime,
) -> None:
    await session.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id)
        .values(
            status=FAILED if error is not None else DONE,
            result=result,
            error=error,
            finished_at=now,
            heartbeat_at=now,
        )
    )


async def fail_stale(session: AsyncSession, *, now: datetime) -> int:
    """Fail the jobs whose process stopped beating (a restart, a crash): their progress is
    lost, and saying so beats a job that shows "running" forever."""
    result = await session.execute(
        update(AnalysisJob)
        .where(
            AnalysisJob.status.in_((QUEUED, RUNNING)),
            AnalysisJob.heartbeat_at < now - STALE_AFTER,
        )
        .values(status=FAILED, error=INTERRUPTED, finished_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
