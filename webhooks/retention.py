"""Retention: what is deleted when, so that tables growing with events stay bounded while
scoring, backtests and the audit keep everything they read. Run by `crm-health prune` and, on
a schedule, by the worker (one batch per worker pass, under a lease: one worker at a time).

Never deleted: dead letters (until replayed or purged with `crm-health prune --dead-letters`),
unmatched and waiting inbox events, outcomes, accounts and contacts, configuration versions and
their audit, open alerts. docs/operations.md (Retention) lists every rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from webhooks.clock import Clock
from webhooks.settings import Settings
from webhooks.store import configs, facts, inbox, pruning, reconciles
from webhooks.store.db import SessionFactory

log = structlog.get_logger(__name__)

# The worker's schedule row (webhooks.store.reconciles keeps every periodic job's).
SCHEDULE = "retention"
# A scheduled step holds the schedule this long at most: one batch, or one vacuum step.
LEASE_SECONDS = 300.0
# How often an idle worker asks the database whether a run is due.
CHECK_SECONDS = 60.0
# The last step of a scheduled run on SQLite: give the freed pages back to the file system.
FREE_PAGES = "free_pages"


@dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    """How long each kind of row is kept (days), and how the deleting is paced."""

    enabled: bool = True
    interval_seconds: float = 3600.0
    batch: int = 5000
    inbox_days: float = 14.0
    fact_days: float = 730.0
    health_full_days: float = 90.0
    alert_days: float = 180.0
    housekeeping_days: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            enabled=settings.retention_enabled,
            interval_seconds=settings.retention_interval_seconds,
            batch=settings.retention_batch,
            inbox_days=settings.inbox_retention_days,
            fact_days=settings.fact_retention_days,
            health_full_days=settings.health_history_full_days,
            alert_days=settings.alert_retention_days,
            housekeeping_days=settings.housekeeping_retention_days,
        )


@dataclass(frozen=True, kw_only=True)
class Batch:
    """What one batch of a table's rule did: the rows that went, and whether more may be left
    (a full batch, or a whole inbox partition dropped, whatever its size)."""

    deleted: int
    more: bool

    @classmethod
    def of(cls, deleted: int, limit: int) -> Batch:
        return cls(deleted=deleted, more=deleted >= limit)


@dataclass(frozen=True, kw_only=True)
class Table:
    """One table's rule: its name, what it keeps and why (one line), and how to delete a batch
    of what may go or count all of it."""

    name: str
    kept: str
    delete: Callable[[AsyncSession, int], Awaitable[Batch]]
    count: Callable[[AsyncSession], Awaitable[int]]


def _rules_table(name: str, kept: str, *rules: pruning.Rule) -> Table:
    """A table with several rules, each its own simple statement (an OR of them would keep
    the database from using its indexes): a batch takes from each in turn."""

    async def delete(session: AsyncSession, limit: int) -> Batch:
        deleted = 0
        for rule in rules:
            deleted += await pruning.delete_batch(session, rule=rule, limit=limit - deleted)
            if deleted >= limit:
                break
        return Batch.of(deleted, limit)

    async def count(session: AsyncSession) -> int:
        # Exact: the rules of a table select disjoint rows (health: before the fact cutoff,
        # and from it on).
        return sum([await pruning.count(session, rule=rule) for rule in rules])

    return Table(name=name, kept=kept, delete=delete, count=count)


def _days(value: float) -> str:
    return f"{value:g} days"


def tables(policy: RetentionPolicy, *, now: datetime, longest_cooldown_days: float) -> list[Table]:
    """Every table's rule as of `now`, in the order a run prunes them."""
    inbox_before = now - timedelta(days=policy.inbox_days)
    fact_cutoff = now - timedelta(days=policy.fact_days)
    # A condition that comes back within its rule's cooldown re-opens the resolved alert.
    alert_days = max(policy.alert_days, longest_cooldown_days)
    alert_cutoff = now - timedelta(days=alert_days)
    housekeeping = now - timedelta(days=policy.housekeeping_days)

    async def delete_inbox(session: AsyncSession, limit: int) -> Batch:
        dropped = await inbox.drop_settled_partition(session, before=inbox_before)
        if dropped is not None:
            return Batch(deleted=dropped, more=True)
        deleted = await inbox.delete_processed(
            session, statuses=inbox.PROCESSED, before=inbox_before, limit=limit
        )
        return Batch.of(deleted, limit)

    async def count_inbox(session: AsyncSession) -> int:
        return await inbox.count_processed(session, statuses=inbox.PROCESSED, before=inbox_before)

    async def delete_dedup_keys(session: AsyncSession, limit: int) -> Batch:
        deleted = await inbox.delete_dedup_keys(session, before=inbox_before, limit=limit)
        return Batch.of(deleted, limit)

    async def count_dedup_keys(session: AsyncSession) -> int:
        return await inbox.count_dedup_keys(session, before=inbox_before)

    def usage_table(model: type) -> Table:
        async def delete_usage(session: AsyncSession, limit: int) -> Batch:
            deleted = await facts.prune_usage(
                session, before=fact_cutoff.date(), limit=limit, model=model
            )
            return Batch.of(deleted, limit)

        async def count_usage(session: AsyncSession) -> int:
            return await facts.count_prunable_usage(session, before=fact_cutoff.date(), model=model)

        name: str = model.__tablename__  # type: ignore[attr-defined]
        return Table(name=name, kept=fact_kept, delete=delete_usage, count=count_usage)

    fact_kept = f"the last {_days(policy.fact_days)} (what scoring and backtests read)"
    return [
        Table(
            name="inbox_events",
            kept=f"done/ignored events of the last {_days(policy.inbox_days)}; dead letters, "
            "unmatched and waiting events always",
            delete=delete_inbox,
            count=count_inbox,
        ),
        Table(
            name="inbox_dedup",
            kept=f"the keys of the last {_days(policy.inbox_days)}: an event sent again within "
            "them is a duplicate (the dedup window)",
            delete=delete_dedup_keys,
            count=count_dedup_keys,
        ),
        *(usage_table(model) for model in facts.USAGE_ROLL_UPS),
        *(
            _rules_table(name, fact_kept, rule)
            for name, rule in pruning.fact_rules(fact_cutoff).items()
        ),
        _rules_table(
            "attribute_history",
            f"the last {_days(policy.fact_days + facts.ARR_LOOKBACK.days)} (ARR a year before "
            "the oldest facts kept), and each value in force then",
            pruning.superseded_attributes(fact_cutoff - facts.ARR_LOOKBACK),
        ),
        _rules_table(
            "health_history",
            f"every row of the last {_days(policy.health_full_days)}; older: each UTC day's "
            f"last row per configuration version; older than {_days(policy.fact_days)}: only "
            "the newest",
            pruning.expired_health(fact_cutoff),
            pruning.thinned_health(
                since=fact_cutoff, full_before=now - timedelta(days=policy.health_full_days)
            ),
        ),
        _rules_table(
            "alerts",
            f"open, acknowledged and snoozed alerts; resolved ones for {_days(alert_days)} "
            "(at least the longest rule cooldown), with their reasons and deliveries",
            pruning.resolved_alerts(alert_cutoff),
        ),
        _rules_table(
            "alert_deliveries",
            f"pending deliveries; sent or failed ones of open alerts for {_days(alert_days)}",
            pruning.finished_deliveries(alert_cutoff),
        ),
        *(
            _rules_table(name, f"the last {_days(policy.housekeeping_days)}", rule)
            for name, rule in pruning.housekeeping_rules(housekeeping).items()
        ),
    ]


