"""Configuration repository: HealthConfig versions (the newest is in force), their audit log,
and the recompute jobs that rescore every account after a change."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from signals.config import HealthConfig
from webhooks.store import leases
from webhooks.store.models import ConfigAudit, ConfigVersion, RecomputeJob

PENDING, RUNNING, DONE = "pending", "running", "done"
# Why every account is rescored (RecomputeJob.cause).
RecomputeCause = Literal["configuration", "time"]

# previous_id of a version that replaced the defaults (no row): unique like any other id, so
# two first versions cannot both be stored either.
DEFAULTS_ID = 0


class VersionConflict(Exception):
    """Raised by insert_version: another version already follows `previous_id`."""


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


async def current_version(session: AsyncSession) -> ConfigVersion | None:
    """The row in force; None while the defaults are."""
    return (
        await session.execute(select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(1))
    ).scalar_one_or_none()


async def get_version(session: AsyncSession, *, version_id: int) -> ConfigVersion | None:
    return await session.get(ConfigVersion, version_id)


async def list_versions(
    session: AsyncSession, *, limit: int, offset: int
) -> tuple[list[ConfigVersion], int]:
    """One page of versions, newest first, and how many there are."""
    rows = (
        await session.execute(
            select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(limit).offset(offset)
        )
    ).scalars()
    total = (await session.execute(select(func.count()).select_from(ConfigVersion))).scalar_one()
    return list(rows), total


async def insert_version(
    session: AsyncSession,
    *,
    config: HealthConfig,
    previous_id: int | None,
    author: str,
    comment: str,
    now: datetime,
    scope: str | None = None,
) -> ConfigVersion:
    """Store `config` as the version following `previous_id` (None: the defaults); `scope`
    names the connection a connection-bound key's change was limited to.

    VersionConflict when another version follows it already: a concurrent change won. The
    unique previous_id makes this check atomic on every backend; the caller's transaction
    must then be rolled back.
    """
    version = ConfigVersion(
        version=config.version,
        document=config.model_dump(mode="json"),
        created_at=now,
        author=author,
        comment=comment,
        previous_id=DEFAULTS_ID if previous_id is None else previous_id,
        scope=scope,
    )
    session.add(version)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise VersionConflict(f"a version following {previous_id} exists already") from exc
    return version


async def add_audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    from_version_id: int | None,
    to_version_id: int,
    comment: str,
    changed: list[str],
    now: datetime,
) -> ConfigAudit:
    row = ConfigAudit(
        at=now,
        actor=actor,
        action=action,
        from_version_id=from_version_id,
        to_version_id=to_version_id,
        comment=comment,
        changed=changed,
    )
    session.add(row)
    await session.flush()
    return row


async def list_audit(
    session: AsyncSession, *, limit: int, offset: int, scope: str | None = None
) -> tuple[list[ConfigAudit], int]:
    """One page of the audit log, newest first, and how many entries there are; with `scope`,
    only global changes and those limited to that connection."""
    query = select(ConfigAudit)
    if scope is not None:
        query = query.join(ConfigVersion, ConfigVersion.id == ConfigAudit.to_version_id).where(
            or_(ConfigVersion.scope.is_(None), ConfigVersion.scope == scope)
        )
    rows = (
        await session.execute(query.order_by(ConfigAudit.id.desc()).limit(limit).offset(offset))
    ).scalars()
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    return list(rows), total


async def save(
    session: AsyncSession, *, config: HealthConfig, author: str, comment: str, now: datetime
) -> ConfigVersion:
    """Store a new version and queue the rescoring of every account under it."""
    version = await insert_version(
        session,
        config=config,
        previous_id=await current_id(session),
        author=author,
        comment=comment,
        now=now,
    )
    await request_recompute(
        session, config_id=version.id, reason=f"config {config.version}", now=now
    )
    return version


async def request_recompute(
    session: AsyncSession,
    *,
    config_id: int | None,
    reason: str,
    now: datetime,
    connection: str | None = None,
    cause: RecomputeCause = "configuration",
    available_at: datetime | None = None,
) -> RecomputeJob:
    """Queue the rescoring of every account, or of one connection's accounts."""
    # A job makes older unfinished ones of its cause that cover no more than it does pointless
    # (not the other cause's: a configuration change tells nobody what time passing finds).
    superseded = (RecomputeJob.status != DONE) & (RecomputeJob.cause == cause)
    if connection is not None:
        superseded &= RecomputeJob.connection == connection
    await session.execute(
        update(RecomputeJob)
        .where(superseded)
        .values(status=DONE, finished_at=now, lease_until=None)
    )
    job = RecomputeJob(
        connection=connection,
        config_id=config_id,
        reason=reason,
        status=PENDING,
        after_account_id=0,
        rescored=0,
        created_at=now,
        available_at=now if available_at is None else available_at,
        cause=cause,
    )
    session.add(job)
    await session.flush()
    return job


async def schedule_time_rescore(
    session: AsyncSession, *, now: datetime, interval: timedelta
) -> RecomputeJob | None:
    """Keep one rescore of every account for time passing ahead: when none is pending, queue
    one `interval` from now (from the last one's start, when that is later). None: one is."""
    pending = await session.scalar(
        select(RecomputeJob.id).where(RecomputeJob.cause == "time", RecomputeJob.status != DONE)
    )
    if pending is not None:
        return None
    last = await session.scalar(
        select(func.max(RecomputeJob.created_at)).where(RecomputeJob.cause == "time")
    )
    due = now + interval if last is None else max(now, last + interval)
    return await request_recompute(
        session,
        config_id=None,
        reason="time passes: recency, windows, onboarding and sentiment expiries move on",
        now=now,
        cause="time",
        available_at=due,
    )


async def claim_recompute(
    session: AsyncSession, *, now: datetime, lease_seconds: float
) -> tuple[int, int, str | None, RecomputeCause] | None:
    """The oldest due recompute job as (job id, last account id done, the connection it is
    limited to, its cause), leased to us."""
    rows = await leases.claim(
        session,
        RecomputeJob,
        idle=PENDING,
        busy=RUNNING,
        now=now,
        limit=1,
        lease_seconds=lease_seconds,
        order_by=RecomputeJob.id,
        returning=(
            RecomputeJob.id,
            RecomputeJob.after_account_id,
            RecomputeJob.connection,
            RecomputeJob.cause,
        ),
    )
    if not rows:
        return None
    job_id, after, connection, cause = rows[0]
    return job_id, after, connection, "time" if cause == "time" else "configuration"


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
