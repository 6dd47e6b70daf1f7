"""Configuration repository: HealthConfig versions (the newest is in force) and the recompute
jobs that rescore every account after a change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from signals.config import HealthConfig
from webhooks.store import leases
from webhooks.store.models import ConfigVersion, RecomputeJob

PENDING, RUNNING, DONE = "pending", "running", "done"


async def current(session: AsyncSession) -> tuple[int | None, HealthConfig]:
    """The configuration in force and its row id; the defaults (id None) until one is saved."""
    row = (
        await session.execute(select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(1))
    ).scalar_one_or_none()
    if row is None:
        return None, HealthConfig()
    return row.id, HealthConfig.model_validate(row.document)


async def current_id(session: AsyncSession) -> int | None:
    return (await session.execute(select(func.max(ConfigVersion.id)))).scalar_one_or_none()


async def save(
    session: AsyncSession, *, config: HealthConfig, author: str, comment: str, now: datetime
) -> ConfigVersion:
    """Store a new version and queue the rescoring of every account under it."""
    version = ConfigVersion(
        version=config.version,
        document=config.model_dump(mode="json"),
        created_at=now,
        author=author,
        comment=comment,
    )
    session.add(version)
    await session.flush()
    await request_recompute(
        session, config_id=version.id, reason=f"config {config.version}", now=now
    )
    return version


async def request_recompute(
    session: AsyncSession, *, config_id: int | None, reason: str, now: datetime
) -> RecomputeJob:
    # A job that rescores everything makes older unfinished ones pointless.
    await session.execute(
        update(RecomputeJob)
        .where(RecomputeJob.status != DONE)
        .values(status=DONE, finished_at=now, lease_until=None)
    )
    job = RecomputeJob(
        config_id=config_id,
        reason=reason,
        status=PENDING,
        after_account_id=0,
        rescored=0,
        created_at=now,
        available_at=now,
    )
    session.add(job)
    await session.flush()
    return job


async def claim_recompute(
    session: AsyncSession, *, now: datetime, lease_seconds: float
) -> tuple[int, int] | None:
    """The oldest unfinished recompute job as (job id, last account id done), leased to us."""
    rows = await leases.claim(
        session,
        RecomputeJob,
        idle=PENDING,
        busy=RUNNING,
        now=now,
        limit=1,
        lease_seconds=lease_seconds,
        order_by=RecomputeJob.id,
        returning=(RecomputeJob.id, RecomputeJob.after_account_id),
    )
    return (rows[0][0], rows[0][1]) if rows else None


async def advance_recompute(
    session: AsyncSession, *, job_id: int, after_account_id: int, rescored: int, finished: bool,
    now: datetime,
) -> None:  # fmt: skip
    """Record progress; the job goes back to pending (for the next chunk) or is done."""
    values: dict[str, Any] = {
        "after_account_id": after_account_id,
        "rescored": RecomputeJob.rescored + rescored,
        "lease_until": None,
        "status": DONE if finished else PENDING,
        "available_at": now,
    }
    if finished:
        values["finished_at"] = now
    await session.execute(update(RecomputeJob).where(RecomputeJob.id == job_id).values(**values))


async def get_job(session: AsyncSession, *, job_id: int) -> RecomputeJob | None:
    return await session.get(RecomputeJob, job_id, populate_existing=True)
