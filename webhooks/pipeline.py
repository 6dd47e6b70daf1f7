"""The worker: claim inbox events, fold them into facts, rescore each touched account once,
and deliver changed health fields to the CRM through the write-back outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from connector.base import VOLATILE_FIELDS, CRMConnector, RecordUpdate, health_field_values
from connector.errors import CRMHTTPError, CRMRetriesExhausted, PayloadError
from connector.hubspot.events import HubSpotEvent, normalise
from connector.model import AccountActivity, AccountAttributes, AccountDeleted, NormalisedEvent
from signals.config import HealthConfig
from signals.model import Band
from signals.scoring import score
from webhooks.connections import ConnectionRegistry
from webhooks.store import accounts, inbox, writeback
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import Account, InboxEvent

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
# Turns a stored payload into normalised events; None means "not a kind we handle".
Decoder = Callable[[dict[str, Any]], list[NormalisedEvent] | None]


def _decode_hubspot(payload: dict[str, Any]) -> list[NormalisedEvent] | None:
    return normalise(HubSpotEvent.model_validate(payload))


DECODERS: Mapping[str, tuple[str, Decoder]] = {"hubspot": ("hubspot", _decode_hubspot)}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    batch_size: int = 500
    poll_seconds: float = 0.5
    lease_seconds: float = 120.0
    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0


@dataclass(frozen=True, kw_only=True)
class _Delivery:
    """One claimed write-back, copied out of its session so the CRM call holds no transaction."""

    connection: str
    account_id: int
    version: int
    record_id: str
    fields: dict[str, Any]
    attempts: int


@dataclass(kw_only=True)
class BatchReport:
    claimed: int = 0
    processed: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    rescored: int = 0
    staged: int = 0


class Pipeline:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        connections: ConnectionRegistry,
        config: HealthConfig,
        options: WorkerOptions,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._connections = connections
        self._config = config
        self._options = options
        self._clock = clock

    async def run_once(self) -> int:
        """One pass: process a batch of inbox events, then deliver due write-backs."""
        report = await self.process_inbox()
        written = await self.deliver_writebacks()
        return report.claimed + written

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; a pass that is under way is always finished first."""
        log.info("worker_started")
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                # A database outage must not kill the worker: log, wait, try again.
                log.exception("worker_pass_failed")
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._options.poll_seconds)
        log.info("worker_stopped")

    # -- inbox -> facts -> health -> outbox ---------------------------------------------------

    async def process_inbox(self) -> BatchReport:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            claimed = await inbox.claim_batch(
                session,
                now=now,
                limit=self._options.batch_size,
                lease_seconds=self._options.lease_seconds,
            )
            ids = [row.id for row in claimed]
        report = BatchReport(claimed=len(ids))
        if not ids:
            return report
        try:
            await self._process(ids, report)
        except Exception as exc:
            if len(ids) == 1:
                await self._record_failure(ids[0], exc)
                report.failed += 1
            else:
                # Isolate the event that breaks the batch so its neighbours still go through.
                log.warning("batch_failed_isolating", size=len(ids), error=repr(exc))
                for event_id in ids:
                    try:
                        await self._process([event_id], report)
                    except Exception as single_exc:
                        await self._record_failure(event_id, single_exc)
                        report.failed += 1
        for kind, count in report.ignored.items():
            log.info("events_ignored_unsupported_type", kind=kind, count=count)
        log.info(
            "batch_processed",
            claimed=report.claimed,
            processed=report.processed,
            failed=report.failed,
            rescored=report.rescored,
            staged_writebacks=report.staged,
        )
        return report

    async def _record_failure(self, event_id: int, exc: BaseException) -> None:
        async with self._sessions() as session, session.begin():
            status = await inbox.mark_failed_attempt(
                session,
                event_id=event_id,
                error=repr(exc),
                now=self._clock(),
                max_attempts=self._options.max_attempts,
                backoff_seconds=self._options.retry_base_seconds,
            )
        log.warning("event_failed", event_id=event_id, status=status, error=repr(exc))

    async def _process(self, ids: list[int], report: BatchReport) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            rows = await inbox.load(session, event_ids=ids)
            per_account: dict[accounts.AccountKey, list[NormalisedEvent]] = defaultdict(list)
            for row in rows:
                try:
                    decoded = _decode(row)
                except (ValidationError, PayloadError) as exc:
                    # A stored payload that does not parse never will: fail it now, no retry.
                    inbox.mark_undecodable(row, error=str(exc), now=now)
                    log.warning("event_undecodable", event_id=row.id, source=row.source)
                    report.failed += 1
                    continue
                if decoded is None:
                    inbox.mark_done(row, status=inbox.IGNORED, now=now)
                    report.ignored[row.kind] += 1
                    continue
                crm, events = decoded
                for event in events:
                    per_account[(row.connection, crm, event.account)].append(event)
                inbox.mark_done(row, status=inbox.DONE, now=now)
                report.processed += 1

            locked = await accounts.lock_accounts(session, keys=per_account.keys(), now=now)
            activity: list[tuple[Account, datetime]] = []
            for key, events in per_account.items():
                account = locked[key]
                for event in events:
                    match event:
                        case AccountActivity(at=at):
                            activity.append((account, at))
                        case AccountAttributes(at=at, attributes=attributes):
                            accounts.apply_attributes(account, attributes=dict(attributes), at=at)
                        case AccountDeleted(at=at):
                            accounts.mark_deleted(account, at=at)
            await accounts.record_activity(session, activity=activity)
            live = [account for account in locked.values() if account.deleted_at is None]
            report.staged += await self._rescore(session, live, now)
            report.rescored += len(live)

    async def _rescore(self, session: AsyncSession, live: list[Account], now: datetime) -> int:
        """Score every touched account once, keep history, queue fields that changed."""
        if not live:
            return 0
        month_ago = await accounts.scores_at_or_before(
            session, account_ids=[a.id for a in live], at=now - timedelta(days=30)
        )
        owed: list[writeback.Owed] = []
        for account in live:
            health = score(
                accounts.facts_of(account, as_of=now),
                self._config,
                previous_band=Band(account.band),
                score_30d_ago=month_ago.get(account.id),
            )
            accounts.record_health(session, account=account, health=health, at=now)
            fields = health_field_values(health, updated_at=now)
            owed.append(
                writeback.Owed(
                    account_id=account.id,
                    connection=account.connection,
                    record_id=account.crm_id,
                    fields=fields,
                    fingerprint=writeback.fields_fingerprint(fields, ignore=VOLATILE_FIELDS),
                )
            )
        return await writeback.stage(session, owed=owed, now=now)

    # -- outbox -> CRM --------------------------------------------------------------------------

    async def deliver_writebacks(self) -> int:
        writers = self._connections.writers()
        if not writers:
            return 0
        now = self._clock()
        async with self._sessions() as session, session.begin():
            items = await writeback.claim_due(
                session,
                connections=list(writers),
                now=now,
                limit=self._options.batch_size,
                lease_seconds=self._options.lease_seconds,
            )
            claimed = [
                _Delivery(
                    connection=item.connection,
                    account_id=item.account_id,
                    version=item.version,
                    record_id=item.record_id,
                    fields=item.fields,
                    attempts=item.attempts,
                )
                for item in items
            ]
        by_connection: dict[str, list[_Delivery]] = defaultdict(list)
        for delivery in claimed:
            by_connection[delivery.connection].append(delivery)
        for connection, deliveries in by_connection.items():
            connector = writers[connection]
            for start in range(0, len(deliveries), connector.max_batch_size):
                await self._send(
                    connection, connector, deliveries[start : start + connector.max_batch_size]
                )
        return len(claimed)

    async def _send(self, connection: str, connector: CRMConnector, chunk: list[_Delivery]) -> None:
        updates = [RecordUpdate(record_id=d.record_id, fields=d.fields) for d in chunk]
        written: set[str] = set()
        failed: dict[str, str] = {}
        retry_after: float | None = None
        try:
            result = await connector.write_health(updates)
            written, failed = result.written, result.failed
        except CRMRetriesExhausted as exc:
            retry_after = exc.retry_after
            failed = {update.record_id: str(exc) for update in updates}
        except CRMHTTPError as exc:
            failed = {update.record_id: f"{exc} {exc.body[:500]}" for update in updates}
        now = self._clock()
        async with self._sessions() as session, session.begin():
            for delivery in chunk:
                if delivery.record_id in written:
                    await writeback.mark_written(
                        session, account_id=delivery.account_id, version=delivery.version, now=now
                    )
                    continue
                backoff = min(
                    self._options.retry_base_seconds * 2**delivery.attempts,
                    self._options.retry_max_seconds,
                )
                await writeback.mark_write_failed(
                    session,
                    account_id=delivery.account_id,
                    version=delivery.version,
                    error=failed.get(delivery.record_id, "not written"),
                    now=now,
                    max_attempts=self._options.max_attempts,
                    # Never earlier than the CRM's Retry-After allowed.
                    retry_in_seconds=max(backoff, retry_after or 0.0),
                )
        log.info(
            "writeback_batch",
            connection=connection,
            crm=connector.name,
            records=len(chunk),
            written=len(written),
            failed=len(chunk) - len(written),
        )


def _decode(row: InboxEvent) -> tuple[str, list[NormalisedEvent]] | None:
    """The CRM and normalised events of a stored event; None when the kind is not handled."""
    source = DECODERS.get(row.source)
    if source is None:
        return None
    crm, decoder = source
    events = decoder(row.payload)
    return None if events is None else (crm, events)