# What is never deleted, for the CLI's table.
NEVER_DELETED = {
    "outcomes": "all: backtests judge configurations against them",
    "config_versions, config_audit": "all: the configuration's history and audit",
    "accounts, contacts, product mappings": "all: current state, not history",
}


@dataclass(kw_only=True)
class PruneReport:
    """Rows per table that went (or, in a dry run, would go), and what each keeps."""

    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


async def longest_cooldown_days(session: AsyncSession) -> float:
    """The longest cooldown of the alert rules in force: resolved alerts are kept that long."""
    _, config = await configs.current(session)
    return max((rule.cooldown_days for rule in config.alerts), default=0.0)


async def prune(
    sessions: SessionFactory, *, policy: RetentionPolicy, now: datetime, dry_run: bool = False
) -> PruneReport:
    """Delete what the policy lets go, table by table, `policy.batch` rows per transaction,
    handing the event loop back between batches so intake and the worker interleave (on SQLite
    nobody waits for the write lock longer than one batch). A dry run only counts."""
    async with sessions() as session:
        cooldown = await longest_cooldown_days(session)
    report = PruneReport(dry_run=dry_run)
    for table in tables(policy, now=now, longest_cooldown_days=cooldown):
        report.kept[table.name] = table.kept
        if dry_run:
            async with sessions() as session:
                report.rows[table.name] = await table.count(session)
            continue
        removed = 0
        while True:
            async with sessions() as session, session.begin():
                batch = await table.delete(session, policy.batch)
            removed += batch.deleted
            await asyncio.sleep(0)
            if not batch.more:
                break
        report.rows[table.name] = removed
    if not dry_run and report.total:
        await free_pages(sessions)
    return report


