"""The worker's loop: each pass claims a batch of inbox events, decodes it, processes it in
transactions that isolate a poison event, then runs a recompute chunk, a reconcile step, a
retention step and the write-back and alert deliveries."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

import structlog
from sqlalchemy import exc as sqlalchemy_exc

from webhooks.alerts import delivery as alert_delivery
from webhooks.alerts.notice import Channel
from webhooks.clock import Clock, utcnow
from webhooks.connections import ConnectionRegistry
from webhooks.logging import Throttle
from webhooks.metrics import Metrics
from webhooks.reconcile import Scheduler as ReconcileScheduler
from webhooks.retention import Scheduler as RetentionScheduler
from webhooks.store import inbox, product
from webhooks.store.db import SessionFactory
from webhooks.worker.alerts import AlertHandOff
from webhooks.worker.context import WorkerContext, WorkerStep
from webhooks.worker.decode import Decoded, decode_batch
from webhooks.worker.fields import FieldProvisioning
from webhooks.worker.options import BatchReport, WorkerOptions
from webhooks.worker.outages import Outages
from webhooks.worker.recompute import recompute_step, schedule_time_rescore
from webhooks.worker.scoring import Scorer
from webhooks.worker.staging import Staging
from webhooks.worker.writeback import WriteBack

log = structlog.get_logger(__name__)

# Words of OperationalErrors that are the database's trouble, not the data's (SQLite also
# reports "too many SQL variables" as one, which must count against its events). SQLite says
# "unable to open database file" when the process is out of file descriptors.
_UNAVAILABLE_WORDS = (
    "locked",
    "busy",
    "connection",
    "terminat",
    "closed",
    "timeout",
    "shutdown",
    "unable to open",
)


def database_unavailable(exc: BaseException) -> bool:
    """The database itself failed (a lost connection, a server going away, SQLite's lock
    timeout): nothing is wrong with the events being processed, so none may lose an attempt."""
    if isinstance(exc, sqlalchemy_exc.InterfaceError | sqlalchemy_exc.DisconnectionError):
        return True
    if isinstance(exc, sqlalchemy_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlalchemy_exc.OperationalError):
        message = str(exc.orig).lower()
        return any(word in message for word in _UNAVAILABLE_WORDS)
    return False


# How often parked product events are re-checked (see product.release_resolvable).
UNMATCHED_SWEEP_SECONDS = 60.0
# How often the inbox's day partitions ahead are checked (PostgreSQL; inbox.ensure_partitions):
# days ahead are created long before they are needed, so a pass that fails is retried later.
PARTITIONS_CHECK_SECONDS = 3600.0
# How often the worker makes sure the next rescore for time passing is queued.
TIME_RESCORE_CHECK_SECONDS = 300.0


class FailedPasses:
    """How the worker's failed passes are logged. An outage of hours fails a pass every poll:
    one line a minute says so, with how many were not logged; a lost database gets the error
    alone, a bug its traceback. The first pass that succeeds again says how many failed."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        self._throttle = throttle or Throttle()
        self._in_a_row = 0

    def failed(self, exc: Exception) -> None:
        self._in_a_row += 1
        held = self._throttle.allow()
        if held is None:
            return
        if database_unavailable(exc):
            # The driver's words only: the statement's parameters may be a stored payload.
            orig = exc.orig if isinstance(exc, sqlalchemy_exc.DBAPIError) else exc
            error = f"{type(orig).__name__}: {orig}"[:500]
            log.warning("worker_pass_failed", error=error, not_logged=held)
        else:
            log.exception("worker_pass_failed", not_logged=held)

    def passed(self) -> None:
        if self._in_a_row:
            log.info("worker_pass_recovered", failed_passes=self._in_a_row)
            self._in_a_row = 0
            # The next outage's first failure is logged at once.
            self._throttle = Throttle(self._throttle.interval, clock=self._throttle.clock)


