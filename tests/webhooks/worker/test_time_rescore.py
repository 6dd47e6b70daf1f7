"""Time passing rescores every account, on SQLite and PostgreSQL: an account that goes silent
sends no event, yet its days since last use grow; the scheduled rescore finds it at risk and
its alert tells people, as an event would have."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from signals.config import HealthConfig
from testkit import RECENCY_ONLY, in_thread, native, store_native
from webhooks.store import configs
from webhooks.store.migrate import alembic_config
from webhooks.store.models import Account, Alert, RecomputeJob
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

DAY = timedelta(days=1)
# Recency only, at risk after 14 days without use (a score below 40 at 8.4 days).
SILENCE = {**RECENCY_ONLY, "signals": {**RECENCY_ONLY["signals"], "active_use": {
    **RECENCY_ONLY["signals"]["active_use"],
    "indicators": {**RECENCY_ONLY["signals"]["active_use"]["indicators"],
                   "recency_days": {"at_risk": 14, "healthy": 0, "weight": 1}},
}}}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def world(service_factory, rescore_interval_hours: float = 24):
    service = await service_factory(hubspot_access_token=None)
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate(SILENCE),
            author="test",
            comment="recency only",
            now=datetime.now(UTC) - DAY,
        )
    pipeline_clock = Clock()
    pipeline = Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(rescore_interval_hours=rescore_interval_hours),
        clock=pipeline_clock,
    )
    await store_native(
        service.runtime,
        [
            native("account", "quiet", days_ago=200, attributes={"name": "Quiet Co"}),
            native("usage", "quiet", days_ago=100, user="u1"),
            native("usage", "quiet", days_ago=0.01, user="u1"),
        ],
    )
    pipeline_clock.now = datetime.now(UTC)  # the events stored are due
    while await pipeline.run_once():
        pass
    return service, pipeline, pipeline_clock


async def band(service) -> str:
    async with service.runtime.sessions() as session:
        return str(await session.scalar(select(Account.band).where(Account.crm_id == "quiet")))


async def test_a_silent_account_ages_into_at_risk_and_its_alert_tells(service_factory) -> None:
    service, pipeline, clock = await world(service_factory)
    assert await band(service) == "healthy"
    # Three weeks without an event: nothing arrives, but a day's rescores run.
    for _ in range(21):
        clock.now += DAY
        while await pipeline.run_once():
            pass
    assert await band(service) == "at_risk"
    async with service.runtime.sessions() as session:
        alert = await session.scalar(select(Alert).where(Alert.rule == "entered-at-risk"))
        jobs = list(await session.scalars(select(RecomputeJob).order_by(RecomputeJob.id)))
    assert alert is not None
    assert alert.cause == "live"  # told, not recorded quietly
    # One rescore a day; the next is queued at the worker's next check, a day after the last.
    assert [job.status for job in jobs if job.cause == "time"] == ["done"] * 21
    last_start = max(job.created_at for job in jobs)
    clock.now += timedelta(minutes=6)
    await pipeline.run_once()
    async with service.runtime.sessions() as session:
        [queued] = await session.scalars(
            select(RecomputeJob).where(RecomputeJob.status == "pending")
        )
    assert queued.cause == "time"
    assert queued.available_at == last_start + DAY


async def test_a_configuration_change_does_not_cancel_the_time_rescore(service_factory) -> None:
    service, _, clock = await world(service_factory)
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate({**SILENCE, "bands": {"healthy_min": 80}}),
            author="test",
            comment="stricter",
            now=clock.now,
        )
        jobs = {job.cause: job.status for job in await session.scalars(select(RecomputeJob))}
    assert jobs == {"configuration": "pending", "time": "pending"}


async def test_no_time_rescore_when_the_interval_is_0(service_factory) -> None:
    service, pipeline, clock = await world(service_factory, rescore_interval_hours=0)
    clock.now += 30 * DAY
    while await pipeline.run_once():
        pass
    assert await band(service) == "healthy"  # as last scored: nothing rescored it


async def test_migration_0028_keeps_every_job_as_a_configuration_one(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    in_thread(command.upgrade, config, "20261205_0027")
    engine = create_async_engine(empty_database_url)
    now = datetime(2026, 12, 5, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO recompute_jobs (reason, status, after_account_id, rescored, "
                    "created_at, available_at) VALUES ('config x', 'done', 0, 5, :at, :at)"
                ),
                {"at": now},
            )
        in_thread(command.upgrade, config, "20261205_0028")
        async with engine.begin() as connection:
            assert list(
                await connection.execute(text("SELECT reason, cause FROM recompute_jobs"))
            ) == [("config x", "configuration")]
            await connection.execute(
                text(
                    "INSERT INTO recompute_jobs (reason, status, after_account_id, rescored, "
                    "created_at, available_at, cause) VALUES ('time', 'pending', 0, 0, :at, :at, "
                    "'time')"
                ),
                {"at": now},
            )
        in_thread(command.downgrade, config, "20261205_0027")
        async with engine.connect() as connection:
            assert list(await connection.execute(text("SELECT reason FROM recompute_jobs"))) == [
                ("config x",)
            ]
    finally:
        await engine.dispose()