async def free_pages(sessions: SessionFactory) -> None:
    """Give SQLite's free pages back to the file system, a few at a time."""
    while True:
        async with sessions() as session, session.begin():
            left = await pruning.vacuum_step(session)
        await asyncio.sleep(0)
        if not left:
            return


async def purge_dead_letters(
    sessions: SessionFactory, *, before: datetime, batch: int, dry_run: bool = False
) -> int:
    """Delete (or count) the dead letters that failed before `before`, in batches."""
    if dry_run:
        async with sessions() as session:
            return await inbox.count_processed(session, statuses=(inbox.DEAD,), before=before)
    removed = 0
    while True:
        async with sessions() as session, session.begin():
            deleted = await inbox.delete_processed(
                session, statuses=(inbox.DEAD,), before=before, limit=batch
            )
        removed += deleted
        await asyncio.sleep(0)
        if deleted < batch:
            return removed


async def vacuum(engine: AsyncEngine) -> bool:
    """SQLite: switch the file to incremental auto-vacuum and rewrite it (VACUUM) once, so
    later prunes give space back; False on PostgreSQL, whose autovacuum needs nothing."""
    if engine.dialect.name != "sqlite":
        return False
    # VACUUM cannot run inside a transaction.
    async with engine.connect() as connection:
        bare = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await bare.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
        await bare.exec_driver_sql("VACUUM")
    return True


# --- on a schedule (the worker) --------------------------------------------------------------


class Scheduler:
    """The worker's retention: every `policy.interval_seconds`, one batch of one table per
    worker pass, so a run never holds up events; the schedule row's lease (the reconcile's
    mechanism, webhooks.store.reconciles) lets one worker of any process take each step, and
    its cursor (the table under way) lets a run interrupted by a restart go on."""

    def __init__(self, *, sessions: SessionFactory, clock: Clock, policy: RetentionPolicy) -> None:
        self._sessions = sessions
        self._clock = clock
        self._policy = policy
        self._interval = timedelta(seconds=policy.interval_seconds)
        self._next_check: datetime | None = None
        self._scheduled = False

    async def step_if_due(self) -> int:
        """One step when a run is due or under way; the rows it deleted (at least 1 while the
        run goes on, so the worker passes again without its idle wait)."""
        if not self._policy.enabled:
            return 0
        now = self._clock()
        if self._next_check is not None and now < self._next_check:
            return 0
        done = await self._step(now)
        wait = min(timedelta(seconds=CHECK_SECONDS), self._interval)
        self._next_check = None if done else now + wait
        return done

    async def _step(self, now: datetime) -> int:
        async with self._sessions() as session, session.begin():
            if not self._scheduled:
                await reconciles.ensure_schedule(session, name=SCHEDULE, now=now)
                self._scheduled = True
            step = await reconciles.claim_step(
                session,
                name=SCHEDULE,
                now=now,
                interval=self._interval,
                lease_seconds=LEASE_SECONDS,
            )
            if step is None:
                return 0
            cooldown = await longest_cooldown_days(session)
        # The run's cutoffs are those of its start, whichever step this is.
        started_at = step.started_at or now
        counts = {name: int(value) for name, value in step.counts.items()}
        if step.connection == FREE_PAGES:
            async with self._sessions() as session, session.begin():
                left = await pruning.vacuum_step(session)
            if not left:
                return await self._finish(step, counts)
            await self._save(step, counts, started_at=started_at, following=FREE_PAGES)
            return 1
        rules = tables(self._policy, now=started_at, longest_cooldown_days=cooldown)
        names = [table.name for table in rules]
        at = names.index(step.connection) if step.connection in names else 0
        table = rules[at]
        async with self._sessions() as session, session.begin():
            batch = await table.delete(session, self._policy.batch)
        deleted = batch.deleted
        counts[table.name] = counts.get(table.name, 0) + deleted
        following = table.name
        if not batch.more:
            following = names[at + 1] if at + 1 < len(names) else FREE_PAGES
            if following == FREE_PAGES and not sum(counts.values()):
                return await self._finish(step, counts)
        await self._save(step, counts, started_at=started_at, following=following)
        return max(deleted, 1)

    async def _save(
        self, step: reconciles.Step, counts: dict[str, int], *, started_at: datetime, following: str
    ) -> None:
        async with self._sessions() as session, session.begin():
            await reconciles.save_step(
                session,
                step=step,
                started_at=started_at,
                connection=following,
                after_account_id=0,
                counts=dict(counts),
                now=self._clock(),
            )

    async def _finish(self, step: reconciles.Step, counts: dict[str, int]) -> int:
        async with self._sessions() as session, session.begin():
            await reconciles.finish_run(session, step=step, counts=dict(counts), now=self._clock())
        log.info("retention_finished", deleted=sum(counts.values()), **counts)
        return 0
