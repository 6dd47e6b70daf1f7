"""What the worker guarantees, on SQLite and PostgreSQL: coalescing, crash safety, no double
processing by concurrent workers, dead letters and replay, recompute after a config change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from connector.base import WriteResult
from signals.config import HealthConfig
from testkit import daily_user, native, store_native
from webhooks.store import configs, facts, inbox
from webhooks.store.models import HealthSnapshot, InteractionFact, RecomputeJob, WritebackItem
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

# Delivery, not evidence: these accounts are scored on the few events they get.
pytestmark = pytest.mark.usefixtures("verdict_on_any_evidence")


def _pipeline(service, *, clock=None, **options) -> Pipeline:
    return Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(**options),
        **({"clock": clock} if clock else {}),
    )


async def _count(service, model) -> int:
    async with service.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _drain(pipeline: Pipeline) -> None:
    while (await pipeline.process_inbox()).claimed:
        pass


async def test_1000_events_for_10_accounts_are_scored_10_times(service_factory) -> None:
    service = await service_factory(hubspot_access_token=None)
    events = [
        native("usage", str(account), days_ago=n % 20, user=f"u{n % 7}")
        for n in range(100)
        for account in range(10)
    ]
    assert await store_native(service.runtime, events) == 1000
    report = await _pipeline(service, batch_size=1000).process_inbox()
    assert (report.processed, report.rescored) == (1000, 10)
    assert await _count(service, HealthSnapshot) == 10


async def test_crash_between_claim_and_commit_loses_nothing(service_factory) -> None:
    service = await service_factory(hubspot_access_token=None)
    await store_native(
        service.runtime, [native("interaction", "1", channel="call", direction="ours")] * 5
    )
    # A worker claims the batch and dies before committing any work.
    async with service.runtime.sessions() as session, session.begin():
        claimed = await inbox.claim_batch(
            session, now=datetime.now(UTC), limit=100, lease_seconds=60
        )
    assert len(claimed) == 5
    assert (await _pipeline(service).process_inbox()).claimed == 0, "still leased"
    later = datetime.now(UTC) + timedelta(seconds=61)
    report = await _pipeline(service, clock=lambda: later).process_inbox()
    assert report.processed == 5
    assert await _count(service, InteractionFact) == 5
    async with service.runtime.sessions() as session:
        assert await inbox.count_by_status(session) == {"done": 5}


async def test_two_workers_never_process_an_event_twice(service_factory, database_url) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrent workers are a PostgreSQL deployment; SQLite runs one worker")
    service = await service_factory(hubspot_access_token=None)
    events = [
        native("interaction", str(n % 40), channel="email", direction="customer")
        for n in range(2000)
    ]
    await store_native(service.runtime, events)
    workers = [_pipeline(service, batch_size=100) for _ in range(4)]
    await asyncio.gather(*(_drain(worker) for worker in workers))
    assert await _count(service, InteractionFact) == 2000
    async with service.runtime.sessions() as session:
        assert await inbox.count_by_status(session) == {"done": 2000}


async def test_repeated_failure_ends_in_dead_letters_and_replay_processes_it(
    service_factory, monkeypatch
) -> None:
    service = await service_factory(hubspot_access_token=None)
    await store_native(service.runtime, [native("usage", "1", user="u")])
    original = facts.fold

    async def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(facts, "fold", broken)
    clock = [datetime.now(UTC) + timedelta(seconds=1)]
    pipeline = _pipeline(service, clock=lambda: clock[0], max_attempts=2, retry_base_seconds=10)
    await pipeline.process_inbox()
    clock[0] += timedelta(seconds=11)
    await pipeline.process_inbox()
    async with service.runtime.sessions() as session:
        [dead] = await inbox.dead_letters(session)
    assert (dead.attempts, dead.status) == (2, "dead")
    assert "disk on fire" in (dead.last_error or "")

    monkeypatch.setattr(facts, "fold", original)
    async with service.runtime.sessions() as session, session.begin():
        assert await inbox.replay(session, event_ids=[dead.id], now=clock[0]) == 1
    assert (await pipeline.process_inbox()).processed == 1
    async with service.runtime.sessions() as session:
        assert await inbox.count_by_status(session) == {"done": 1}


async def test_config_change_rescores_every_account_and_writes_only_changes(
    service, monkeypatch
) -> None:
    sent: list[str] = []

    async def write(updates):
        sent.extend(u.record_id for u in updates)
        return WriteResult(written={u.record_id for u in updates})

    [connector] = service.runtime.connections.writers().values()
    monkeypatch.setattr(connector, "write_health", write)
    # Account 1 used the product 5 days ago (neutral by default), account 2 today (healthy).
    await store_native(service.runtime, daily_user("1", first_day_ago=5) + daily_user("2"))
    pipeline = _pipeline(service, recompute_chunk=1)
    await pipeline.run_once()
    assert sorted(sent) == ["1", "2"]
    sent.clear()

    stricter = HealthConfig.model_validate(
        {"signals": {"active_use": {"indicators": {"recency_days": {"at_risk": 30, "healthy": 7}}}}}
    )
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session, config=stricter, author="test", comment="recency", now=datetime.now(UTC)
        )
    for _ in range(4):  # chunks of one account, then the job finishes
        await pipeline.recompute_step()
    await pipeline.deliver_writebacks()
    assert sent == ["1"], "only the account whose fields changed is written"
    async with service.runtime.sessions() as session:
        job = (await session.execute(select(RecomputeJob))).scalar_one()
        assert (job.status, job.rescored) == ("done", 2)
        item = (
            await session.execute(select(WritebackItem).where(WritebackItem.record_id == "1"))
        ).scalar_one()
        assert item.fields["health_score"] == 100