def _account_of(event: inbox.Claimed, decoded: Decoded) -> tuple[str, str]:
    """(connection, the first account the event's facts are about; "" when not known yet)."""
    facts_of = decoded.events.get(event.id)
    return (event.connection, facts_of[0].account if facts_of else "")


class Pipeline(WorkerStep):
    """The worker. Its steps are the modules next to this one; this class runs them in order,
    isolates the events that break a transaction, and hands a batch back when the database
    fails."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        connections: ConnectionRegistry,
        options: WorkerOptions,
        clock: Clock = utcnow,
        channels: Mapping[str, Channel] = alert_delivery.NO_CHANNELS,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(
            WorkerContext(
                sessions=sessions,
                connections=connections,
                options=options,
                clock=clock,
                metrics=Metrics() if metrics is None else metrics,
            )
        )
        # One outage backoff per connection, whether decoding or a write-back met the outage.
        self._outages = Outages(schedule=options.schedule)
        self._alerts = AlertHandOff(self._context, channels=channels)
        self._scorer = Scorer(metrics=self._metrics, alerts=self._alerts)
        self._staging = Staging(self._context, scorer=self._scorer)
        self._fields = FieldProvisioning(self._context, scorer=self._scorer)
        self._writeback = WriteBack(
            self._context, outages=self._outages, fields_ready=self._fields.ready
        )
        self._unmatched_swept_at: datetime | None = None
        self._partitions_checked_at: datetime | None = None
        self._time_rescore_checked_at: datetime | None = None
        self._reconciler = ReconcileScheduler(
            sessions=sessions,
            connections=connections,
            clock=clock,
            interval_hours=options.reconcile_interval_hours,
        )
        self._retention = RetentionScheduler(
            sessions=sessions, clock=clock, policy=options.retention
        )

    async def run_once(self) -> int:
        """One pass: a batch of inbox events, a recompute chunk, a step of a due reconcile and
        of due retention, then due write-backs and alert deliveries."""
        # Installs made through another process's OAuth callback join here.
        await self._connections.sync_installed(self._sessions)
        # Before decoding: records read from the CRM carry the fields the configuration reads.
        await self.provision_fields()
        await self._ensure_partitions()
        await self._sweep_unmatched()
        report = await self.process_inbox()
        await self._schedule_time_rescore()
        recomputed = await self.recompute_step()
        reconciled = await self._reconciler.step_if_due()
        pruned = await self._retention.step_if_due()
        written = await self.deliver_writebacks()
        alerted = await self.deliver_alerts()
        return report.claimed + recomputed + reconciled + pruned + written + alerted

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; a pass that is under way is always finished first."""
        log.info("worker_started")
        failures = FailedPasses()
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception as exc:
                # A database outage must not kill the worker: log, wait, try again.
                failures.failed(exc)
                busy = 0
            else:
                failures.passed()
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._options.poll_seconds)
        log.info("worker_stopped")

    async def _ensure_partitions(self) -> None:
        """The inbox's partitions for today and the days ahead, at the first pass and hourly.
        A failure (the inbox's lock not granted in time) costs nothing now: events of a day
        without its partition land in the default one, and the next check moves them."""
        now = self._clock()
        last = self._partitions_checked_at
        if last is not None and (now - last).total_seconds() < PARTITIONS_CHECK_SECONDS:
            return
        try:
            async with self._sessions() as session, session.begin():
                created = await inbox.ensure_partitions(session, now)
        except sqlalchemy_exc.SQLAlchemyError as exc:
            log.warning("inbox_partitions_not_created", error=repr(exc)[:500])
            return
        self._partitions_checked_at = now
        if created:
            log.info("inbox_partitions_created", partitions=created)

    async def _schedule_time_rescore(self) -> None:
        """Keep the next rescore for time passing queued, checked every few minutes."""
        now = self._clock()
        last = self._time_rescore_checked_at
        if last is not None and (now - last).total_seconds() < TIME_RESCORE_CHECK_SECONDS:
            return
        self._time_rescore_checked_at = now
        await schedule_time_rescore(sessions=self._sessions, options=self._options, now=now)

    async def _sweep_unmatched(self) -> None:
        now = self._clock()
        last = self._unmatched_swept_at
        if last is not None and (now - last).total_seconds() < UNMATCHED_SWEEP_SECONDS:
            return
        self._unmatched_swept_at = now
        async with self._sessions() as session, session.begin():
            released = await product.release_resolvable(session, now=now)
        if released:
            log.info("product_events_matched_late", released=released)

    async def process_inbox(self) -> BatchReport:
        claimed = await self._claim(self._options.batch_size)
        report = BatchReport(claimed=len(claimed))
        if not claimed:
            return report
        # Decoding may read the CRM: once per batch, outside any transaction, and never again
        # for the isolation below (which would multiply the calls).
        decoded = await self._decode(claimed)
        try:
            await self._process_claimed(claimed, report, decoded)
        except Exception as exc:
            if database_unavailable(exc):
                # Only events still being processed go back (inbox.release).
                await self._hand_back(claimed)
            raise
        for kind, count in report.ignored.items():
            log.info("events_ignored_unsupported_type", kind=kind, count=count)
        log.info(
            "batch_processed",
            claimed=report.claimed,
            processed=report.processed,
            dead=report.dead,
            failed=report.failed,
            paused=report.paused,
            unmatched=report.unmatched,
            rescored=report.rescored,
            staged_writebacks=report.staged,
        )
        return report

    async def _claim(self, limit: int) -> list[inbox.Claimed]:
        if limit <= 0:
            return []
        async with self._sessions() as session, session.begin():
            return await inbox.claim_batch(
                session,
                now=self._clock(),
                limit=limit,
                lease_seconds=self._options.lease_seconds,
            )

    async def _decode(self, claimed: Sequence[inbox.Claimed]) -> Decoded:
        decoded = await decode_batch(claimed, self._connections)
        self._wait_out_outages(claimed, decoded)
        return decoded

    async def _process_claimed(
        self, claimed: list[inbox.Claimed], report: BatchReport, decoded: Decoded
    ) -> None:
        """Process the claimed events. Requests holding several events (Segment batches) are
        split first and their events claimed into the batch (added to `claimed`): they are
        mostly about the accounts the rest of the batch is about, which are then rescored
        once, not again at the next pass."""
        requests = [event for event in claimed if event.id in decoded.spawn]
        if requests:
            await self._process_alone_if_suspect(requests, report, decoded)
            spawned = await self._claim(self._options.batch_size - len(claimed) + len(requests))
            report.claimed += len(spawned)
            decoded.add(await self._decode(spawned))
            claimed.extend(spawned)
            requested = {event.id for event in requests}
            rest = [event for event in claimed if event.id not in requested]
        else:
            rest = claimed
        await self._process_alone_if_suspect(rest, report, decoded)

    async def _process_alone_if_suspect(
        self, events: Sequence[inbox.Claimed], report: BatchReport, decoded: Decoded
    ) -> None:
        # An event that broke a batch before goes on its own, so it cannot break another one.
        await self._process_isolating([e for e in events if e.attempts == 0], report, decoded)
        for event in events:
            if event.attempts > 0:
                await self._process_isolating([event], report, decoded)

    async def _process_isolating(
        self, events: Sequence[inbox.Claimed], report: BatchReport, decoded: Decoded
    ) -> None:
        """Process the events in one transaction; when that fails, split them in halves along
        account lines (each account's events stay together, so an account is rescored about
        once in the halves that pass, not once per level), down to the events that fail
        alone, which count a failed attempt (dead-lettered after the last). A poison event
        among n costs O(log n) extra transactions, not n."""
        if not events:
            return
        try:
            await self._staging.process(events, report, decoded)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            if len(events) == 1:
                await self._count_failure(events[0], exc, report)
                return
            log.warning("batch_failed_isolating", size=len(events), error=repr(exc)[:500])
            ordered = sorted(events, key=lambda event: _account_of(event, decoded))
            await self._split(ordered, report, decoded)

    async def _split(
        self, events: Sequence[inbox.Claimed], report: BatchReport, decoded: Decoded
    ) -> None:
        """Isolate the failure in `events` (already in account order), known to fail together.
        When the first half passes, the failure is in the second: it is split at once rather
        than tried whole, which would only fail again (about half the failing transactions)."""
        if len(events) == 1:
            await self._process_isolating(events, report, decoded)
            return
        middle = len(events) // 2
        first, second = events[:middle], events[middle:]
        try:
            await self._staging.process(first, report, decoded)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            if len(first) == 1:
                await self._count_failure(first[0], exc, report)
            else:
                await self._split(first, report, decoded)
            # The second half may or may not hold a failure of its own: tried whole.
            await self._process_isolating(second, report, decoded)
            return
        await self._split(second, report, decoded)

    async def _count_failure(
        self, event: inbox.Claimed, exc: BaseException, report: BatchReport
    ) -> None:
        status = await self._record_failure(event, exc)
        if status == inbox.DEAD:
            report.dead += 1
        else:
            report.failed += 1

    async def _hand_back(self, claimed: Sequence[inbox.Claimed]) -> None:
        """Return claimed events to pending without an attempt: the database failed, not they.
        When it cannot take even that, their lease runs out and another pass claims them."""
        with contextlib.suppress(sqlalchemy_exc.SQLAlchemyError, OSError):
            async with self._sessions() as session, session.begin():
                await inbox.release(
                    session,
                    event_ids=[event.id for event in claimed],
                    available_at=self._clock(),
                    note="database unavailable during processing",
                )

    async def _record_failure(self, event: inbox.Claimed, exc: BaseException) -> str:
        async with self._sessions() as session, session.begin():
            status = await inbox.mark_failed_attempt(
                session,
                event_id=event.id,
                error=repr(exc),
                now=self._clock(),
                max_attempts=self._options.max_attempts,
                schedule=self._options.schedule,
            )
        self._metrics.processed({(event.source, "dead" if status == inbox.DEAD else "failed"): 1})
        log.warning("event_failed", event_id=event.id, status=status, error=repr(exc))
        return status

    def _wait_out_outages(self, claimed: Sequence[inbox.Claimed], decoded: Decoded) -> None:
        """Events whose CRM could not be read wait for their connection's outage backoff
        (growing with the failures in a row, capped), no attempt counted."""
        for connection in decoded.reached:
            self._outages.over(connection)
        if not decoded.unavailable:
            return
        connection_of = {event.id: event.connection for event in claimed}
        waiting: dict[str, dict[int, tuple[float, str]]] = defaultdict(dict)
        for event_id, wait in decoded.unavailable.items():
            waiting[connection_of[event_id]][event_id] = wait
        for connection, events in waiting.items():
            delay = self._outages.delay(connection, max(after for after, _ in events.values()))
            for event_id, (_, reason) in events.items():
                decoded.paused[event_id] = (delay, reason)
            log.warning(
                "crm_unavailable_events_wait",
                connection=connection,
                events=len(events),
                retry_in_seconds=round(delay, 1),
                failures_in_a_row=self._outages.failures(connection),
                error=next(iter(events.values()))[1][:300],
            )

    async def recompute_step(self) -> int:
        """Rescore the next chunk of a pending recompute job (webhooks.worker.recompute)."""
        return await recompute_step(
            sessions=self._sessions, options=self._options, clock=self._clock, scorer=self._scorer
        )

    async def provision_fields(self) -> None:
        """Put every connector on the configuration's field plan and provision what it adds
        (webhooks.worker.fields); until then, write-backs to that connection wait."""
        await self._fields.step()

    async def deliver_writebacks(self) -> int:
        """Send the due write-backs to their CRMs (webhooks.worker.writeback)."""
        return await self._writeback.deliver()

    async def deliver_alerts(self) -> int:
        """Send the due alert deliveries (see webhooks.alerts.delivery); returns how many."""
        return await self._alerts.deliver()
