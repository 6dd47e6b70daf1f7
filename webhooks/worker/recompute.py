"""Every account rescored from its stored facts (the CRM is not read), a chunk per worker pass,
resumable: after a configuration change, and on a schedule as time passes (an account that
sends nothing still ages), which `schedule_time_rescore` keeps queued."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from webhooks.alerts.rules import LIVE, Cause
from webhooks.clock import Clock
from webhooks.store import accounts, configs
from webhooks.store.db import SessionFactory
from webhooks.worker.options import WorkerOptions
from webhooks.worker.scoring import Scorer

log = structlog.get_logger(__name__)


async def recompute_step(
    *, sessions: SessionFactory, options: WorkerOptions, clock: Clock, scorer: Scorer
) -> int:
    """Rescore the next chunk of accounts of a pending recompute job (from stored facts,
    without reading the CRM); returns how many were rescored."""
    now = clock()
    async with sessions() as session, session.begin():
        job = await configs.claim_recompute(session, now=now, lease_seconds=options.lease_seconds)
    if job is None:
        return 0
    job_id, after, connection, cause = job
    chunk_size = options.recompute_chunk
    async with sessions() as session, session.begin():
        chunk = await accounts.accounts_after(
            session, after_id=after, limit=chunk_size, connection=connection
        )
        config = await scorer.current_config(session)
        # What a configuration change finds is recorded, but nobody is told of it; what time
        # passing finds (an account gone silent) is news.
        told: Cause = LIVE if cause == "time" else "configuration"
        staged = await scorer.rescore(session, chunk, now, config, cause=lambda _account: told)
        await accounts.save(session, accounts=chunk)
        finished = len(chunk) < chunk_size
        await configs.advance_recompute(
            session,
            job_id=job_id,
            after_account_id=chunk[-1].id if chunk else after,
            rescored=len(chunk),
            finished=finished,
            now=now,
        )
    log.info(
        "recompute_chunk",
        job=job_id,
        cause=cause,
        rescored=len(chunk),
        staged=staged,
        finished=finished,
    )
    return len(chunk)


async def schedule_time_rescore(
    *, sessions: SessionFactory, options: WorkerOptions, now: datetime
) -> None:
    """Keep the next rescore for time passing queued (none when the interval is 0)."""
    if options.rescore_interval_hours <= 0:
        return
    async with sessions() as session, session.begin():
        job = await configs.schedule_time_rescore(
            session, now=now, interval=timedelta(hours=options.rescore_interval_hours)
        )
    if job is not None:
        log.info("time_rescore_scheduled", job=job.id, at=job.available_at.isoformat())
