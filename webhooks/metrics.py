"""Prometheus metrics of one running service: every metric is defined here, on a registry the
service owns (not prometheus_client's global one), and the `/metrics` text is rendered here.

Counters are counted where things happen (intake, worker, alert delivery), per process: the
worker's are served by `crm-health serve`, not yet by a separate `crm-health worker`. Queue
depth and lag are read from the database at scrape time, right whichever process did the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from webhooks import sync_status
from webhooks.store import inbox, writeback
from webhooks.store.db import SessionFactory

log = structlog.get_logger(__name__)

# Statuses always reported (0 when none), so a dashboard or an alert rule never meets a gap.
INBOX_STATUSES = inbox.UNSETTLED
OUTBOX_STATUSES = (writeback.PENDING, writeback.SENDING, writeback.DONE, writeback.FAILED)
# A scrape answers even when the database hangs: Prometheus' own scrape timeout is 10 s.
DATABASE_TIMEOUT_SECONDS = 5.0
# One rescore of a batch (up to worker_batch_size events' accounts or a recompute chunk).
SCORING_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _version() -> str:
    try:
        return version("crm-health")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, kw_only=True)
class DatabaseState:
    """What a scrape reads from the database."""

    inbox: Mapping[str, int]
    oldest_pending_age_seconds: float
    outbox: Mapping[str, int]
    connections: Sequence[sync_status.ConnectionSync] = ()


class Metrics:
    """The service's metrics. Pass one instance to what counts (intake, Pipeline, alert
    delivery); a Pipeline built without one counts into a private instance nobody scrapes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        ProcessCollector(registry=registry)
        Info("crm_health_build", "The running crm-health version.", registry=registry).info(
            {"version": _version()}
        )
        # Intake: the HTTP path.
        self.events_received = Counter(
            "crm_health_events_received",
            "Events acknowledged and newly stored in the inbox, by source.",
            ["source"],
            registry=registry,
        )
        self.events_duplicates = Counter(
            "crm_health_events_duplicates",
            "Events acknowledged but not stored: their dedup key was in the inbox already.",
            ["source"],
            registry=registry,
        )
        # Worker.
        self.events_processed = Counter(
            "crm_health_events_processed",
            "Inbox events the worker settled or put back, by source and outcome (done, ignored, "
            "dead, failed, paused, unmatched).",
            ["source", "outcome"],
            registry=registry,
        )
        self.scoring_seconds = Histogram(
            "crm_health_scoring_seconds",
            "Time of one rescore of a batch of accounts (read facts, score, alerts, history, "
            "write-back staging); divide by crm_health_accounts_rescored_total for per account.",
            buckets=SCORING_BUCKETS,
            registry=registry,
        )
        self.accounts_rescored = Counter(
            "crm_health_accounts_rescored",
            "Accounts scored by the worker (events or a configuration recompute).",
            registry=registry,
        )
        self.writeback_requests = Counter(
            "crm_health_writeback_requests",
            "Write-back calls to a CRM, by CRM and status (written, failed, rejected, paused, "
            "error).",
            ["crm", "status"],
            registry=registry,
        )
        self.writeback_records = Counter(
            "crm_health_writeback_records",
            "Account records in write-back calls, by CRM and outcome (written, failed, "
            "rejected, deferred).",
            ["crm", "outcome"],
            registry=registry,
        )
        self.alert_deliveries = Counter(
            "crm_health_alert_deliveries",
            "Alert deliveries, by channel type and outcome (sent, retried, failed, held: over "
            "the channel's daily limit, for its overflow digest at the next UTC midnight).",
            ["channel_type", "outcome"],
            registry=registry,
        )
        # Read from the database at scrape time.
        self.database_up = Gauge(
            "crm_health_database_up",
            "1 when the last scrape could read the database, else 0.",
            registry=registry,
        )
        self.inbox_events = Gauge(
            "crm_health_inbox_events",
            "Inbox events not settled yet, by status (pending, processing, unmatched, dead).",
            ["status"],
            registry=registry,
        )
        self.inbox_oldest_pending_age = Gauge(
            "crm_health_inbox_oldest_pending_age_seconds",
            "Age of the oldest pending or processing inbox event (0 when none): the lag.",
            registry=registry,
        )
        self.writeback_outbox = Gauge(
            "crm_health_writeback_outbox",
            "Write-back outbox rows (one per account), by status.",
            ["status"],
            registry=registry,
        )
        # Per connection, the sync state `crm-health status` and the admin page show.
        self.writeback_pending = Gauge(
            "crm_health_writeback_pending",
            "Accounts whose health the CRM does not have yet (waiting or being sent, failing "
            "ones included), by connection.",
            ["connection"],
            registry=registry,
        )
        self.writeback_failing = Gauge(
            "crm_health_writeback_failing",
            "Write-backs whose last send failed, retried with backoff until the CRM takes "
            "them, by connection.",
            ["connection"],
            registry=registry,
        )
        self.writeback_failed = Gauge(
            "crm_health_writeback_failed",
            "Write-backs the CRM refused for the record itself (needs a person, then "
            "`crm-health writeback retry --failed`), by connection.",
            ["connection"],
            registry=registry,
        )
        self.writeback_oldest_pending_age = Gauge(
            "crm_health_writeback_oldest_pending_age_seconds",
            "How long the longest-waiting health values have been owed to the CRM (0 when "
            "none), by connection.",
            ["connection"],
            registry=registry,
        )
        self.writeback_last_success = Gauge(
            "crm_health_writeback_last_success_timestamp_seconds",
            "Unix time the CRM last took a write-back (0: never), by connection.",
            ["connection"],
            registry=registry,
        )
        self.inbox_dead_letters = Gauge(
            "crm_health_inbox_dead_letters",
            "Inbox events that could not be processed (`crm-health dead-letters`), by connection.",
            ["connection"],
            registry=registry,
        )

    @property
    def _per_connection(self) -> tuple[Gauge, ...]:
        return (
            self.writeback_pending,
            self.writeback_failing,
            self.writeback_failed,
            self.writeback_oldest_pending_age,
            self.writeback_last_success,
            self.inbox_dead_letters,
        )

    # -- counting ----------------------------------------------------------------------------

    def intake(self, source: str, *, received: int, stored: int) -> None:
        self.events_received.labels(source).inc(stored)
        self.events_duplicates.labels(source).inc(received - stored)

    def processed(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add {(source, outcome): events}."""
        for (source, outcome), count in counts.items():
            self.events_processed.labels(source, outcome).inc(count)

    def writeback(self, crm: str, *, status: str, records: Mapping[str, int]) -> None:
        """One write-back call and its records by outcome."""
        self.writeback_requests.labels(crm, status).inc()
        for outcome, count in records.items():
            if count:
                self.writeback_records.labels(crm, outcome).inc(count)

    def alert_delivery(self, channel_type: str, outcome: str) -> None:
        self.alert_deliveries.labels(channel_type, outcome).inc()

    # -- scraping ----------------------------------------------------------------------------

    async def scrape(self, sessions: SessionFactory, *, connections: Collection[str] = ()) -> bytes:
        """The exposition text; the database gauges are read now, per connection for those
        with write-backs owed or dead letters and for `connections` (the configured ones). A
        database that is down or slow leaves them out and sets crm_health_database_up to 0:
        the scrape still answers."""
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
                state = await read_database(
                    sessions, now=datetime.now(UTC), connections=connections
                )
        except Exception as exc:
            log.warning("metrics_database_unreadable", error=repr(exc)[:300])
            state = None
        self._show_database(state)
        return generate_latest(self.registry)

    def _show_database(self, state: DatabaseState | None) -> None:
        # No await in here: concurrent scrapes never see half of one state.
        self.inbox_events.clear()
        self.writeback_outbox.clear()
        for gauge in self._per_connection:
            gauge.clear()
        self.database_up.set(0 if state is None else 1)
        if state is None:
            self.inbox_oldest_pending_age.set(float("nan"))
            return
        for status in sorted({*INBOX_STATUSES, *state.inbox}):
            self.inbox_events.labels(status).set(state.inbox.get(status, 0))
        self.inbox_oldest_pending_age.set(state.oldest_pending_age_seconds)
        for status in sorted({*OUTBOX_STATUSES, *state.outbox}):
            self.writeback_outbox.labels(status).set(state.outbox.get(status, 0))
        for item in state.connections:
            name, sync = item.connection, item.writebacks
            self.writeback_pending.labels(name).set(sync.pending)
            self.writeback_failing.labels(name).set(sync.failing)
            self.writeback_failed.labels(name).set(sync.failed)
            self.writeback_oldest_pending_age.labels(name).set(sync.oldest_pending_age_seconds)
            last = sync.last_success_at
            self.writeback_last_success.labels(name).set(0 if last is None else last.timestamp())
            self.inbox_dead_letters.labels(name).set(item.dead_letters)


async def read_database(
    sessions: SessionFactory, *, now: datetime, connections: Collection[str] = ()
) -> DatabaseState:
    async with sessions() as session:
        backlog = await inbox.backlog(session)
        outbox = await writeback.count_by_status(session)
        synced = await sync_status.connections(session, now=now, include=connections)
    oldest = backlog.oldest_pending_received_at
    age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    return DatabaseState(
        inbox=backlog.counts,
        oldest_pending_age_seconds=age,
        outbox=outbox,
        connections=synced,
    )
